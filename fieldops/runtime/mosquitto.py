"""A private Mosquitto broker process started from a given configuration file."""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

INSTALL_HINT = "install the broker: apt-get install -y mosquitto (or run `make deps`)"


class MissingBinary(RuntimeError):
    """The broker binary is not installed; the message says how to install it."""


def find_mosquitto() -> str:
    for candidate in (shutil.which("mosquitto"), "/usr/sbin/mosquitto"):
        if candidate and Path(candidate).exists():
            return candidate
    raise MissingBinary(f"mosquitto not found; {INSTALL_HINT}")


def broker_user() -> str | None:
    """The user Mosquitto drops to when started as root (it reads its files as that user)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("mosquitto")
        return "mosquitto"
    except KeyError:
        return "nobody"


def share_with_broker(path: Path) -> None:
    """Make ``path`` (file or directory) readable by the broker's user."""
    user = broker_user()
    if user is None:
        return
    entry = pwd.getpwnam(user)
    os.chown(path, entry.pw_uid, entry.pw_gid)
    for parent in Path(path).resolve().parents:
        mode = parent.stat().st_mode
        if not mode & 0o001 and parent != Path("/"):
            os.chmod(parent, mode | 0o001)


def is_mosquitto(pid: int) -> bool:
    """Whether process ``pid`` runs Mosquitto: its name or program (argv[0]) in /proc (Linux) says
    so. Raises OSError when /proc has no such process or cannot be read."""
    proc = Path("/proc") / str(pid)
    name = (proc / "comm").read_text().strip()
    program = Path((proc / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")).name
    return "mosquitto" in name or "mosquitto" in program


def wait_port(host: str, port: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listening on {host}:{port} after {timeout_s}s") from None
            time.sleep(0.05)


@dataclass
class LocalMosquitto:
    """Runs ``mosquitto -c config`` listening on ``port`` (which the config must name)."""

    config_path: Path
    port: int
    log_path: Path | None = None
    _proc: subprocess.Popen | None = field(default=None, init=False, repr=False)

    def start(self, timeout_s: float = 10.0) -> LocalMosquitto:
        binary = find_mosquitto()
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        # its own session, so that a Ctrl-C meant for `fieldops up` does not stop the broker before the
        # processes using it; stop() ends it after them
        self._proc = subprocess.Popen([binary, "-c", str(self.config_path)], stdout=out, stderr=out,
                                      start_new_session=True)
        try:
            wait_port("127.0.0.1", self.port, timeout_s)
        except TimeoutError:
            self.stop()
            detail = Path(self.log_path).read_text()[-2000:] if self.log_path else ""
            raise RuntimeError(f"mosquitto did not start on port {self.port}: {detail}") from None
        log.info("Mosquitto running on 127.0.0.1:%d", self.port)
        return self

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The broker's process id while started (benches read its CPU time)."""
        return None if self._proc is None else self._proc.pid

    def stop(self, timeout_s: float = 10.0) -> None:
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


def reload(broker: LocalMosquitto) -> None:
    """Make a running broker re-read its password and ACL files (SIGHUP)."""
    if broker._proc is not None and broker._proc.poll() is None:
        broker._proc.send_signal(1)

"""A private PostgreSQL cluster: initdb into a directory, start on a loopback port, stop.

PostgreSQL refuses to run as root, so when we are root only its own binaries run as the
unprivileged ``postgres`` user (or ``nobody``), in a data directory that user owns.
"""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from fieldops.db.pool import wait_ready

log = logging.getLogger(__name__)

INSTALL_HINT = "install PostgreSQL 15 server binaries: apt-get install -y postgresql (or run `make deps`)"
SUPERUSER = "fieldops"


class MissingBinary(RuntimeError):
    """A required server binary is not installed; the message says how to install it."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_pg_bin(name: str, search_path: str | None = None, lib_root: str = "/usr/lib/postgresql") -> str:
    """The binary on PATH, else under Debian's versioned directory; MissingBinary otherwise."""
    found = shutil.which(name, path=search_path)
    if found:
        return found
    for root in sorted(Path(lib_root).glob("*/bin"), reverse=True):
        if (root / name).exists():
            return str(root / name)
    raise MissingBinary(f"PostgreSQL binary {name!r} not found; {INSTALL_HINT}")


def _run_as() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    for user in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(user)
        except KeyError:
            continue
    raise RuntimeError("running as root and no unprivileged user (postgres or nobody) exists")


def _demote(user: pwd.struct_passwd):
    def fn() -> None:
        os.setgid(user.pw_gid)
        os.initgroups(user.pw_name, user.pw_gid)
        os.setuid(user.pw_uid)
    return fn


@dataclass
class LocalPostgres:
    """One cluster in ``data_dir`` listening on ``127.0.0.1:port``; reused if already initialised."""

    data_dir: Path
    port: int = 0
    fast_unsafe: bool = False  # fsync off etc.: for throwaway test clusters only

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).resolve()
        if not self.port:
            self.port = free_port()
        self._user = _run_as()

    @property
    def url(self) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/postgres"

    def url_for(self, dbname: str) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    def _run(self, args: list[str], log_file: Path | None = None) -> None:
        kwargs: dict = {"check": True, "cwd": "/"}
        if self._user is not None:
            kwargs["preexec_fn"] = _demote(self._user)
            kwargs["env"] = {"PATH": "/usr/bin:/bin", "HOME": "/", "LANG": "C.UTF-8"}
        if log_file is None:
            kwargs["stdout"] = subprocess.PIPE
            kwargs["stderr"] = subprocess.STDOUT
        try:
            subprocess.run(args, **kwargs)
        except subprocess.CalledProcessError as exc:
            out = exc.stdout.decode(errors="replace") if exc.stdout else ""
            raise RuntimeError(f"{args[0]} failed ({exc.returncode}): {out[-2000:]}") from exc

    def _prepare_dir(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        if self._user is not None:
            os.chown(path, self._user.pw_uid, self._user.pw_gid)
            # the user must be able to reach the directory through its parents
            for parent in path.parents:
                mode = parent.stat().st_mode
                if not mode & 0o001 and parent != Path("/"):
                    os.chmod(parent, mode | 0o001)

    @property
    def initialised(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def init(self) -> None:
        if self.initialised:
            return
        initdb = find_pg_bin("initdb")
        self._prepare_dir(self.data_dir)
        self._run([initdb, "-D", str(self.data_dir), "-U", SUPERUSER, "-A", "trust",
                   "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"])
        settings = [
            "listen_addresses = '127.0.0.1'",
            "unix_socket_directories = ''",
            "max_connections = 200",
            "shared_buffers = 256MB",
            "timezone = 'UTC'",
            "log_timezone = 'UTC'",
        ]
        if self.fast_unsafe:
            settings += ["fsync = off", "synchronous_commit = off", "full_page_writes = off"]
        with open(self.data_dir / "postgresql.conf", "a") as conf:
            conf.write("\n# fieldops\n" + "\n".join(settings) + "\n")

    def start(self, timeout_s: float = 30.0) -> LocalPostgres:
        self.init()
        pg_ctl = find_pg_bin("pg_ctl")
        log_path = self.data_dir / "server.log"
        self._run([pg_ctl, "-D", str(self.data_dir), "-l", str(log_path), "-w", "-t", str(int(timeout_s)),
                   "-o", f"-p {self.port}", "start"])
        wait_ready(self.url, timeout_s)
        log.info("PostgreSQL running on 127.0.0.1:%d (%s)", self.port, self.data_dir)
        return self

    def stop(self, mode: str = "fast") -> None:
        if not (self.data_dir / "postmaster.pid").exists():
            return
        self._run([find_pg_bin("pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w", "stop"])

    def restart(self) -> None:
        self.stop()
        self.start()

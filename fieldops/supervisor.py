"""Runs a set of long-lived child processes with prefixed output and stops them all cleanly.

Each child gets its own process group, so stopping it also stops anything it spawned (gunicorn
workers, for example). A child that exits unexpectedly is restarted with backoff, up to a limit.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TextIO

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ProcessSpec:
    name: str
    argv: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)
    restart: bool = True
    ready: str = ""  # ``start`` waits (at most ready_timeout_s) for an output line containing this
    ready_timeout_s: float = 120.0


@dataclass
class _Child:
    spec: ProcessSpec
    proc: subprocess.Popen
    started: float
    restarts: int = 0
    pump: threading.Thread | None = None
    ready: threading.Event = field(default_factory=threading.Event)


class Supervisor:
    """Start children, forward their output with a ``[name]`` prefix, restart crashes, stop all."""

    def __init__(self, base_env: Mapping[str, str] | None = None, out: TextIO | None = None,
                 max_restarts: int = 5) -> None:
        self.base_env = dict(os.environ if base_env is None else base_env)
        self.out = out or sys.stdout
        self.max_restarts = max_restarts
        self.children: dict[str, _Child] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    def _spawn(self, spec: ProcessSpec, restarts: int = 0) -> _Child:
        env = {**self.base_env, **spec.env, "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen(
            list(spec.argv), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
        child = _Child(spec, proc, time.monotonic(), restarts)
        child.pump = threading.Thread(target=self._pump, args=(child,), daemon=True)
        child.pump.start()
        return child

    def _pump(self, child: _Child) -> None:
        width, name, proc, ready = 10, child.spec.name, child.proc, child.spec.ready
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            with self._lock:
                self.out.write(f"[{name:<{width}}] {line}\n")
                self.out.flush()
            if ready and ready in line:
                child.ready.set()

    def start(self, spec: ProcessSpec) -> None:
        if spec.name in self.children:
            raise ValueError(f"process {spec.name!r} already started")
        child = self.children[spec.name] = self._spawn(spec)
        log.info("started %s (pid %d)", spec.name, child.proc.pid)
        if spec.ready and not child.ready.wait(spec.ready_timeout_s):
            log.warning("%s did not report %r within %.0f s; going on", spec.name, spec.ready,
                        spec.ready_timeout_s)

    def poll(self) -> list[str]:
        """Restart children that died; return the names of those given up on."""
        failed = []
        for name, child in list(self.children.items()):
            code = child.proc.poll()
            if code is None or self._stopping.is_set():
                continue
            if not child.spec.restart:
                log.info("%s exited with %d", name, code)
                del self.children[name]
                continue
            if child.restarts >= self.max_restarts:
                log.error("%s exited with %d; restarted %d times, giving up", name, code, child.restarts)
                failed.append(name)
                del self.children[name]
                continue
            delay = min(30.0, 2.0 ** child.restarts)
            if time.monotonic() - child.started < delay:
                continue
            log.warning("%s exited with %d; restarting", name, code)
            self.children[name] = self._spawn(child.spec, child.restarts + 1)
        return failed

    def stop_process(self, name: str, timeout_s: float = 15.0) -> int:
        """Stop one child (SIGTERM to its group, SIGKILL after ``timeout_s``); return its exit code."""
        child = self.children.pop(name)
        _signal_group(child.proc, signal.SIGTERM)
        return self._reap(child, time.monotonic() + timeout_s)

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM every child's process group, wait, then SIGKILL what is left."""
        self._stopping.set()
        for child in self.children.values():
            _signal_group(child.proc, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for child in self.children.values():
            self._reap(child, deadline)
        self.children.clear()

    @staticmethod
    def _reap(child: _Child, deadline: float) -> int:
        try:
            child.proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop in time; killing it", child.spec.name)
        _signal_group(child.proc, signal.SIGKILL)
        code = child.proc.wait()
        if child.pump is not None:
            child.pump.join(timeout=2)
        return code

    def run_until_signal(self, poll_s: float = 1.0) -> int:
        """Block until SIGINT/SIGTERM (or every child is gone), then stop everything."""
        received: list[int] = []

        def handler(signum: int, frame: object) -> None:
            received.append(signum)

        old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            while not received and self.children:
                self.poll()
                time.sleep(poll_s)
        finally:
            log.info("stopping %d process(es)", len(self.children))
            self.stop()
            for s, h in old.items():
                signal.signal(s, h)
        return 0


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass

import io
import os
import sys
import time

from fieldops.supervisor import ProcessSpec, Supervisor

SLEEPER = [sys.executable, "-c", "import time, sys; print('ready', flush=True); time.sleep(60)"]
# spawns a grandchild in the same process group; stopping must take it down too
SPAWNER = [
    sys.executable, "-c",
    "import subprocess, sys, time; p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
    "print('grandchild', p.pid, flush=True); time.sleep(60)",
]


def _wait_for(predicate, timeout_s=10.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by init) counts as gone
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split()[2] != "Z"


def test_output_is_prefixed_with_the_process_name():
    out = io.StringIO()
    sup = Supervisor(out=out)
    sup.start(ProcessSpec("alpha", SLEEPER))
    assert _wait_for(lambda: "ready" in out.getvalue())
    sup.stop()
    assert "[alpha     ] ready" in out.getvalue()


def test_stop_leaves_no_orphans():
    out = io.StringIO()
    sup = Supervisor(out=out)
    sup.start(ProcessSpec("spawner", SPAWNER))
    assert _wait_for(lambda: "grandchild" in out.getvalue())
    grandchild = int(out.getvalue().split("grandchild")[1].split()[0])
    child = sup.children["spawner"].proc.pid
    sup.stop()
    assert _wait_for(lambda: not _alive(child) and not _alive(grandchild))


def test_crashed_child_is_restarted():
    out = io.StringIO()
    sup = Supervisor(out=out)
    sup.start(ProcessSpec("crasher", [sys.executable, "-c", "print('run', flush=True)"]))
    assert _wait_for(lambda: sup.children["crasher"].proc.poll() is not None)
    time.sleep(1.1)
    sup.poll()
    assert _wait_for(lambda: out.getvalue().count("run") >= 2)
    sup.stop()


def test_gives_up_after_max_restarts():
    sup = Supervisor(out=io.StringIO(), max_restarts=0)
    sup.start(ProcessSpec("crasher", [sys.executable, "-c", "raise SystemExit(3)"]))
    assert _wait_for(lambda: sup.children["crasher"].proc.poll() is not None)
    assert sup.poll() == ["crasher"]
    assert "crasher" not in sup.children


def test_start_returns_once_the_ready_line_is_out():
    out = io.StringIO()
    sup = Supervisor(out=out)
    late = [sys.executable, "-c", "import time; time.sleep(0.5); print('subscribed', flush=True); time.sleep(60)"]
    sup.start(ProcessSpec("late", late, ready="subscribed"))
    try:
        assert "[late      ] subscribed" in out.getvalue()
    finally:
        sup.stop()

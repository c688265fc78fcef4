"""Parent side: spawn the child, enforce the timeout, clean up.

The child runs in its own session (process group) so that the timeout and
the final cleanup kill the script, its DataLoader workers and anything else
it started, and nothing is left behind. Checkpoints the script writes land
in a temporary directory that is removed here. The child reports through a
JSON file, progress through a pipe; the script's own output is captured to a
log whose tail is shown when the script fails.
"""

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Callable, List, Optional

GRACE_SECONDS = 5.0
OUTPUT_TAIL_LINES = 20

_BOOT = (
    "import sys; sys.path.append({path!r}); "
    "from lintorch.probe.child import main; main(sys.argv[1])"
)


@dataclass
class RunResult:
    report: Optional[dict]  # the child's JSON, None if it wrote none
    returncode: Optional[int]
    timed_out: bool
    seconds: float
    output_tail: List[str] = field(default_factory=list)
    pid: Optional[int] = None
    leftover_processes: bool = False
    native_stack: Optional[str] = None  # faulthandler's dump when the child never answered


def _package_parent() -> str:
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _group_alive(pgid: int) -> bool:
    """Whether a live (non-zombie) process of the group remains."""
    if os.path.isdir("/proc/self"):
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open("/proc/%s/stat" % entry, "rb") as handle:
                    stat = handle.read().decode("utf-8", "replace")
            except OSError:
                continue
            fields = stat[stat.rfind(")") + 2:].split()
            if len(fields) > 2 and fields[2] == str(pgid) and fields[0] != "Z":
                return True
        return False
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run(
    script: str,
    args: List[str],
    steps: int,
    device: str = "auto",
    timeout: float = 120.0,
    on_progress: Optional[Callable[[str], None]] = None,
    show_output: bool = False,
    python: Optional[str] = None,
) -> RunResult:
    workdir = tempfile.mkdtemp(prefix="lintorch-probe-")
    read_fd, write_fd = os.pipe()
    proc = None
    started = time.time()
    timed_out = False
    try:
        config = {
            "script": script,
            "args": list(args),
            "steps": steps,
            "device": device,
            "report": os.path.join(workdir, "report.json"),
            "checkpoint_dir": os.path.join(workdir, "checkpoints"),
            "progress_fd": write_fd,
            "stack": os.path.join(workdir, "stack.txt"),
        }
        config_path = os.path.join(workdir, "config.json")
        with open(config_path, "w", encoding="utf-8") as handle:
            json.dump(config, handle)
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        if device == "cpu":
            env["CUDA_VISIBLE_DEVICES"] = ""
            env["HIP_VISIBLE_DEVICES"] = ""
        log_path = os.path.join(workdir, "output.log")
        log = open(log_path, "wb")
        try:
            proc = subprocess.Popen(
                [python or sys.executable, "-c", _BOOT.format(path=_package_parent()), config_path],
                stdin=subprocess.DEVNULL,
                stdout=None if show_output else log,
                stderr=None if show_output else subprocess.STDOUT,
                env=env,
                pass_fds=(write_fd,),
                start_new_session=True,
            )
        finally:
            log.close()
        os.close(write_fd)
        write_fd = -1
        deadline = started + timeout
        buffer = b""
        term_sent_at = None
        while True:
            now = time.time()
            if proc.poll() is not None:
                break
            if term_sent_at is None and now >= deadline:
                timed_out = True
                try:
                    proc.send_signal(signal.SIGUSR1)  # faulthandler: where is it stuck?
                    time.sleep(0.2)
                    proc.send_signal(signal.SIGTERM)  # the child writes what it has
                except ProcessLookupError:
                    pass
                term_sent_at = now
            if term_sent_at is not None and now >= term_sent_at + GRACE_SECONDS:
                _kill_group(proc.pid)
                proc.wait()
                break
            ready, _, _ = select.select([read_fd], [], [], 0.2)
            if ready:
                chunk = os.read(read_fd, 4096)
                if chunk:
                    buffer += chunk
                    *lines, buffer = buffer.split(b"\n")
                    if lines and on_progress is not None:
                        on_progress(lines[-1].decode("utf-8", "replace"))
        pgid = proc.pid
        _kill_group(pgid)  # DataLoader workers, children of the script
        leftover = False
        for _ in range(50):
            if not _group_alive(pgid):
                break
            time.sleep(0.02)
        else:
            leftover = True
        report = None
        report_path = config["report"]
        if os.path.exists(report_path):
            try:
                with open(report_path, encoding="utf-8") as handle:
                    report = json.load(handle)
            except (OSError, ValueError):
                report = None
        stack = None
        if report is None and timed_out and os.path.exists(config["stack"]):
            with open(config["stack"], encoding="utf-8", errors="replace") as handle:
                stack = handle.read()
        tail = []
        if os.path.exists(log_path):
            with open(log_path, "rb") as handle:
                text = handle.read().decode("utf-8", "replace")
            tail = text.splitlines()[-OUTPUT_TAIL_LINES:]
        return RunResult(
            report=report,
            returncode=proc.returncode,
            timed_out=timed_out,
            seconds=round(time.time() - started, 2),
            output_tail=tail,
            pid=proc.pid,
            leftover_processes=leftover,
            native_stack=stack,
        )
    finally:
        if proc is not None and proc.poll() is None:
            _kill_group(proc.pid)
            proc.wait()
        if write_fd >= 0:
            os.close(write_fd)
        os.close(read_fd)
        shutil.rmtree(workdir, ignore_errors=True)

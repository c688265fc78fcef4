"""Parent side: spawn the child in a scratch area, enforce the timeout, clean up.

The child runs in its own session (process group) so that the timeout and
the final cleanup kill the script, its DataLoader workers and anything else
it started; helpers that left the group for a session of their own are
found through the process tree and killed too, and reported. Everything the
script writes lands in a scratch directory (see ``sandbox``) that is
removed here, also on SIGINT and on SIGTERM (the CLI turns SIGTERM into
``SystemExit``). The child reports through a JSON file, progress through a
pipe; the script's own output goes through another pipe into a bounded
ring buffer (its tail is shown when the script fails), and is forwarded as
it comes with ``show_output``.
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
OUTPUT_BUFFER_BYTES = 256 * 1024  # what is kept of the script's output, however much it prints

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
    output_bytes: int = 0  # how much the script printed in all
    own_session: List[dict] = field(default_factory=list)  # helpers that left the process group


class _Ring:
    """The last ``limit`` bytes of a stream."""

    def __init__(self, limit: int = OUTPUT_BUFFER_BYTES):
        self.limit, self.data, self.total = limit, bytearray(), 0

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        self.data += chunk
        if len(self.data) > 2 * self.limit:
            del self.data[:-self.limit]

    def tail(self, lines: int) -> List[str]:
        text = bytes(self.data[-self.limit:]).decode("utf-8", "replace")
        return text.splitlines()[-lines:]


def _package_parent() -> str:
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _processes() -> dict:
    """pid -> (ppid, pgid, state, command) from /proc; {} where there is none."""
    out = {}
    if not os.path.isdir("/proc/self"):
        return out
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry, "rb") as handle:
                stat = handle.read().decode("utf-8", "replace")
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 3:
            command = stat[stat.find("(") + 1:stat.rfind(")")]
            out[int(entry)] = (int(fields[1]), int(fields[2]), fields[0], command)
    return out


def _descendants(root: int, table: dict) -> List[int]:
    children = {}
    for pid, (ppid, _, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _group_alive(pgid: int) -> bool:
    """Whether a live (non-zombie) process of the group remains."""
    table = _processes()
    if table:
        return any(g == pgid and state != "Z" for _, g, state, _ in table.values())
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


def _kill_escaped(root: int) -> List[dict]:
    """Kill the descendants of ``root`` that left its process group (a
    ``start_new_session=True`` helper, a daemon); return them."""
    table = _processes()
    escaped = []
    for pid in _descendants(root, table):
        _, pgid, state, command = table[pid]
        if pgid != root and state != "Z":
            escaped.append({"pid": pid, "command": command})
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
    return escaped


def scratch_layout(scratch: str) -> dict:
    paths = {name: os.path.join(scratch, name) for name in ("files", "tmp", "cache", "control")}
    for path in paths.values():
        os.makedirs(path, exist_ok=True)
    return paths


def child_env(layout: dict, device: str) -> dict:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # no __pycache__ beside the user's modules
    for name in ("TMPDIR", "TMP", "TEMP"):
        env[name] = layout["tmp"]  # tempfile, torch.compile's caches, multiprocessing
    env["TORCHINDUCTOR_CACHE_DIR"] = os.path.join(layout["cache"], "inductor")
    env["TRITON_CACHE_DIR"] = os.path.join(layout["cache"], "triton")
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
        env["HIP_VISIBLE_DEVICES"] = ""
    return env


def run(
    script: str,
    args: List[str],
    steps: Optional[int],
    device: str = "auto",
    timeout: float = 120.0,
    on_progress: Optional[Callable[[str], None]] = None,
    show_output: bool = False,
    python: Optional[str] = None,
    enforce_writes: bool = True,
    output_stream=None,
    diagnose: Optional[dict] = None,
) -> RunResult:
    """``steps``: stop after that many optimizer steps; None: stop after the
    first validation pass or epoch end (see ``instrument``).
    ``enforce_writes``: the child restricts its writes in the kernel (the
    caller checked that it can). ``show_output`` forwards the script's
    output to ``output_stream`` (default stdout) as it comes. ``diagnose``
    (``{"min_steps", "min_rounds"}``) adds lintorch diagnose's measurements
    and its longer default stop."""
    scratch = tempfile.mkdtemp(prefix="lintorch-probe-")
    layout = scratch_layout(scratch)
    control = layout["control"]
    read_fd, write_fd = os.pipe()
    out_read, out_write = os.pipe()
    proc = None
    started = time.time()
    timed_out = False
    ring = _Ring()
    escaped: List[dict] = []
    stream = output_stream if output_stream is not None else sys.stdout
    try:
        config = {
            "script": script,
            "args": list(args),
            "steps": steps,
            "device": device,
            "timeout": timeout,
            "report": os.path.join(control, "report.json"),
            "progress_fd": write_fd,
            "stack": os.path.join(control, "stack.txt"),
            "scratch": scratch,
            "shadow": layout["files"],
            "enforce_writes": enforce_writes,
            "diagnose": diagnose,
        }
        config_path = os.path.join(control, "config.json")
        with open(config_path, "w", encoding="utf-8") as handle:
            json.dump(config, handle)
        try:
            proc = subprocess.Popen(
                [python or sys.executable, "-c", _BOOT.format(path=_package_parent()), config_path],
                stdin=subprocess.DEVNULL,
                stdout=out_write,
                stderr=subprocess.STDOUT,
                env=child_env(layout, device),
                pass_fds=(write_fd,),
                start_new_session=True,
            )
        finally:
            os.close(out_write)
            out_write = -1
        os.close(write_fd)
        write_fd = -1
        deadline = started + timeout
        buffer = b""
        term_sent_at = None
        open_fds = [read_fd, out_read]
        exited_at = None
        while True:
            now = time.time()
            if proc.poll() is not None:
                # the child is gone: drain what is left, without waiting on
                # helpers that may still hold the output pipe
                exited_at = exited_at or now
                if out_read not in open_fds or now > exited_at + 0.5:
                    break
                if not select.select([out_read], [], [], 0)[0]:
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
                escaped = _kill_escaped(proc.pid)
                _kill_group(proc.pid)
                proc.wait()
                break
            ready, _, _ = select.select(open_fds, [], [], 0.2)
            for fd in ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    open_fds.remove(fd)
                    continue
                if fd == out_read:
                    ring.add(chunk)
                    if show_output:
                        stream.write(chunk.decode("utf-8", "replace"))
                        stream.flush()
                    continue
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                if lines and on_progress is not None:
                    on_progress(lines[-1].decode("utf-8", "replace"))
        proc.wait()
        pgid = proc.pid
        escaped = escaped or _kill_escaped(pgid)
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
        return RunResult(
            report=report,
            returncode=proc.returncode,
            timed_out=timed_out,
            seconds=round(time.time() - started, 2),
            output_tail=ring.tail(OUTPUT_TAIL_LINES),
            pid=proc.pid,
            leftover_processes=leftover,
            native_stack=stack,
            output_bytes=ring.total,
            own_session=escaped,
        )
    finally:
        if proc is not None and proc.poll() is None:
            _kill_escaped(proc.pid)
            _kill_group(proc.pid)
            proc.wait()
        for fd in (write_fd, out_write, read_fd, out_read):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        shutil.rmtree(scratch, ignore_errors=True)

"""Entry point of the probe's child process.

``python -c "...; from lintorch.probe.child import main; main(CONFIG)"``
runs the user's script as ``__main__`` (runpy) under instrumentation and
writes one JSON report to the path named in the config. The report never
goes through stdout: the script owns stdout.
"""

import errno
import json
import os
import signal
import sys
import time
import traceback

PROBE_DIR = os.path.dirname(os.path.abspath(__file__))

# Exception types (by name, anywhere in the MRO) that mean "needed the network".
_NETWORK_ERRORS = {"URLError", "gaierror", "ConnectionError", "HTTPError", "Timeout", "ConnectTimeout",
                   "MaxRetryError", "NewConnectionError", "LocalEntryNotFoundError", "OfflineModeIsEnabled"}


def _write(path: str, report: dict) -> None:
    tmp = path + ".part"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(report, handle, default=str)
    os.replace(tmp, path)


def _library(filename: str) -> bool:
    import sysconfig

    name = os.path.abspath(filename)
    stdlib = sysconfig.get_paths().get("stdlib") or ""
    return (
        "site-packages" in name or "dist-packages" in name or (stdlib and name.startswith(stdlib))
        or filename.startswith("<")
    )


def _user_frames(tb_or_frames, script: str) -> str:
    """A traceback of user code: the probe's own frames, runpy's and the
    interpreter's are dropped, and each run of library frames (torch,
    stdlib) is folded to its innermost frame."""
    if isinstance(tb_or_frames, list):
        frames = tb_or_frames
    else:
        frames = traceback.extract_tb(tb_or_frames)
    frames = [
        f for f in frames
        if not os.path.abspath(f.filename).startswith(PROBE_DIR)
        and os.path.basename(f.filename) != "runpy.py" and f.filename != "<string>"
    ]
    # runpy and interpreter frames above the script's first frame say nothing
    while frames and _library(frames[0].filename):
        frames = frames[1:]
    lines = []
    i = 0
    while i < len(frames):
        if not _library(frames[i].filename):
            lines.extend(traceback.format_list([frames[i]]))
            i += 1
            continue
        j = i
        while j < len(frames) and _library(frames[j].filename):
            j += 1
        hidden = j - i - 1
        if hidden:
            lines.append("  ... %d library frame(s) ...\n" % hidden)
        last = frames[j - 1]
        if last.filename.startswith("<"):
            lines.append("  (inside the interpreter: %s)\n" % last.filename)
        else:
            lines.extend(traceback.format_list([last]))
        i = j
    return "".join(lines)


def _network_error(exc: BaseException) -> bool:
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        names = {cls.__name__ for cls in type(exc).__mro__}
        if names & _NETWORK_ERRORS:
            return True
        text = str(exc)
        if any(s in text for s in ("Name or service not known", "Temporary failure in name resolution",
                                   "Network is unreachable", "nodename nor servname")):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _sandbox_roots(cfg: dict) -> list:
    roots = [cfg["scratch"], "/dev"]
    return sorted({os.path.realpath(p) for p in roots} | {os.path.abspath(p) for p in roots})


_DENIED = (errno.EACCES, errno.EPERM, errno.EROFS)
_DENIED_TEXT = ("Permission denied", "PermissionDenied", "Operation not permitted", "Read-only file system")


def _chain(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _probe_cause(exc: BaseException, overlay, enforcement: dict) -> str:
    """Why the crash is the probe's doing, or "": a write the sandbox
    blocked, or an exception raised inside the probe's own code."""
    for item in _chain(exc):
        if isinstance(item, PermissionError) and str(item.strerror or "").startswith("lintorch probe:"):
            return "the probe blocked a write outside its scratch area (%s): the script depends on it" % (
                item.filename)
        if isinstance(item, OSError) and item.errno in _DENIED and item.filename is not None:
            try:
                virtual = overlay.virtual(item.filename)
            except (TypeError, ValueError):
                continue
            if overlay.managed(virtual) and enforcement.get("kernel"):
                return "the kernel write restriction denied a write to %s (native code or a subprocess " \
                       "writing outside the probe's scratch area)" % item.filename
    text = " ".join(str(item) for item in _chain(exc))
    if enforcement.get("kernel") and any(t in text for t in _DENIED_TEXT):
        return "a write was denied (\"%s\"); the kernel write restriction denies native code and " \
               "subprocesses any write outside the probe's scratch area" % next(t for t in _DENIED_TEXT if t in text)
    if enforcement.get("kernel") and any(e["op"] == "start process" for e in overlay.events) and any(
            type(item).__name__ == "CalledProcessError" for item in _chain(exc)):
        return "a subprocess failed; it ran under the kernel write restriction, which denies it any write " \
               "outside the probe's scratch area"
    for item in _chain(exc):
        if getattr(item, "lintorch_internal", False):
            frames = [f for f in traceback.extract_tb(item.__traceback__)
                      if os.path.abspath(f.filename).startswith(PROBE_DIR)]
            where = " (%s, line %d)" % (os.path.basename(frames[-1].filename), frames[-1].lineno) if frames else ""
            return "an internal error of the probe%s: %s: %s; please report it" % (
                where, type(item).__name__, item)
    return ""


def main(config_path: str) -> None:
    with open(config_path, encoding="utf-8") as handle:
        cfg = json.load(handle)
    report_path = cfg["report"]
    script = os.path.abspath(cfg["script"])
    started = time.time()
    report = {"pid": os.getpid(), "outcome": {"status": "starting"}}
    sys.dont_write_bytecode = True

    from lintorch.probe import sandbox

    # First, before torch starts threads: the kernel restriction covers the
    # calling thread and everything it starts afterwards.
    enforcement = {"kernel": None, "python": True}
    if cfg.get("enforce_writes"):
        try:
            enforcement = {"kernel": "landlock", "abi": sandbox.restrict_writes(_sandbox_roots(cfg)), "python": True}
        except OSError as exc:
            report["outcome"] = {"status": "no_sandbox", "message": "the kernel refused to restrict the script's "
                                 "writes (%s); nothing was run. Rerun with --allow-writes to run it with "
                                 "Python-level redirection only" % exc.strerror}
            _write(report_path, report)
            os._exit(0)
    report["sandbox"] = enforcement

    if cfg["device"] == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
        os.environ["HIP_VISIBLE_DEVICES"] = ""
    try:
        import torch
    except ImportError as exc:
        report["outcome"] = {"status": "no_torch", "message": "cannot import torch: %s" % exc}
        _write(report_path, report)
        os._exit(0)
    report["torch"] = torch.__version__
    if cfg["device"] == "cpu":
        # CUDA is hidden by the environment; MPS has no such switch.
        mps = getattr(torch.backends, "mps", None)
        if mps is not None:
            mps.is_available = lambda: False
    if cfg["device"] == "cuda" and not torch.cuda.is_available():
        build = "a CPU-only build" if torch.version.cuda is None else "built for CUDA %s" % torch.version.cuda
        report["outcome"] = {
            "status": "no_device",
            "message": "--device cuda: no CUDA device is available (torch %s, %s)" % (torch.__version__, build),
        }
        _write(report_path, report)
        os._exit(0)
    report["default_device"] = "cuda" if torch.cuda.is_available() else "cpu"

    from lintorch.probe.instrument import ProbeStop, Recorder

    overlay = sandbox.Overlay(cfg["shadow"], _sandbox_roots(cfg), sandbox.locator(script))
    # the default stop leaves a third of the time limit for start-up and the report
    diagnose = cfg.get("diagnose")  # lintorch diagnose: more measurements, a longer default run
    stop = {"min_steps": diagnose["min_steps"], "min_rounds": diagnose["min_rounds"]} if diagnose else {}
    recorder = Recorder(script, cfg["steps"], overlay, cfg.get("progress_fd"),
                        budget=max(5.0, float(cfg.get("timeout") or 120.0) / 3), **stop)
    if diagnose:
        from lintorch.probe.diagnostics import Diagnostics

        recorder.diag = Diagnostics(recorder)
        recorder.diag.install()
    recorder.install()
    sandbox.install(overlay)
    sandbox.redirect_native_writers(overlay)

    def finish(outcome: dict) -> None:
        try:
            report["data"] = recorder.finish()
        except Exception as exc:  # never lose the report over a summary
            report["data"] = recorder.data
            report["finish_error"] = repr(exc)
        if any(str(d).startswith("cuda") for d in recorder.data.get("devices", [])):
            try:  # only now: the probe itself never initialises CUDA before the script does
                report["cuda_device"] = torch.cuda.get_device_name(0)
            except Exception:
                pass
        report["outcome"] = outcome
        report["writes"] = {"events": overlay.events, "count": overlay.event_count}
        report["seconds"] = round(time.time() - started, 2)
        _write(report_path, report)

    def on_term(signum, frame):
        if os.getpid() != recorder.main_pid:  # a forked worker inherited this
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        stack = _user_frames(traceback.extract_stack(frame), script)
        finish({"status": "timeout", "message": "timed out", "traceback": stack})
        sys.stdout.flush()
        os._exit(0)

    signal.signal(signal.SIGTERM, on_term)
    if cfg.get("stack"):
        # On timeout the parent first asks for a C-level stack dump: it works
        # even when the script is stuck inside native code (a CUDA sync, a lock).
        import faulthandler

        stack_file = open(cfg["stack"], "w")
        faulthandler.register(signal.SIGUSR1, file=stack_file, all_threads=False)

    sys.argv = [cfg["script"]] + list(cfg["args"])
    sys.path[0:1] = [os.path.dirname(script)]
    outcome = {"status": "finished", "message": "the script ended by itself"}
    try:
        import runpy

        runpy.run_path(script, run_name="__main__")
    except ProbeStop:
        outcome = {"status": "stopped", "message": "stopped after the requested optimizer steps"}
    except SystemExit as exc:
        code = exc.code
        outcome = {"status": "exited", "message": "the script called sys.exit(%r)" % (code,), "exit_code": code,
                   "traceback": _user_frames(exc.__traceback__, script)}
    except KeyboardInterrupt:
        outcome = {"status": "crashed", "message": "KeyboardInterrupt", "traceback": ""}
    except BaseException as exc:  # noqa: B902 - the report must be written
        text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        outcome = {
            "status": "crashed",
            "message": text,
            "traceback": _user_frames(exc.__traceback__, script),
            "network": _network_error(exc),
        }
        cause = _probe_cause(exc, overlay, enforcement)
        if cause:
            outcome["probe_caused"] = cause
    finish(outcome)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except Exception:
        pass
    # Skip the script's atexit handlers and lingering non-daemon threads:
    # the report is written, the parent kills the process group.
    os._exit(0)

"""``lintorch probe SCRIPT [options] [-- script args...]``.

Runs the script for a few real optimizer steps in a child process under
instrumentation and reports, for every static finding in it, whether the run
confirmed it, refuted it or never reached it, plus the measured symptoms.

Exit status: 0 nothing confirmed; 1 a finding (or an unambiguous runtime
check) confirmed; 2 usage errors, torch missing, no CUDA device for
``--device cuda``, or the script never reached a training step.

This module must not import torch: the child does.
"""

import argparse
import importlib.util
import os
import signal
import sys
import threading
from typing import Callable, List, Optional

EXIT_ERROR = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lintorch probe",
        description="Run a training script for a few real steps and confirm lintorch's findings with measurements.",
        epilog="Arguments after -- go to the script. Exit status: 0 nothing confirmed, 1 confirmed, 2 could not run.",
    )
    add_run_options(parser, "at least 5, until the first validation pass or the end of the first epoch")
    return parser


def add_run_options(parser: argparse.ArgumentParser, default_steps: str) -> None:
    """The options of a probed run (``lintorch probe`` and ``lintorch diagnose``)."""
    parser.add_argument("script", help="the training script (run as __main__)")
    parser.add_argument("--steps", type=int, default=None,
                        help="optimizer steps to run before stopping (default: %s, within a third of --timeout)"
                             % default_steps)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="auto: whatever the script picks; cpu: hide accelerators; cuda: require one")
    parser.add_argument("--timeout", type=float, default=120.0, help="wall-clock limit in seconds (default: 120)")
    parser.add_argument("--format", choices=("text", "json"), default="text", help="output format (default: text)")
    parser.add_argument("--show-output", action="store_true",
                        help="show the script's output as it runs (on stderr with --format json)")
    parser.add_argument("--allow-writes", action="store_true",
                        help="run even where the kernel cannot restrict the script's writes (only Python-level "
                             "writes are then redirected; native code and subprocesses could change your files)")


def usage_error(args: argparse.Namespace, prog: str) -> Optional[str]:
    """The message for bad --steps/--timeout or a missing script, else None."""
    if args.steps is not None and args.steps < 1:
        return "%s: error: --steps must be at least 1" % prog
    if args.timeout <= 0:
        return "%s: error: --timeout must be positive" % prog
    if not os.path.isfile(args.script):
        return "%s: error: %s: no such file" % (prog, args.script)
    return None


def no_sandbox_reason(allow_writes: bool):
    """(kernel ABI, None) when the run may go ahead, else (0, the refusal)."""
    from lintorch.probe import sandbox

    abi, why = sandbox.landlock_abi()
    if not abi and not allow_writes:
        return 0, ("this machine cannot stop the script from changing your files (%s). The "
                   "probe would only redirect Python-level writes; native code (safetensors, h5py) and subprocesses "
                   "could still create, overwrite or delete files. Rerun with --allow-writes to accept that, or on "
                   "Linux >= 5.13 with Landlock enabled." % why)
    return abi, None


def guarded(display: str, show_output: bool, run: Callable[[Optional[Callable[[str], None]]], dict]) -> dict:
    """``run(on_progress)`` with a progress line on a terminal and SIGTERM
    (timeout, CI cancellation, docker stop) unwinding like Ctrl-C, so the
    runner's cleanup kills the script's processes and removes the scratch area."""
    def show_progress(line: str) -> None:
        sys.stderr.write("\r\033[Kprobing %s: %s" % (display, line))
        sys.stderr.flush()

    tty = sys.stderr.isatty() and not show_output
    if tty:
        sys.stderr.write("probing %s: starting (importing torch)" % display)
        sys.stderr.flush()

    def terminate(signum, frame):
        raise SystemExit(128 + signum)

    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, terminate) if in_main else None
    try:
        return run(show_progress if tty else None)
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)
        if tty:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


def split_argv(argv: List[str]):
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1:]
    return argv, []


def torch_available() -> bool:
    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):
        return False


def static_findings(path: str, display: str):
    from lintorch import engine, registry

    rules = registry.instantiate(registry.resolve_enabled(["ALL"], []))
    return [f for f in engine.read_and_lint(path, display, rules) if f.code != registry.UNPARSABLE_CODE]


def probe(script: str, script_args: List[str] = (), steps: Optional[int] = None, device: str = "auto",
          timeout: float = 120.0, on_progress=None, show_output: bool = False, enforce_writes: bool = None,
          output_stream=None, diagnose: Optional[dict] = None, findings=None) -> dict:
    """Static findings + one instrumented run of ``script`` -> the report dict.
    ``enforce_writes`` None: restrict writes in the kernel where it can.
    ``diagnose``: see ``runner.run``; ``findings``: the static findings when
    the caller has them already."""
    from lintorch.probe import report as report_mod, runner, sandbox

    if enforce_writes is None:
        enforce_writes = bool(sandbox.landlock_abi()[0])
    display = script[2:] if script.startswith("./") else script
    if findings is None:
        findings = static_findings(script, display)
    result = runner.run(script, list(script_args), steps, device=device, timeout=timeout,
                        on_progress=on_progress, show_output=show_output, enforce_writes=enforce_writes,
                        output_stream=output_stream, diagnose=diagnose)
    report = report_mod.build(display, findings, result, steps)
    report["_run"] = result  # for tests; dropped before output
    return report


def main(argv: List[str]) -> int:
    own, script_args = split_argv(list(argv))
    args = _parser().parse_args(own)
    error = usage_error(args, "lintorch probe")
    if error:
        print(error, file=sys.stderr)
        return EXIT_ERROR
    if not torch_available():
        print("lintorch probe: error: the probe runs your script with PyTorch, which is not installed here; "
              "install it with `pip install 'lintorch[probe]'` (the static `lintorch check` needs no torch)",
              file=sys.stderr)
        return EXIT_ERROR

    from lintorch.probe import report as report_mod

    abi, refusal = no_sandbox_reason(args.allow_writes)
    if refusal:
        print("lintorch probe: error: " + refusal, file=sys.stderr)
        return EXIT_ERROR

    display = args.script[2:] if args.script.startswith("./") else args.script
    report = guarded(display, args.show_output, lambda progress: probe(
        args.script, script_args, args.steps, device=args.device, timeout=args.timeout, on_progress=progress,
        show_output=args.show_output, enforce_writes=bool(abi),
        output_stream=sys.stderr if args.format == "json" else sys.stdout))
    report.pop("_run", None)
    outcome = report["outcome"]
    if outcome.get("status") in ("no_device", "no_torch", "no_sandbox"):
        print("lintorch probe: error: %s" % outcome.get("message"), file=sys.stderr)
    if args.format == "json":
        report_mod.write_json(report, sys.stdout)
    else:
        report_mod.write_text(report, sys.stdout)
    sys.stdout.flush()
    return report_mod.exit_status(report)

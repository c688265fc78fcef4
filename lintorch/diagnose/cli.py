"""``lintorch diagnose SCRIPT --symptom NAME [options] [-- script args...]``.

Start from what the user sees ("my loss is flat") and rank the likely
causes in this script: static findings whose symptom matches, checked by
one probed run with extra measurements (loss trajectory, per-layer gradient
norms and update ratios, dead ReLUs, outputs, labels, inputs, learning
rate, weights that never change, the initial loss). The run goes through
the probe's runner and write sandbox unchanged.

Without torch (or with --no-run) the static causes are ranked alone.
Exit status: 0 no likely cause; 1 a likely cause; 2 usage errors, or the
probe itself broke the run.
"""

import argparse
import importlib.util
import os
import sys
from typing import List, Optional

from lintorch.diagnose import symptoms as symptoms_mod
from lintorch.diagnose import report as report_mod

EXIT_ERROR = 2
PROG = "lintorch diagnose"
# the default run: at least this many steps, and three validation passes (or epochs) when there are any,
# within a third of --timeout (overfitting and noisy validation need several evaluations)
MIN_STEPS, MIN_ROUNDS = 30, 3


def _parser() -> argparse.ArgumentParser:
    from lintorch.probe.cli import add_run_options

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Start from a symptom and rank its likely causes in a training script: static findings, "
                    "checked and extended by measurements from a short instrumented run.",
        epilog="Symptoms: %s. Arguments after -- go to the script. Exit status: 0 no likely cause, 1 a likely "
               "cause, 2 usage error or a failure of the probe itself." % symptoms_mod.describe(),
    )
    add_run_options(parser, "at least %d, until the third validation pass or epoch" % MIN_STEPS)
    parser.add_argument("--symptom", required=True, metavar="NAME",
                        help="what you see: " + ", ".join(symptoms_mod.VOCABULARY) + " (spelling is forgiving)")
    parser.add_argument("--html", metavar="FILE", help="also write a self-contained HTML report with plots "
                        "(needs matplotlib: pip install 'lintorch[report]')")
    parser.add_argument("--no-run", action="store_true", help="rank the static findings only; do not run the script")
    return parser


def matplotlib_available() -> bool:
    try:
        return importlib.util.find_spec("matplotlib") is not None
    except (ImportError, ValueError):
        return False


def _runtime_skipped(message: str) -> dict:
    return {"status": "skipped", "message": message}


def diagnose(script: str, symptom: symptoms_mod.Symptom, asked: str = None, script_args: List[str] = (),
             steps: Optional[int] = None, device: str = "auto", timeout: float = 120.0, run: bool = True,
             allow_writes: bool = False, show_output: bool = False, output_stream=None, guard=None) -> dict:
    """The diagnosis dict (see ``report``); ``_series`` holds the plotted data,
    ``_probe`` the probe report (both dropped before JSON output)."""
    from lintorch.probe import cli as probe_cli

    display = script[2:] if script.startswith("./") else script
    static = probe_cli.static_findings(script, display)
    probe_report, measured = None, None
    if not run:
        runtime = _runtime_skipped("not run (--no-run): causes ranked from the static findings only")
    elif not probe_cli.torch_available():
        runtime = _runtime_skipped("PyTorch is not installed, so the script was not run: the causes below come "
                                   "from the static findings only. The runtime measurements need "
                                   "`pip install 'lintorch[probe]'`")
    else:
        abi, refusal = probe_cli.no_sandbox_reason(allow_writes)
        if refusal:
            runtime = _runtime_skipped("the script was not run: " + refusal)
        else:
            def go(progress):
                return probe_cli.probe(script, list(script_args), steps, device=device, timeout=timeout,
                                       on_progress=progress, show_output=show_output, enforce_writes=bool(abi),
                                       output_stream=output_stream, findings=static,
                                       diagnose={"min_steps": MIN_STEPS, "min_rounds": MIN_ROUNDS})
            probe_report = guard(display, show_output, go) if guard else go(None)
            runtime, measured = _runtime(probe_report)
    diagnosis = report_mod.build(display, symptom, asked or symptom.name, static, probe_report, runtime, measured)
    diagnosis["_series"] = measured.series if measured is not None else {}
    diagnosis["_probe"] = probe_report
    return diagnosis


def _runtime(probe_report: dict):
    from lintorch.diagnose.measure import measure
    from lintorch.probe.report import _outcome_line

    run = probe_report.get("_run")
    data = ((run.report or {}).get("data") if run is not None else None) or {}
    outcome = probe_report["outcome"]
    runtime = {
        "status": "ran" if probe_report["steps"] else "failed",
        "message": _outcome_line(probe_report),
        "steps": probe_report["steps"],
        "seconds": probe_report["seconds"],
        "device": probe_report["device"],
        "torch": probe_report["torch"],
        "stop_reason": probe_report.get("stop_reason"),
        "outcome": {k: v for k, v in outcome.items() if k in ("status", "message", "traceback", "probe_caused")},
    }
    if not probe_report["steps"]:
        runtime["message"] = "the run measured nothing: " + runtime["message"]
        return runtime, None
    return runtime, measure(data, probe_report)


def main(argv: List[str]) -> int:
    from lintorch.probe.cli import guarded, split_argv, usage_error

    own, script_args = split_argv(list(argv))
    args = _parser().parse_args(own)
    error = usage_error(args, PROG)
    if error:
        print(error, file=sys.stderr)
        return EXIT_ERROR
    try:
        symptom = symptoms_mod.parse(args.symptom)
    except symptoms_mod.UnknownSymptom as exc:
        print("%s: error: %s" % (PROG, exc), file=sys.stderr)
        return EXIT_ERROR
    if args.html:
        if not matplotlib_available():
            print("%s: error: --html draws its plots with matplotlib, which is not installed here; install it with "
                  "`pip install 'lintorch[report]'`" % PROG, file=sys.stderr)
            return EXIT_ERROR
        folder = os.path.dirname(os.path.abspath(args.html))
        if not os.path.isdir(folder):
            print("%s: error: --html %s: no such directory %s" % (PROG, args.html, folder), file=sys.stderr)
            return EXIT_ERROR
    diagnosis = diagnose(args.script, symptom, args.symptom, script_args, args.steps, device=args.device,
                         timeout=args.timeout, run=not args.no_run, allow_writes=args.allow_writes,
                         show_output=args.show_output,
                         output_stream=sys.stderr if args.format == "json" else sys.stdout, guard=guarded)
    series = diagnosis.pop("_series")
    diagnosis.pop("_probe")
    if args.format == "json":
        report_mod.write_json(diagnosis, sys.stdout)
    else:
        report_mod.write_text(diagnosis, sys.stdout)
    sys.stdout.flush()
    status = report_mod.exit_status(diagnosis)
    if args.html:
        from lintorch.diagnose import html

        try:
            html.write(args.html, diagnosis, series)
        except OSError as exc:
            print("%s: error: --html %s: %s" % (PROG, args.html, exc.strerror or exc), file=sys.stderr)
            return EXIT_ERROR
        print("%s: wrote %s" % (PROG, args.html), file=sys.stderr)
    if (diagnosis["runtime"].get("outcome") or {}).get("probe_caused"):
        return EXIT_ERROR
    return status

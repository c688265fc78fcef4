"""Per-step cost of lintorch diagnose's extra measurements over plain probing.

Runs each script with the plain probe and with the diagnose measurements,
alternately, for a fixed number of steps, and compares the mean time per
optimizer step that the child measured from one step to the next (so
torch's import and the script's set-up are left out): CPU time of the
child (the verdict: it does not count other processes sharing the cores)
and wall time. The mean includes the sampled steps, where the costly
measurements are taken. Each figure is the minimum over the interleaved
rounds: noise from other processes only ever adds time, so the minimum is
the steadiest estimate of the cost on a shared machine. Every run uses one
torch thread.

    python bench/diagnose.py                    # the fixtures below, 5 rounds, 150 steps
    python bench/diagnose.py --device cuda      # on a GPU machine
    python bench/diagnose.py a.py b.py --rounds 5 --steps 100

Prints a markdown table; exit status 1 when a script's CPU overhead exceeds --limit (default 20%).
"""

import argparse
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

DEFAULT = ["classifier_fixed.py", "slow_fixed.py", "noisy_validation_fixed.py", "nan_fixed.py",
           "overfitting_fixed.py", "flat_softmax_tiny_lr.py", "slow_deep_sigmoid.py"]


def per_step(script: str, steps: int, device: str, diagnose: bool):
    """(mean CPU seconds, mean wall seconds) per step."""
    from lintorch.probe.cli import probe

    report = probe(script, [], steps, device=device, timeout=300,
                   diagnose={"min_steps": steps, "min_rounds": 1} if diagnose else None, findings=[])
    data = (report["_run"].report or {}).get("data") or {}
    wall, cpu = data.get("step_seconds") or [], data.get("step_cpu_seconds") or []
    if len(wall) < steps // 2:
        raise SystemExit("%s: only %d steps measured (%s)" % (script, len(wall), report["outcome"]))
    # the first interval includes the script's first batch set-up
    return sum(cpu[1:]) / len(cpu[1:]), sum(wall[1:]) / len(wall[1:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scripts", nargs="*")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--limit", type=float, default=20.0, help="allowed CPU overhead per script, percent")
    args = parser.parse_args()
    scripts = args.scripts or [os.path.join(ROOT, "fixtures", "diagnose", name) for name in DEFAULT]
    os.environ["OMP_NUM_THREADS"] = "1"
    started = time.time()
    rows, overheads, totals = [], [], [0.0, 0.0]
    for script in scripts:
        plain, diag = [], []
        for _ in range(args.rounds):  # interleaved, so that drifts of the machine hit both alike
            plain.append(per_step(script, args.steps, args.device, False))
            diag.append(per_step(script, args.steps, args.device, True))
        p_cpu, d_cpu = (min(r[0] for r in runs) for runs in (plain, diag))
        p_wall, d_wall = (min(r[1] for r in runs) for runs in (plain, diag))
        totals[0] += p_cpu
        totals[1] += d_cpu
        overhead = 100.0 * (d_cpu - p_cpu) / p_cpu
        overheads.append(overhead)
        rows.append("| %s | %.3f | %.3f | %+.1f%% | %.3f | %.3f | %+.1f%% |" % (
            os.path.basename(script), 1e3 * p_cpu, 1e3 * d_cpu, overhead, 1e3 * p_wall, 1e3 * d_wall,
            100.0 * (d_wall - p_wall) / p_wall))
    print("| script | probe CPU ms/step | diagnose CPU ms/step | CPU overhead | probe wall ms/step "
          "| diagnose wall ms/step | wall overhead |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))
    print("\nCPU overhead: all scripts together %+.1f%%, median %+.1f%%, max %+.1f%% (%d steps, minimum of %d "
          "interleaved rounds, device %s, %.0f s)" % (
              100.0 * (totals[1] - totals[0]) / totals[0], statistics.median(overheads), max(overheads), args.steps,
              args.rounds, args.device, time.time() - started))
    return 0 if max(overheads) <= args.limit else 1


if __name__ == "__main__":
    sys.exit(main())

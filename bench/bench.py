"""lintorch's speed, measured side by side in one run (these machines are
noisy: compare ratios taken in the same run, never absolute numbers across
runs).

    python bench/bench.py                  # timm + pytorch-lightning + torchvision
    python bench/bench.py --with-torch     # + torch's own 1.2M lines
    python bench/bench.py --skip-torchfix  # no TorchFix venv / run

Every measurement is a separate process; wall time and that process's peak
RSS (``os.wait4``) are reported. The corpus is built by bench/corpus.py from
pip wheels, so the benchmark runs on any machine.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))

import corpus  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SMALL_FILE = REPO / "fixtures" / "LT102" / "bad_sequential_last_layer.py"
TOOLS = corpus.CACHE / "tools"


def run(command: Sequence[str], cwd: Optional[Path] = None, stdin=None) -> Tuple[float, float, int]:
    """(wall seconds, peak RSS in MB, exit status) of one process."""
    start = time.perf_counter()
    process = subprocess.Popen(
        list(command), cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=stdin
    )
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
    if process.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(command)} failed ({process.returncode}):\n{stderr[-2000:]}")
    return wall, usage.ru_maxrss / 1024, process.returncode


def tool_venv(name: str, packages: Sequence[str]) -> Path:
    """A venv under the bench cache with ``packages`` (made once)."""
    venv = TOOLS / name
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *packages], check=True)
    return venv


def replicate(paths: List[Path], roots: List[Path], times: int, into: Path) -> List[Path]:
    """``times`` hard-linked (or copied) copies of the corpus, for scaling."""
    out = []
    for copy in range(times):
        target_root = into / f"copy{copy}"
        for path in paths:
            root = next(r for r in roots if r in path.parents)
            target = target_root / root.name / path.relative_to(root)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(path, target)
            except OSError:
                shutil.copyfile(path, target)
        out.append(target_root)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--with-torch", action="store_true")
    parser.add_argument("--skip-torchfix", action="store_true")
    parser.add_argument("--skip-flake8", action="store_true")
    parser.add_argument("--skip-scaling", action="store_true")
    parser.add_argument("--small-runs", type=int, default=10)
    args = parser.parse_args()

    dists = ["timm", "pytorch-lightning", "torchvision"] + (["torch"] if args.with_torch else [])
    roots = [corpus.package_sources(d) for d in dists]
    paths = [p for files in corpus.files(dists).values() for p in files]
    lines = sum(p.read_bytes().count(b"\n") for p in paths)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    python = sys.executable
    lintorch = [python, "-m", "lintorch", "--exit-zero", "--isolated"]
    print(f"corpus: {', '.join(dists)}: {len(paths)} files, {lines} lines; {cores} cores; Python {sys.version.split()[0]}")

    work = Path(tempfile.mkdtemp(prefix="lintorch-bench-"))
    rows = []  # (label, wall, rss)
    try:
        listing = work / "files.txt"
        listing.write_text("\n".join(map(str, paths)))
        floor_code = (
            "import sys, libcst\n"
            "for p in open(sys.argv[1]).read().splitlines():\n"
            "    libcst.parse_module(open(p, 'rb').read())\n"
        )
        floor = run([python, "-c", floor_code, str(listing)])
        rows.append(("bare libcst parse, serial (floor)", *floor[:2]))

        dirs = [str(r) for r in roots]
        cold_serial = run(lintorch + ["-j1", "--no-cache", *dirs])
        rows.append(("lintorch cold, -j1", *cold_serial[:2]))
        cache = work / "cache"
        cold_parallel = run(lintorch + [f"-j{cores}", "--cache-dir", str(cache), *dirs])
        rows.append((f"lintorch cold, -j{cores} (fills cache)", *cold_parallel[:2]))
        warm = run(lintorch + [f"-j{cores}", "--cache-dir", str(cache), *dirs])
        rows.append(("lintorch warm (cache hit)", *warm[:2]))

        console = shutil.which("lintorch", path=str(Path(python).parent)) or "lintorch"
        small = [run([console, "--no-cache", "--exit-zero", str(SMALL_FILE)]) for _ in range(args.small_runs)]
        rows.append(
            (f"lintorch one small file, whole process (median of {args.small_runs})",
             statistics.median(s[0] for s in small), max(s[1] for s in small))
        )

        torchfix = None
        if not args.skip_torchfix:
            venv = tool_venv("torchfix", ["torchfix"])
            torchfix = run([str(venv / "bin" / "torchfix"), "--select", "ALL", *dirs])
            rows.append(("TorchFix --select ALL", *torchfix[:2]))

        if not args.skip_flake8:
            plain = tool_venv("flake8-plain", ["flake8"])
            plain_run = run([str(plain / "bin" / "flake8"), "--exit-zero", f"-j{cores}", *dirs])
            rows.append((f"flake8 plain, -j{cores}", *plain_run[:2]))
            plugin_run = run([python, "-m", "flake8", "--exit-zero", f"-j{cores}", *dirs])
            rows.append((f"flake8 + lintorch plugin, -j{cores}", *plugin_run[:2]))

        scaling = []
        if not args.skip_scaling:
            for times in (1, 2, 4):
                copies = replicate(paths, roots, times, work / f"x{times}")
                result = run(lintorch + ["-j1", "--no-cache", *map(str, copies)])
                scaling.append((times, *result[:2]))
                shutil.rmtree(work / f"x{times}")
    finally:
        shutil.rmtree(work, ignore_errors=True)

    floor_wall = floor[0]
    print()
    print("| measurement | wall s | × floor | × TorchFix | lines/s | peak RSS MB |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, wall, rss in rows:
        vs_torchfix = f"{wall / torchfix[0]:.3f}" if torchfix else "n/a"
        print(f"| {label} | {wall:.2f} | {wall / floor_wall:.2f} | {vs_torchfix} | {lines / wall:,.0f} | {rss:.0f} |")
    if scaling:
        print()
        print("| corpus copies | files | wall s (-j1, no cache) | × 1 copy | peak RSS MB |")
        print("|---:|---:|---:|---:|---:|")
        for times, wall, rss in scaling:
            print(f"| {times} | {len(paths) * times} | {wall:.2f} | {wall / scaling[0][1]:.2f} | {rss:.0f} |")

    print()
    checks = [
        ("cold serial <= 1.3x bare libcst parse", cold_serial[0] <= 1.3 * floor_wall, f"{cold_serial[0] / floor_wall:.2f}x"),
        (f"parallel wall <= 0.7x serial ({cores} cores)", cold_parallel[0] <= 0.7 * cold_serial[0], f"{cold_parallel[0] / cold_serial[0]:.2f}x"),
        ("warm rerun <= 5% of cold", warm[0] <= 0.05 * cold_serial[0], f"{100 * warm[0] / cold_serial[0]:.1f}%"),
        ("one small file <= 0.35 s", rows[4][1] <= 0.35, f"{rows[4][1]:.3f} s"),
        ("peak RSS <= 300 MB", max(r[2] for r in rows if r[0].startswith("lintorch")) <= 300, f"{max(r[2] for r in rows if r[0].startswith('lintorch')):.0f} MB"),
    ]
    if torchfix:
        checks.append(("cold serial >= 15x faster than TorchFix", torchfix[0] >= 15 * cold_serial[0], f"{torchfix[0] / cold_serial[0]:.1f}x"))
    for label, ok, value in checks:
        print(f"[{'PASS' if ok else 'FAIL'}] {label}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

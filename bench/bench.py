"""lintorch's speed, measured side by side in one run (these machines are
noisy: compare ratios taken in the same run, never absolute numbers across
runs).

    python bench/bench.py                  # timm + pytorch-lightning + torchvision
    python bench/bench.py --with-torch     # + torch's own 1.2M lines
    python bench/bench.py --skip-torchfix  # no TorchFix venv / run
    python bench/bench.py --jobs-on-torch   # also the -j scaling on torch's sources

The -j scaling table runs -j1, -j2, -j4, -j8 and -j16 (those up to the
machine's cores) on the corpus: wall time, speed-up over -j1 and the peak
RSS of the largest process (with -jN, one worker: the memory each worker
needs). "Parses per file" counts the libcst parses of a serial cold run
(cross-file facts parse imported modules; each should be parsed once).

Every measurement is a separate process; its wall time, CPU time (user +
system, children included) and peak RSS (``os.wait4``) are reported. The
corpus is built by bench/corpus.py from pip wheels, so the benchmark runs on
any machine.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import List, NamedTuple, Optional, Sequence, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))

import corpus  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SMALL_FILE = REPO / "fixtures" / "LT102" / "bad_sequential_last_layer.py"
TOOLS = corpus.CACHE / "tools"


class Measured(NamedTuple):
    wall: float
    rss_mb: float  # peak RSS of the process or of its largest child
    cpu: float  # user + system seconds of the process and the children it waited for
    status: int


def run(command: Sequence[str], cwd: Optional[Path] = None, env: Optional[dict] = None) -> Measured:
    """One process, measured."""
    start = time.perf_counter()
    process = subprocess.Popen(list(command), cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
    process.stderr.close()
    if code not in (0, 1):
        raise SystemExit(f"{' '.join(command)} failed ({code}):\n{stderr[-2000:]}")
    return Measured(wall, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime, code)


def with_bytecode() -> dict:
    """The environment of an installed tool: these machines set
    PYTHONDONTWRITEBYTECODE=1, which makes every run of an editable install
    recompile about 50 of lintorch's modules (0.07 s); ``pip install``
    writes the .pyc files, so users never pay that."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


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


def jobs_scaling(lintorch: List[str], dirs: Sequence[str], cores: int) -> List[Tuple[int, Measured]]:
    """Cold runs at -j1, -j2, -j4, ... up to the machine's cores."""
    out = []
    for jobs in (1, 2, 4, 8, 16):
        if jobs > cores:
            break
        out.append((jobs, run(lintorch + [f"-j{jobs}", "--no-cache", *dirs])))
    return out


_COUNT_PARSES = """
import collections, json, os, sys
from lintorch import cli, engine, index
indexed = collections.Counter()
original = index.ModuleIndex.__init__
def counted_index(self, module, path="<unknown>", text=""):
    indexed[os.path.abspath(path)] += 1  # one per parsed file (a reused tree is not indexed again)
    original(self, module, path, text)
index.ModuleIndex.__init__ = counted_index
linted = []
lint_bytes = engine.lint_bytes
def counted(data, path, *args, **kwargs):
    linted.append(path)
    return lint_bytes(data, path, *args, **kwargs)
engine.lint_bytes = counted
cli.main(["--exit-zero", "--isolated", "--no-cache", "-j1", "--format", "json", "-o", sys.argv[1], *sys.argv[2:]])
json.dump({"parses": sum(indexed.values()), "distinct": len(indexed), "linted": len(linted),
           "repeated": sum(1 for n in indexed.values() if n > 1)}, sys.stderr)
"""


def parse_counts(python: str, dirs: Sequence[str], work: Path) -> dict:
    """How often a serial cold run parses each file (imported modules included)."""
    result = subprocess.run(
        [python, "-c", _COUNT_PARSES, str(work / "parses.json"), *dirs], capture_output=True, text=True, check=True
    )
    return json.loads(result.stderr.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--with-torch", action="store_true")
    parser.add_argument("--skip-torchfix", action="store_true")
    parser.add_argument("--skip-flake8", action="store_true")
    parser.add_argument("--skip-scaling", action="store_true")
    parser.add_argument("--small-runs", type=int, default=10)
    parser.add_argument("--jobs-on-torch", action="store_true", help="also measure -j scaling on torch's sources")
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
    rows: List[Tuple[str, Measured]] = []
    try:
        listing = work / "files.txt"
        listing.write_text("\n".join(map(str, paths)))
        floor_code = (
            "import sys, libcst\n"
            "for p in open(sys.argv[1]).read().splitlines():\n"
            "    libcst.parse_module(open(p, 'rb').read())\n"
        )
        floor = run([python, "-c", floor_code, str(listing)])
        rows.append(("bare libcst parse, serial (floor)", floor))

        dirs = [str(r) for r in roots]
        cold_serial = run(lintorch + ["-j1", "--no-cache", *dirs])
        rows.append(("lintorch cold, -j1", cold_serial))
        cache = work / "cache"
        cold_parallel = run(lintorch + [f"-j{cores}", "--cache-dir", str(cache), *dirs])
        rows.append((f"lintorch cold, -j{cores} = default (fills cache)", cold_parallel))
        warm = run(lintorch + [f"-j{cores}", "--cache-dir", str(cache), *dirs])
        rows.append(("lintorch warm (cache hit)", warm))
        warm_imports = subprocess.run(
            [python, "-X", "importtime", "-m", "lintorch", "--exit-zero", "--isolated", "--cache-dir", str(cache), *dirs],
            capture_output=True, text=True,
        ).stderr
        warm_imports_libcst = any(line.rstrip().endswith(" libcst") for line in warm_imports.splitlines())
        parses = parse_counts(python, dirs, work)

        console = shutil.which("lintorch", path=str(Path(python).parent)) or "lintorch"
        small_command = [console, "--no-cache", "--exit-zero", str(SMALL_FILE)]
        run(small_command, env=with_bytecode())  # writes the .pyc files an install would have
        # Interleaved with the part no libcst-based tool can avoid: starting
        # Python and importing libcst (the machine's speed drifts by minutes).
        small_runs, import_runs = [], []
        for _ in range(args.small_runs):
            small_runs.append(run(small_command, env=with_bytecode()))
            import_runs.append(run([python, "-c", "import libcst"], env=with_bytecode()))
        small, libcst_import = (
            Measured(
                statistics.median(m.wall for m in runs), max(m.rss_mb for m in runs),
                statistics.median(m.cpu for m in runs), 0,
            )
            for runs in (small_runs, import_runs)
        )
        rows.append((f"lintorch one small file, whole process (median of {args.small_runs})", small))
        rows.append((f"python -c 'import libcst' (median of {args.small_runs}, same moments)", libcst_import))

        torchfix = None
        if not args.skip_torchfix:
            venv = tool_venv("torchfix", ["torchfix"])
            torchfix = run([str(venv / "bin" / "torchfix"), "--select", "ALL", *dirs])
            rows.append((f"TorchFix --select ALL (default: {cores} jobs)", torchfix))

        if not args.skip_flake8:
            plain = tool_venv("flake8-plain", ["flake8"])
            rows.append((f"flake8 plain, -j{cores}", run([str(plain / "bin" / "flake8"), "--exit-zero", f"-j{cores}", *dirs])))
            rows.append((f"flake8 + lintorch plugin, -j{cores}", run([python, "-m", "flake8", "--exit-zero", f"-j{cores}", *dirs])))

        jobs_rows = jobs_scaling(lintorch, dirs, cores)
        torch_jobs_rows = jobs_scaling(lintorch, [str(corpus.package_sources("torch"))], cores) if args.jobs_on_torch else []

        scaling = []
        if not args.skip_scaling:
            for times in (1, 2, 4):
                copies = replicate(paths, roots, times, work / f"x{times}")
                scaling.append((times, run(lintorch + ["-j1", "--no-cache", *map(str, copies)])))
                shutil.rmtree(work / f"x{times}")
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print()
    print("| measurement | wall s | CPU s | × floor (wall) | × TorchFix (wall) | lines/s | peak RSS MB |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    single_file_rows = {label for label, _ in rows if "median of" in label}
    for label, m in rows:
        throughput = "n/a" if label in single_file_rows else f"{lines / m.wall:,.0f}"
        vs_torchfix = f"{m.wall / torchfix.wall:.3f}" if torchfix else "n/a"
        print(
            f"| {label} | {m.wall:.2f} | {m.cpu:.2f} | {m.wall / floor.wall:.2f} | {vs_torchfix} "
            f"| {throughput} | {m.rss_mb:.0f} |"
        )
    if scaling:
        print()
        print("| corpus copies | files | wall s (-j1, no cache) | × 1 copy | peak RSS MB |")
        print("|---:|---:|---:|---:|---:|")
        for times, m in scaling:
            print(f"| {times} | {len(paths) * times} | {m.wall:.2f} | {m.wall / scaling[0][1].wall:.2f} | {m.rss_mb:.0f} |")

    for title, table in (("bench corpus", jobs_rows), ("torch's sources", torch_jobs_rows)):
        if table:
            print()
            print(f"| -j N ({title}, cold, no cache) | wall s | CPU s | × -j1 speed-up | peak RSS MB (largest process) |")
            print("|---:|---:|---:|---:|---:|")
            for jobs, m in table:
                print(f"| {jobs} | {m.wall:.2f} | {m.cpu:.2f} | {table[0][1].wall / m.wall:.2f} | {m.rss_mb:.0f} |")
    print()
    print(
        f"parses per file (serial cold run): {parses['parses']} parses of {parses['distinct']} distinct files "
        f"({parses['repeated']} parsed more than once; {parses['linted']} files linted)"
    )
    print()
    lintorch_rss = max(m.rss_mb for label, m in rows if label.startswith("lintorch"))
    checks = [
        ("cold serial <= 1.3x bare libcst parse", cold_serial.wall <= 1.3 * floor.wall, f"{cold_serial.wall / floor.wall:.2f}x"),
        (f"parallel wall <= 0.7x serial ({cores} cores)", cold_parallel.wall <= 0.7 * cold_serial.wall,
         f"{cold_parallel.wall / cold_serial.wall:.2f}x"),
        ("warm rerun <= 5% of cold", warm.wall <= 0.05 * cold_serial.wall, f"{100 * warm.wall / cold_serial.wall:.1f}%"),
        ("one small file <= 0.35 s", small.wall <= 0.35,
         f"{small.wall:.3f} s, of which starting Python and importing libcst {libcst_import.wall:.3f} s"),
        ("peak RSS <= 300 MB", lintorch_rss <= 300, f"{lintorch_rss:.0f} MB"),
        ("warm run served from the cache does not import libcst", not warm_imports_libcst,
         "libcst imported" if warm_imports_libcst else "not imported"),
        ("each file parsed once per run (serial)", parses["repeated"] == 0,
         f"{parses['repeated']} of {parses['distinct']} parsed again (evicted under --module-memory)"),
    ]
    if torchfix:
        # Both tools use every core by default: the wall-clock target compares
        # the default runs. Serial wall and total CPU seconds (the same work
        # on one core) are printed beside it.
        checks.append((
            ">= 15x faster than TorchFix, wall clock, both at their defaults",
            torchfix.wall >= 15 * cold_parallel.wall,
            f"{torchfix.wall / cold_parallel.wall:.1f}x (lintorch -j1 wall: {torchfix.wall / cold_serial.wall:.1f}x; "
            f"CPU seconds: {torchfix.cpu / cold_serial.cpu:.1f}x)",
        ))
    for label, ok, value in checks:
        print(f"[{'PASS' if ok else 'FAIL'}] {label}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Long, time-bounded fuzzing of the engine (issue 8), outside the test suite.

    python bench/fuzz.py --minutes 10 [--corpus DIR] [--out DIR]

The same oracle as tests/test_fuzz.py (tests/fuzzlib.py): linting any input
must return well-formed findings, never raise, never report an internal error
(LT001). Inputs come from six generators, in turn:

* grammar: syntactically valid Python from hypothesmith.from_grammar()
* cst:     valid Python from hypothesmith.from_node()
* mutate:  fixtures, rule examples and --corpus files with lines deleted,
           duplicated, swapped, cut, re-indented, snippets and bytes inserted
* fix:     the same inputs through --fix --unsafe-fixes as well (never
           raises, never changes an unparsable file, output still parses)
* notebook: notebooks with mutated code cells and damaged JSON, linted and fixed
* noise:   random bytes and odd text after the trigger-word header

Each generator runs in a child process that writes the input it is about to
lint to disk first, so an input that kills the interpreter (a native
SIGSEGV in libcst, say) or hangs it (over --hang-seconds) is caught by this
parent, saved, and the child restarted. Prints inputs tried, time, crashes.
"""

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

MODES = ("grammar", "mutate", "fix", "notebook", "noise", "cst")


# -- child ---------------------------------------------------------------------


def _child(mode: str, seconds: float, state: Path, corpus: str, seed: int) -> None:
    import warnings

    import fuzzlib

    warnings.simplefilter("ignore")
    deadline = time.monotonic() + seconds
    current = state / "current.bin"
    progress = state / "progress.json"
    counts = {"inputs": 0, "problems": 0}

    def run_one(data: bytes, path: str = "fuzz.py", fix: bool = False) -> None:
        current.write_bytes(data)
        found = fuzzlib.problems(data, path, fix=fix)
        counts["inputs"] += 1
        if found:
            counts["problems"] += 1
            name = f"{mode}-{counts['inputs']}"
            (state / "found").mkdir(exist_ok=True)
            (state / "found" / f"{name}.py").write_bytes(data)
            (state / "found" / f"{name}.txt").write_text("\n".join(found))
        if counts["inputs"] % 10 == 0:
            progress.write_text(json.dumps(counts))

    if mode in ("mutate", "fix"):
        rnd = random.Random(seed)
        seeds = fuzzlib.seed_texts() + _corpus_texts(corpus)
        while time.monotonic() < deadline:
            text = fuzzlib.mutate_lines(rnd.choice(seeds), rnd, rnd.randint(1, 8))
            data = text.encode("utf-8", "surrogatepass")
            if rnd.random() < 0.3:
                data = fuzzlib.mutate_bytes(data, rnd, rnd.randint(1, 4))
            run_one(data, fix=mode == "fix")
    elif mode == "notebook":
        rnd = random.Random(seed)
        seeds = fuzzlib.seed_texts()
        documents = fuzzlib.notebook_seeds()
        while time.monotonic() < deadline:
            run_one(fuzzlib.mutate_notebook(rnd.choice(documents), seeds, rnd), "fuzz.ipynb", fix=True)
    else:
        from hypothesis import HealthCheck, Phase, given, settings

        strategy = {"grammar": fuzzlib.grammar_python, "cst": fuzzlib.cst_python, "noise": fuzzlib.noise}[mode]()

        class TimeUp(Exception):
            pass

        @settings(
            max_examples=10**9,
            deadline=None,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(strategy)
        def fuzz(data):
            if time.monotonic() >= deadline:
                raise TimeUp
            run_one(data)

        try:
            fuzz()
        except TimeUp:
            pass
    progress.write_text(json.dumps(counts))


def _corpus_texts(corpus: str, limit: int = 400):
    if not corpus:
        return []
    files = sorted(p for p in Path(corpus).rglob("*.py") if p.is_file() and p.stat().st_size < 60_000)
    random.Random(0).shuffle(files)
    texts = []
    for path in files[:limit]:
        try:
            texts.append(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError):
            continue
    return texts


# -- parent --------------------------------------------------------------------


def _run_mode(mode, seconds, out, corpus, seed, hang_seconds, totals):
    """Run one generator for ``seconds``, restarting its child after a
    crash of the interpreter or a hang."""
    end = time.monotonic() + seconds
    while time.monotonic() < end - 1:
        state = Path(tempfile.mkdtemp(prefix=f"fuzz-{mode}-", dir=out))
        budget = end - time.monotonic()
        command = [sys.executable, __file__, "--child", mode, "--seconds", str(budget), "--state", str(state),
                   "--seed", str(seed), "--corpus", corpus or ""]
        child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        last_input, last_change = None, time.monotonic()
        killed = False
        while child.poll() is None:
            time.sleep(0.5)
            current = state / "current.bin"
            try:
                stamp = (current.stat().st_mtime_ns, current.stat().st_size)
            except OSError:
                stamp = None
            if stamp != last_input:
                last_input, last_change = stamp, time.monotonic()
            elif time.monotonic() - last_change > hang_seconds:
                child.kill()
                killed = True
        stderr = child.stderr.read().decode(errors="replace")
        child.wait()
        counts = {"inputs": 0, "problems": 0}
        try:
            counts = json.loads((state / "progress.json").read_text())
        except (OSError, ValueError):
            pass
        totals[mode]["inputs"] += counts["inputs"]
        totals[mode]["problems"] += counts["problems"]
        for found in sorted((state / "found").glob("*.txt")) if (state / "found").is_dir() else []:
            totals["problems"].append((mode, str(found), found.read_text().splitlines()[0][:200]))
        if killed or child.returncode != 0:
            what = "hang" if killed else f"died with status {child.returncode}"
            totals[mode]["inputs"] += 1
            totals[mode]["problems"] += 1
            saved = state / f"{mode}-fatal.py"
            if (state / "current.bin").exists():
                (state / "current.bin").rename(saved)
            totals["problems"].append((mode, str(saved), f"{what}: {stderr.strip()[-300:]}"))
        seed += 1
    return seed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="total time budget (default 10)")
    parser.add_argument("--corpus", default="", help="a directory of .py files to mutate besides the fixtures")
    parser.add_argument("--out", default="", help="where inputs that found problems are kept (default: a temp dir)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--hang-seconds", type=float, default=60.0, help="one input taking longer is a hang")
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated subset of {','.join(MODES)}")
    parser.add_argument("--slice-seconds", type=float, default=60.0, help="time per generator turn")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--state", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        _child(args.child, args.seconds, Path(args.state), args.corpus, args.seed)
        return 0

    out = args.out or tempfile.mkdtemp(prefix="lintorch-fuzz-")
    os.makedirs(out, exist_ok=True)
    modes = [m for m in args.modes.split(",") if m]
    totals = {mode: {"inputs": 0, "problems": 0} for mode in modes}
    totals["problems"] = []
    start = time.monotonic()
    budget = args.minutes * 60
    seed = args.seed
    turn = 0
    while time.monotonic() - start < budget - 2:
        mode = modes[turn % len(modes)]
        slice_seconds = min(args.slice_seconds, budget - (time.monotonic() - start))
        seed = _run_mode(mode, slice_seconds, out, args.corpus, seed, args.hang_seconds, totals)
        turn += 1
    elapsed = time.monotonic() - start

    inputs = sum(totals[m]["inputs"] for m in modes)
    print(f"lintorch fuzz: {inputs} inputs in {elapsed:.0f} s ({inputs / max(elapsed, 1):.1f}/s)")
    for mode in modes:
        print(f"  {mode:8s} {totals[mode]['inputs']:7d} inputs  {totals[mode]['problems']:3d} problems")
    print(f"problems: {len(totals['problems'])} (inputs kept in {out})")
    for mode, path, first in totals["problems"]:
        print(f"  [{mode}] {path}: {first}")
    return 1 if totals["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())

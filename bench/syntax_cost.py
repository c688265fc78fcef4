"""What a syntax check costs on the files the trigger-word prefilter skips.

lintorch parses only files that contain an enabled rule's trigger word; the
others must still be checked for syntax errors (LT000). This measures, on
the bench corpus, serial, in one process (GC tuned as lintorch's runner
tunes it), the seconds to:

* read and decode every file (the work every run does anyway);
* parse every file with libcst (the floor of bench/bench.py);
* ``ast.parse`` / ``compile(..., "exec")`` every file;
* ``ast.parse`` only the files without a trigger word: the extra work the
  syntax check adds to a cold run.

    python bench/syntax_cost.py                    # timm + pytorch-lightning + torchvision
    python bench/syntax_cost.py --skip-libcst      # without the (slow) libcst row
"""

import argparse
import ast
import gc
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import corpus  # noqa: E402

from lintorch import engine, registry, source  # noqa: E402


def timed(function, items) -> float:
    start = time.perf_counter()
    for item in items:
        function(item)
    return time.perf_counter() - start


def quiet_compile(text: str, mode_ast: bool) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            if mode_ast:
                compile(text, "<file>", "exec", ast.PyCF_ONLY_AST, dont_inherit=True)  # = ast.parse
            else:
                compile(text, "<file>", "exec", dont_inherit=True)
        except SyntaxError:
            pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("packages", nargs="*", default=["timm", "pytorch-lightning", "torchvision"])
    parser.add_argument("--skip-libcst", action="store_true")
    args = parser.parse_args()

    paths = [p for files in corpus.files(args.packages).values() for p in files]
    rules = registry.instantiate(registry.resolve_enabled(["ALL"], []))
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)

    start = time.perf_counter()
    blobs = [p.read_bytes() for p in paths]
    texts = []
    for data in blobs:
        decoded = source.decode(data)
        texts.append(decoded.text if isinstance(decoded, source.DecodedSource) else "")
    read_decode = time.perf_counter() - start
    skipped = [text for data, text in zip(blobs, texts) if not engine.could_trigger(data, rules)]
    total_bytes = sum(len(b) for b in blobs)
    skipped_bytes = sum(len(t.encode("utf-8")) for t in skipped)
    lines = sum(b.count(b"\n") for b in blobs)
    print(f"corpus: {', '.join(args.packages)}: {len(paths)} files, {lines} lines; Python {sys.version.split()[0]}")
    print(f"files without a trigger word: {len(skipped)} ({100 * skipped_bytes / total_bytes:.0f}% of the bytes)")
    print()
    rows = [("read + decode every file", read_decode)]
    rows.append(("ast.parse, every file", timed(lambda t: quiet_compile(t, True), texts)))
    rows.append(("compile(exec), every file", timed(lambda t: quiet_compile(t, False), texts)))
    rows.append(("lintorch's syntax check, files without a trigger word", timed(engine.syntax_error, skipped)))
    if not args.skip_libcst:
        rows.append(("libcst parse, every file (bench floor)", timed(source.parse, texts)))
    floor = rows[-1][1] if not args.skip_libcst else None
    print("| work | seconds | × libcst parse |")
    print("|---|---:|---:|")
    for label, seconds in rows:
        ratio = f"{seconds / floor:.3f}" if floor else "n/a"
        print(f"| {label} | {seconds:.2f} | {ratio} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

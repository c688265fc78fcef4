"""Precision on code written by experts: lint the sources of torch,
torchvision, timm and pytorch-lightning and print findings per code per 10k
lines. Every error-severity finding there is a real bug or a false positive
to fix; warnings should stay at or below 1 per 10k lines.

    python bench/precision.py                 # all four packages
    python bench/precision.py timm --show LT2 # list the LT2xx findings
"""

import argparse
import sys
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import corpus  # noqa: E402

from lintorch import engine, registry  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("packages", nargs="*", default=list(corpus.DEFAULT))
    parser.add_argument("--show", action="append", default=[], help="list findings whose code starts with this")
    parser.add_argument("--errors", action="store_true", help="list every error-severity finding")
    args = parser.parse_args()

    rules = registry.instantiate(registry.resolve_enabled(["ALL"], []))
    severity = {cls.code: cls.severity.value for cls in registry.all_rules()}
    severity.update({registry.UNPARSABLE_CODE: "error", registry.INTERNAL_ERROR_CODE: "error"})
    per_package = defaultdict(Counter)
    lines_per_package = Counter()
    listed = []
    for dist, paths in corpus.files(args.packages).items():
        for path in paths:
            data = path.read_bytes()
            lines_per_package[dist] += data.count(b"\n")
            for finding in engine.lint_bytes(data, str(path), rules):
                per_package[dist][finding.code] += 1
                if any(finding.code.startswith(p) for p in args.show) or (
                    args.errors and finding.severity.value == "error"
                ):
                    listed.append(finding)

    total_lines = sum(lines_per_package.values())
    codes = sorted({code for counter in per_package.values() for code in counter})
    header = f"{'code':<7}{'sev':<9}" + "".join(f"{d[:12]:>14}" for d in args.packages) + f"{'all /10k':>10}"
    print(header)
    print(f"{'lines':<16}" + "".join(f"{lines_per_package[d]:>14}" for d in args.packages) + f"{total_lines:>10}")
    for code in codes:
        count = sum(per_package[d][code] for d in args.packages)
        row = f"{code:<7}{severity.get(code, '?'):<9}" + "".join(f"{per_package[d][code]:>14}" for d in args.packages)
        print(row + f"{count * 10000 / max(total_lines, 1):>10.2f}")
    if not codes:
        print("no findings")
    for finding in listed:
        print(f"{finding.path}:{finding.line}:{finding.column}: {finding.code} {finding.message}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

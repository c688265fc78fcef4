"""Where a cold serial run spends its time, stage by stage.

    python bench/stages.py                 # the bench corpus (bench/corpus.py)
    python bench/stages.py DIR [DIR ...]   # any files or directories

Runs ``lintorch --isolated --no-cache -j1`` in this process with a timer
around each stage: parsing, the nesting guard, indexing, the trigger-word
prefilter, each rule's check, the cross-file bookkeeping. A stage's time
excludes the stages nested in it (a rule that makes a project module load
is not charged for that module's parse). The timers add a few percent;
compare stages within one run, and use bench/bench.py for the targets.
"""

import sys
import time
from collections import Counter
from pathlib import Path
from typing import Callable, List

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

spent: Counter = Counter()
_nested: List[float] = []


def timed(stage: str, function: Callable, consume: bool = False) -> Callable:
    """``function`` with its own time (minus nested stages) added to ``stage``;
    ``consume`` drains a generator inside the timer (rule checks yield)."""

    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        _nested.append(0.0)
        try:
            result = function(*args, **kwargs)
            return list(result) if consume else result
        finally:
            elapsed = time.perf_counter() - start
            spent[stage] += elapsed - _nested.pop()
            if _nested:
                _nested[-1] += elapsed

    return wrapper


def instrument() -> None:
    from lintorch import engine, imports, index, project, registry, source

    source.parse = project.source.parse = timed("libcst parse", source.parse)
    source._too_deep = timed("nesting guard", source._too_deep)
    index.ModuleIndex.__init__ = timed("index", index.ModuleIndex.__init__)
    engine.candidate_rules = timed("trigger words", engine.candidate_rules)
    imports.Graphs.related = timed("related files", imports.Graphs.related)
    imports.ImportGraph._direct_importers = timed("importer search", imports.ImportGraph._direct_importers)
    project.Project.begin = timed("begin (eviction)", project.Project.begin)
    engine._position = timed("positions", engine._position)
    for rule in registry.all_rules():
        rule.check = timed(rule.code, rule.check, consume=True)


def main(argv: List[str]) -> None:
    from lintorch import cli

    if argv:
        paths = argv
    else:
        import corpus

        paths = [str(corpus.package_sources(dist)) for dist in ("timm", "pytorch-lightning", "torchvision")]
    instrument()
    start = time.perf_counter()
    try:
        cli.main(["--isolated", "--no-cache", "-j1", "--quiet", "--exit-zero", *paths])
    except SystemExit:
        pass
    total = time.perf_counter() - start
    print(f"{'stage':<24} {'s':>7} {'share':>6}")
    for stage, seconds in spent.most_common():
        if seconds >= 0.005:
            print(f"{stage:<24} {seconds:7.2f} {seconds / total:6.1%}")
    rest = total - sum(spent.values())
    print(f"{'the rest':<24} {rest:7.2f} {rest / total:6.1%}")
    print(f"{'total':<24} {total:7.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])

"""Running the engine over many files: cache lookups, a process pool for
large runs, serial for small ones, results streamed in input order."""

import gc
import os
from typing import Dict, FrozenSet, Iterator, List, Optional, Sequence, Tuple

from lintorch import config as config_mod, engine, registry
from lintorch.cache import FindingsCache
from lintorch.rule import Finding, Rule

#: Below this many files a pool costs more to start than it saves.
MIN_FILES_FOR_POOL = 16


class RuleCache:
    """Rule instances per distinct set of enabled codes (per-file ignores)."""

    def __init__(self, config: config_mod.Config):
        self.config = config
        self.enabled = config.enabled_codes()
        #: Codes whose info findings are reported (explicitly selected).
        self.info = config.info_codes()
        self._by_codes: Dict[FrozenSet[str], List[Rule]] = {}

    def codes_for(self, path: str) -> FrozenSet[str]:
        ignored = self.config.per_file_ignored(path)
        if not ignored:
            return self.enabled
        return frozenset(code for code in self.enabled if not any(code.startswith(p) for p in ignored))

    def rules_for(self, codes: FrozenSet[str]) -> List[Rule]:
        rules = self._by_codes.get(codes)
        if rules is None:
            rules = self._by_codes[codes] = registry.instantiate(codes, self.info & codes)
        return rules


class FileLinter:
    """Everything needed to lint one file; one per process."""

    def __init__(self, config: config_mod.Config, cache_dir: Optional[str], debug: bool):
        self.rules = RuleCache(config)
        self.cache = FindingsCache(cache_dir) if cache_dir else None
        self.debug = debug

    def lint_data(self, data: bytes, display: str) -> List[Finding]:
        codes = self.rules.codes_for(display)
        key = None
        if self.cache is not None:
            kind = "ipynb" if display.endswith(engine.NOTEBOOK_SUFFIX) else ""
            key = self.cache.key(data, codes, kind, self.rules.info & codes)
            cached = self.cache.get(key, display)
            if cached is not None:
                return cached
        found = engine.lint_bytes(
            data, display, self.rules.rules_for(codes), debug=self.debug,
            check_syntax=registry.UNPARSABLE_CODE in codes,
        )
        findings = [f for f in found if f.code in codes]
        if key is not None and not any(f.code == registry.INTERNAL_ERROR_CODE for f in findings):
            self.cache.put(key, findings)
        return findings

    def lint_path(self, path: str) -> List[Finding]:
        display = display_path(path)
        data = engine.read_file(path, display)
        if isinstance(data, Finding):
            return [data] if data.code in self.rules.codes_for(display) else []
        return self.lint_data(data, display)


def display_path(path: str) -> str:
    """Paths as the user typed them, without a leading ``./``."""
    return path[2:] if path.startswith("./") else path


_WORKER: Optional[FileLinter] = None


def _init_worker(config: config_mod.Config, cache_dir: Optional[str], debug: bool) -> None:
    global _WORKER
    _WORKER = FileLinter(config, cache_dir, debug)
    _tune_gc()


def _lint_chunk(paths: Sequence[str]) -> List[Tuple[str, List[Finding]]]:
    assert _WORKER is not None
    return [(path, _WORKER.lint_path(path)) for path in paths]


def _tune_gc() -> None:
    # libcst trees are acyclic and freed by reference counting as each file
    # is dropped; the cyclic collector only rescans them (PERF-NOTES: ~30%
    # of parse time). Keep it, but rarely.
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)


def _pool_context():
    import multiprocessing

    methods = multiprocessing.get_all_start_methods()
    # fork shares the already-imported libcst and rules with the workers.
    return multiprocessing.get_context("fork" if "fork" in methods else None)


def effective_jobs(jobs: int) -> int:
    if jobs > 0:
        return jobs
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


def lint_paths(
    paths: Sequence[str],
    config: config_mod.Config,
    *,
    jobs: int = 0,
    cache_dir: Optional[str] = None,
    debug: bool = False,
) -> Iterator[Tuple[str, List[Finding]]]:
    """(path, findings) for every path, in order."""
    workers = min(effective_jobs(jobs), len(paths))
    if workers <= 1 or len(paths) < MIN_FILES_FOR_POOL:
        linter = FileLinter(config, cache_dir, debug)
        old_threshold = gc.get_threshold()
        gc.set_threshold(100_000, 50, 100)
        try:
            for path in paths:
                yield path, linter.lint_path(path)
        finally:
            gc.set_threshold(*old_threshold)
        return
    # Small chunks keep the workers balanced (file sizes vary a lot) while
    # amortising the inter-process round trip.
    chunk = max(1, min(32, len(paths) // (workers * 8)))
    chunks = [paths[i : i + chunk] for i in range(0, len(paths), chunk)]
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    done = 0
    try:
        with ProcessPoolExecutor(
            max_workers=workers,
            mp_context=_pool_context(),
            initializer=_init_worker,
            initargs=(config, cache_dir, debug),
        ) as pool:
            for results in pool.map(_lint_chunk, chunks):
                yield from results
                done += len(results)
    except BrokenProcessPool:
        # A worker died (a native crash, the OOM killer): find the file that
        # kills it by linting the rest one per fresh worker, and report it.
        yield from _lint_isolated(paths[done:], config, cache_dir, debug)


def _lint_isolated(
    paths: Sequence[str], config: config_mod.Config, cache_dir: Optional[str], debug: bool
) -> Iterator[Tuple[str, List[Finding]]]:
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    from lintorch import source

    pool = None
    try:
        for path in paths:
            if pool is None:
                pool = ProcessPoolExecutor(
                    max_workers=1, mp_context=_pool_context(), initializer=_init_worker,
                    initargs=(config, cache_dir, debug),
                )
            try:
                yield from pool.submit(_lint_chunk, [path]).result()
            except BrokenProcessPool:
                pool.shutdown(wait=True)
                pool = None
                reason = "the process analysing this file died (a crash in a native library?); other files were analysed"
                error = engine.error_finding(display_path(path), source.SourceError(reason))
                yield path, [error] if error.code in config.enabled_codes() else []
    finally:
        if pool is not None:
            pool.shutdown(wait=True)

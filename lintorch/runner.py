"""Running the engine over many files: cache lookups, a process pool for
large runs, serial for small ones, results streamed in input order.

The cache is consulted first, in this process, for every file; only the
misses are linted. Neither step before linting imports libcst or the rules,
so a run served entirely from the cache never loads them (their import is
most of such a run). Misses are linted serially or, for many files, by a
pool whose work is balanced by file size (see :func:`plan_lanes`).
"""

import gc
import os
from typing import Dict, FrozenSet, Iterator, List, Optional, Sequence, Tuple

from lintorch import config as config_mod, imports, registry
from lintorch.cache import FindingsCache
from lintorch.imports import DependencyCheck
from lintorch.rule import Finding, Rule

#: Below this many files a pool costs more to start than it saves.
MIN_FILES_FOR_POOL = 16
#: Work units per worker: enough for the last ones to even out the load.
CHUNKS_PER_WORKER = 8
NOTEBOOK_SUFFIX = ".ipynb"


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
    """Everything needed to lint one file; one per process. Its project
    (the modules other files' facts come from) lives as long as it does, so
    a module imported by many linted files is parsed once."""

    def __init__(
        self, config: config_mod.Config, cache_dir: Optional[str], debug: bool, project_memory_mb: Optional[int] = None
    ):
        self.rules = RuleCache(config)
        self.cache = FindingsCache(cache_dir) if cache_dir else None
        self.debug = debug
        self.project_memory_mb = project_memory_mb
        self.dependencies_unchanged = DependencyCheck()
        self._project = None

    @property
    def project(self):
        if self._project is None:
            self._project = new_project(self.project_memory_mb)
        return self._project

    def _key(self, data: bytes, display: str, codes: FrozenSet[str]) -> str:
        assert self.cache is not None
        kind = "ipynb" if display.endswith(NOTEBOOK_SUFFIX) else ""
        return self.cache.key(data, codes, kind, self.rules.info & codes, display)

    def cached(self, path: str) -> Optional[List[Finding]]:
        """The cached findings of a file, if its cache entry still holds
        (without importing libcst or the rules)."""
        if self.cache is None:
            return None
        data = imports.read_bytes(path)
        if data is None:
            return None  # unreadable, not a regular file: linting reports why
        display = display_path(path)
        key = self._key(data, display, self.rules.codes_for(display))
        return self.cache.get(key, display, self.dependencies_unchanged)

    def lint_data(self, data: bytes, display: str) -> List[Finding]:
        codes = self.rules.codes_for(display)
        key = None
        if self.cache is not None:
            key = self._key(data, display, codes)
            cached = self.cache.get(key, display, self.dependencies_unchanged)
            if cached is not None:
                return cached
        from lintorch import engine

        project = self.project
        project.begin(display)
        try:
            found = engine.lint_bytes(
                data, display, self.rules.rules_for(codes), debug=self.debug,
                check_syntax=registry.UNPARSABLE_CODE in codes, project=project,
            )
        finally:
            dependencies = project.end()
        findings = [f for f in found if f.code in codes]
        if key is not None and not any(f.code == registry.INTERNAL_ERROR_CODE for f in findings):
            self.cache.put(key, findings, dependencies.as_json() if dependencies else None)
        return findings

    def lint_in_order(self, paths: Sequence[str]) -> Iterator[List[Finding]]:
        """The findings of each path, linted one after the other; the
        project is told the order first, to keep what later files need."""
        if paths:  # (a run with nothing to lint never builds a project)
            self.project.expect([display_path(path) for path in paths])
        for path in paths:
            yield self.lint_path(path)
            _settle()

    def lint_path(self, path: str) -> List[Finding]:
        from lintorch import engine

        display = display_path(path)
        data = engine.read_file(path, display)
        if isinstance(data, Finding):
            return [data] if data.code in self.rules.codes_for(display) else []
        return self.lint_data(data, display)


def new_project(memory_mb: Optional[int] = None):
    """A project for one process: the modules other files take facts from,
    parsed once and kept within ``memory_mb`` (``--module-memory``)."""
    from lintorch import engine
    from lintorch.project import BYTES_PER_CHAR, DEFAULT_BUDGET_CHARS, Project

    budget = DEFAULT_BUDGET_CHARS if memory_mb is None else memory_mb * 1024 * 1024 // BYTES_PER_CHAR
    return Project(budget_chars=budget, notebook_loader=engine.notebook_tree)


def display_path(path: str) -> str:
    """Paths as the user typed them, without a leading ``./``."""
    return path[2:] if path.startswith("./") else path


_WORKER: Optional[FileLinter] = None


def _init_worker(config: config_mod.Config, cache_dir: Optional[str], debug: bool, memory: Optional[int]) -> None:
    global _WORKER
    _WORKER = FileLinter(config, cache_dir, debug, memory)
    _tune_gc()


def _lint_chunk(paths: Sequence[str]) -> List[Tuple[str, List[Finding]]]:
    assert _WORKER is not None
    return list(zip(paths, _WORKER.lint_in_order(paths)))


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


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def plan_lanes(paths: Sequence[str], workers: int, sizes: Optional[Sequence[int]] = None) -> List[List[List[int]]]:
    """Each worker's work, as chunks of indexes into ``paths``.

    Files of one directory stay together in a chunk (they import each other)
    up to a byte target of 1/8 of a worker's share; a file larger than that
    is a chunk of its own. A worker's lane is a run of consecutive chunks
    worth about its share of the bytes: a package's files go to one worker,
    which parses the modules they share once (handing chunks to whichever
    worker is free made each worker parse most shared modules: a third more
    parses on the bench corpus with two). A worker that runs out takes the
    last chunk of the lane with the most bytes left (:func:`_lint_in_pool`).
    ``sizes``: the files' sizes, if already known."""
    if sizes is None:
        sizes = [_size(path) for path in paths]
    target = max(1, sum(sizes) // max(1, workers * CHUNKS_PER_WORKER))
    chunks: List[List[int]] = []
    current: List[int] = []
    current_bytes = 0
    current_dir = None
    for i, path in enumerate(paths):
        directory = os.path.dirname(path)
        if current and (directory != current_dir or current_bytes + sizes[i] > target):
            chunks.append(current)
            current, current_bytes = [], 0
        current.append(i)
        current_bytes += sizes[i]
        current_dir = directory
    if current:
        chunks.append(current)
    share = sum(sizes) / max(1, workers)
    lanes: List[List[List[int]]] = [[] for _ in range(max(1, workers))]
    lane, filled = 0, 0
    for chunk in chunks:
        weight = sum(sizes[i] for i in chunk)
        # a chunk goes to the next lane once this one holds its share (to the
        # nearer side of the boundary), unless it is the last lane
        if lane < len(lanes) - 1 and lanes[lane] and filled + weight / 2 > share * (lane + 1):
            lane += 1
        lanes[lane].append(chunk)
        filled += weight
    return lanes


def lint_paths(
    paths: Sequence[str],
    config: config_mod.Config,
    *,
    jobs: int = 0,
    cache_dir: Optional[str] = None,
    debug: bool = False,
    project_memory_mb: Optional[int] = None,
) -> Iterator[Tuple[str, List[Finding]]]:
    """(path, findings) for every path, in order. ``project_memory_mb``
    caps the parsed modules each process keeps for other files' facts."""
    linter = FileLinter(config, cache_dir, debug, project_memory_mb)
    results: Dict[int, List[Finding]] = {}
    misses: List[int] = []
    for i, path in enumerate(paths):
        cached = linter.cached(path) if cache_dir else None
        if cached is None:
            misses.append(i)
        else:
            results[i] = cached
    workers = min(effective_jobs(jobs), len(misses))
    if workers <= 1 or len(misses) < MIN_FILES_FOR_POOL:
        linted = _lint_serially(linter, paths, misses)
    else:
        linted = _lint_in_pool(paths, misses, workers, (config, cache_dir, debug, project_memory_mb))
    emitted = 0
    for i, findings in linted:
        results[i] = findings
        while emitted in results:
            yield paths[emitted], results.pop(emitted)
            emitted += 1
    while emitted < len(paths):  # every file was served from the cache
        yield paths[emitted], results.pop(emitted)
        emitted += 1


def _lint_serially(linter: FileLinter, paths: Sequence[str], misses: Sequence[int]) -> Iterator[Tuple[int, List[Finding]]]:
    old_threshold = gc.get_threshold()
    gc.set_threshold(100_000, 50, 100)
    try:
        yield from zip(misses, linter.lint_in_order([paths[i] for i in misses]))
    finally:
        gc.set_threshold(*old_threshold)


def _settle() -> None:
    """Between two files: what survives is the project's parsed modules
    (a linted file's analysis is freed by reference counting, a dropped
    module by ``ModuleIndex.release``). Frozen, the collector no longer
    rescans them; left young, one collection of them cost seconds."""
    gc.freeze()


def _lint_in_pool(
    paths: Sequence[str], misses: Sequence[int], workers: int, initargs: tuple
) -> Iterator[Tuple[int, List[Finding]]]:
    """One single-process pool per worker, so that a lane's chunks all run
    in the same process (:func:`plan_lanes`); one chunk in flight each."""
    import contextlib
    from collections import deque
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    from lintorch import engine  # noqa: F401  (imported before the fork: the workers share it)

    registry.all_rules()
    sizes = {i: _size(paths[i]) for i in misses}
    lanes = [
        deque([misses[j] for j in chunk] for chunk in lane)
        for lane in plan_lanes([paths[i] for i in misses], workers, [sizes[i] for i in misses])
    ]
    done: set = set()
    try:
        with contextlib.ExitStack() as stack:
            pools = [
                stack.enter_context(ProcessPoolExecutor(
                    max_workers=1, mp_context=_pool_context(), initializer=_init_worker, initargs=initargs
                ))
                for _ in lanes
            ]
            running: Dict[object, Tuple[int, List[int]]] = {}

            def feed(worker: int) -> None:
                lane = lanes[worker]
                if lane:
                    chunk = lane.popleft()
                else:  # steal the work furthest from where the busiest lane is
                    donor = max(lanes, key=lambda other: sum(sizes[i] for chunk in other for i in chunk))
                    if not donor:
                        return
                    chunk = donor.pop()
                running[pools[worker].submit(_lint_chunk, [paths[i] for i in chunk])] = (worker, chunk)

            for worker in range(len(lanes)):
                feed(worker)
            while running:
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    worker, chunk = running.pop(future)
                    for i, (_, findings) in zip(chunk, future.result()):
                        done.add(i)
                        yield i, findings
                    feed(worker)
    except BrokenProcessPool:
        # A worker died (a native crash, the OOM killer): find the file that
        # kills it by linting the rest one per fresh worker, and report it.
        left = [i for i in misses if i not in done]
        for path, findings in _lint_isolated([paths[i] for i in left], *initargs):
            yield left.pop(0), findings


def _lint_isolated(
    paths: Sequence[str], config: config_mod.Config, cache_dir: Optional[str], debug: bool, memory: Optional[int] = None
) -> Iterator[Tuple[str, List[Finding]]]:
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    from lintorch import engine, source

    pool = None
    try:
        for path in paths:
            if pool is None:
                pool = ProcessPoolExecutor(
                    max_workers=1, mp_context=_pool_context(), initializer=_init_worker,
                    initargs=(config, cache_dir, debug, memory),
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

"""The files of a project as one program.

A :class:`Project` gives every linted module's index a way to follow its
imports into the other modules of the same project (``from models import
Net``, ``from .net import Net``, ``import utils`` + ``utils.evaluate(...)``,
a package ``__init__`` re-exporting a name), and to find the modules that
import it (whose calls pass it its arguments). The analysis then follows
values across files exactly as it does within one: a ``Value`` of another
module carries that module's scope, and name resolution from a scope uses
the scope's own index.

Modules are parsed and indexed lazily, the first time a fact needs them,
and kept for the rest of the run (so a helper imported by twenty scripts is
parsed once), within a memory budget: beyond it, modules are dropped
between two linted files, never during one (those the files still to
lint need latest, see :meth:`Project.expect`, else the least recently
used). A module that cannot be read or parsed is simply not followed (the
importing file's own findings are unaffected), and import cycles are
harmless: nothing is parsed eagerly, and each analysis step is bounded.

While a file is linted the project records what it took facts from (each
module's content digest, and the importers found for a module), so the
findings cache can tell when those facts change.
"""

import bisect
import functools
import os
import sys
from collections import OrderedDict
from typing import Callable, Dict, FrozenSet, List, Optional, Sequence, Tuple

import libcst as cst

from lintorch import imports, source
from lintorch.index import ImportResolver, ModuleIndex

#: Memory a parsed module takes per character of source (its libcst tree
#: and index): the resident memory of a run keeping every module of the
#: bench corpus (9.06 million characters) grew by 266 MB.
BYTES_PER_CHAR = 31
#: Memory for the parsed modules kept between files, by default: about
#: 5 million characters of source, more than most training projects hold
#: in total (the bench corpus's 595 analysed modules are each parsed once);
#: a larger library re-parses some.
DEFAULT_MEMORY_MB = 150
DEFAULT_BUDGET_CHARS = DEFAULT_MEMORY_MB * 1024 * 1024 // BYTES_PER_CHAR
_MAX_REEXPORT_DEPTH = 8
_MISSING = object()
_NEVER = sys.maxsize

#: ``(data, path) -> (text, module, line label)`` for notebooks, or None.
NotebookLoader = Callable[[bytes, str], Optional[Tuple[str, cst.Module, Callable[[int], str]]]]


class _Entry:
    __slots__ = ("index", "module", "chars", "label", "positions")

    def __init__(self, index: ModuleIndex, module: imports.Module, chars: int, label=None):
        self.index = index
        self.module = module
        self.chars = chars
        self.label: Optional[Callable[[int], str]] = label
        self.positions = None


class Dependencies:
    """What one linted file took facts from."""

    def __init__(self) -> None:
        #: absolute path -> content digest of every other module read
        self.files: Dict[str, str] = {}
        #: absolute path of a module -> the files found importing it (None:
        #: too many, or the project too large to scan)
        self.importers: Dict[str, Optional[Tuple[str, ...]]] = {}

    def __bool__(self) -> bool:
        return bool(self.files or self.importers)

    def as_json(self) -> dict:
        return {
            "files": self.files,
            "importers": {path: list(found) if found is not None else None for path, found in self.importers.items()},
        }


class Project(ImportResolver):
    """Lazily parsed modules of the projects a run touches (one per process)."""

    def __init__(
        self,
        budget_chars: int = DEFAULT_BUDGET_CHARS,
        notebook_loader: Optional[NotebookLoader] = None,
        max_importers: int = imports.MAX_IMPORTERS,
    ):
        self.budget_chars = budget_chars
        self.notebook_loader = notebook_loader
        self.max_importers = max_importers
        self.paths = imports.Paths()
        self.graphs = imports.Graphs(self.paths)
        self._entries: "OrderedDict[str, _Entry]" = OrderedDict()
        self._by_index: Dict[int, _Entry] = {}
        self._unloadable: Dict[str, str] = {}  # path -> digest of what failed to load
        self._digests: Dict[str, str] = {}
        self._resolved: Dict[Tuple[str, str], object] = {}
        self._chars = 0
        self._current: Optional[str] = None
        self._deps = Dependencies()
        #: parses of files that had been parsed before in this process (evicted)
        self.reparsed = 0
        self.parsed = 0
        self._ever_parsed: Dict[str, None] = {}
        self._words: Dict[str, FrozenSet[bytes]] = {}
        self._words_by_content: Dict[str, FrozenSet[bytes]] = {}
        self._located: List[_Entry] = []  # entries whose positions were computed
        #: With :meth:`expect`: each file's position in the files to lint,
        #: and the positions of the files that may take facts from a module.
        self._plan: Dict[str, int] = {}
        self._uses: Optional[Dict[str, List[int]]] = None
        self._step = 0

    # -- the file being linted --------------------------------------------

    def expect(self, paths: Sequence[str]) -> None:
        """The files this process will lint, in order. Beyond the memory
        budget, the modules dropped are then those needed again latest (or
        never), as their import relations tell, not the least recently used:
        a module many files import stays parsed while a linted file nothing
        else reads goes."""
        self._plan = {}
        self._uses = None
        if len(paths) < 2:
            return  # nothing is dropped while one file is linted
        uses: Dict[str, List[int]] = {}
        for step, path in enumerate(paths):
            absolute = os.path.abspath(path)
            self._plan.setdefault(absolute, step)
            uses.setdefault(absolute, []).append(step)
            for other in self._likely_read(absolute):
                uses.setdefault(other, []).append(step)
        self._uses = uses
        self._step = 0

    def _likely_read(self, path: str) -> FrozenSet[str]:
        """The modules an analysis of ``path`` is likely to read: those it
        imports and those importing it. (Its transitive imports, or the
        modules re-exported by the packages it imports, forecast worse:
        more re-parses on the bench corpus, as they are mostly never read.)"""
        graphs = self.graphs
        return graphs.imports_of(path) | (graphs.importers(graphs.module(path), self.max_importers) or frozenset())

    def begin(self, path: str) -> None:
        """Start linting ``path``: drop what exceeds the budget, start recording."""
        self._current = os.path.abspath(path)
        self._step = self._plan.get(self._current, self._step)
        self._deps = Dependencies()
        for entry in self._located:  # positions are large: kept for one file's messages only
            entry.positions = None
        self._located = []
        self._evict()

    def end(self) -> Dependencies:
        deps, self._deps = self._deps, Dependencies()
        self._current = None
        return deps

    def adopt(self, path: str, text: str, module: cst.Module) -> ModuleIndex:
        """The index of the linted file (reused if this very tree was
        already indexed as another file's dependency), resolving its imports
        through this project."""
        absolute = os.path.abspath(path)
        entry = self._entries.get(absolute)
        if entry is not None and entry.index.module is module:
            entry.index.path = path
            self._entries.move_to_end(absolute)
            return entry.index
        index = ModuleIndex(module, path, text)
        self._store(absolute, index, len(text), None)
        return index

    def parsed_tree(self, path: str, text: str) -> Optional[cst.Module]:
        """The tree of ``path`` if it was already parsed from exactly ``text``
        (a dependency of an earlier file): linting it needs no second parse."""
        entry = self._entries.get(os.path.abspath(path))
        if entry is not None and entry.index.text == text:
            return entry.index.module
        return None

    # -- ImportResolver ---------------------------------------------------

    def resolve(self, index: ModuleIndex, qualname: str) -> Optional[Tuple[ModuleIndex, Optional[str]]]:
        entry = self._by_index.get(id(index))
        if entry is None or entry.index is not index:
            return None
        key = (entry.module.path, qualname)
        found = self._resolved.get(key, _MISSING)
        if found is _MISSING:
            found = self._resolved[key] = self._resolve(entry.module, qualname, 0)
        if found is None:
            return None
        path, name, chain = found  # type: ignore[misc]
        target = None
        for step in chain:
            target = self._entry(step)
            if target is None:
                return None
        assert target is not None and target.module.path == path
        return target.index, name

    def _resolve(self, importer: imports.Module, qualname: str, depth: int):
        """(path, name, chain of module paths read to get there) or None."""
        found = self.graphs.resolve(importer, qualname)
        if found is None or depth > _MAX_REEXPORT_DEPTH:
            return None
        path, rest = found
        target = self._entry(path)
        if target is None:
            return None
        if not rest:
            return path, None, (path,)
        name, more = rest[0], rest[1:]
        bindings = target.index.module_scope.bindings.get(name)
        inner = None
        if not bindings:
            for star in target.index.star_imports:
                inner = self._resolve(target.module, _join(star, [name, *more]), depth + 1)
                if inner is not None:
                    break
        elif bindings[-1].kind == "import":
            qualified = bindings[-1].qualname
            if qualified is not None:
                inner = self._resolve(target.module, _join(qualified, more), depth + 1)
        elif not more:
            return path, name, (path,)
        if inner is None:
            return None
        return inner[0], inner[1], (path,) + inner[2]

    def importers(self, index: ModuleIndex) -> List[ModuleIndex]:
        """The modules of the project that import ``index``'s module (through
        a package re-export too), parsed; empty when none, when the project
        is too large to scan, or when so many do that it is a library."""
        entry = self._by_index.get(id(index))
        if entry is None:
            return []
        found = self.graphs.importers(entry.module, self.max_importers)
        if entry.module.path != self._current:
            self._record(entry.module.path)
        self._deps.importers[entry.module.path] = tuple(sorted(found)) if found is not None else None
        out = []
        for path in sorted(found or ()):
            other = self._entry(path)
            if other is not None and other.index is not index:
                out.append(other.index)
        return out

    # -- the trigger-word prefilter --------------------------------------

    def could_trigger(self, path: str, data: bytes, rules: Sequence) -> List:
        """The rules whose trigger words occur in ``data`` (the file at
        ``path``) or in a file its analysis may take facts from
        (``imports.Graphs.related``): a helper in utils.py that calls
        ``backward()`` makes the missing ``zero_grad()`` of train.py's loop
        findable although train.py never says ``backward``. Each content
        is searched for the words once per run, linted or read for facts."""
        own = self._words_of(data)
        triggered = [rule for rule in rules if _spelled(rule, own, data)]
        if len(triggered) == len(rules):
            return triggered
        related = self.graphs.related(path)
        if not related:
            return triggered
        present = frozenset().union(*(self._words_in(other) for other in related))
        for other in related:
            self._record(other)  # a word added there may let a rule run here
        chosen = {id(rule) for rule in triggered}
        return [rule for rule in rules if id(rule) in chosen or any(word in present for word in rule.trigger_bytes())]

    def _words_in(self, path: str) -> FrozenSet[bytes]:
        """The rules' trigger words occurring in a file (read once per run)."""
        words = self._words.get(path)
        if words is None:
            data = imports.read_bytes(path)
            self._digests.setdefault(path, imports.digest(data))
            words = self._words[path] = self._words_of(data or b"")
        return words

    def _words_of(self, data: bytes) -> FrozenSet[bytes]:
        """The rules' trigger words occurring in ``data``, by content."""
        key = imports.digest(data)
        words = self._words_by_content.get(key)
        if words is None:
            words = self._words_by_content[key] = frozenset(w for w in _vocabulary() if w in data)
        return words

    # -- messages -----------------------------------------------------------

    def locate(self, node: cst.CSTNode) -> Optional[str]:
        """``14 of models/net.py`` for a node of another module this file took
        facts from (positions computed only when a message needs one)."""
        from libcst.metadata import MetadataWrapper, PositionProvider

        current = self._entries.get(self._current or "")
        for path in list(self._deps.files):
            entry = self._entries.get(path)
            if entry is None:
                continue
            if entry.positions is None:
                with source.deep_recursion():
                    entry.positions = MetadataWrapper(entry.index.module, unsafe_skip_copy=True).resolve(PositionProvider)
                self._located.append(entry)
            position = entry.positions.get(node)
            if position is not None:
                line = position.start.line
                shown = current.module.display(path) if current is not None else path
                return f"{entry.label(line) if entry.label else line} of {shown}"
        return None

    # -- modules ------------------------------------------------------------

    def _record(self, path: str) -> None:
        if path == self._current or path in self._deps.files:
            return
        known = self._digests.get(path)
        if known is None:  # a linted file, adopted from its text: digest its bytes
            known = self._digests[path] = imports.digest(imports.read_bytes(path))
        self._deps.files[path] = known

    def _entry(self, path: str) -> Optional[_Entry]:
        entry = self._entries.get(path)
        if entry is None and path not in self._unloadable:
            entry = self._load(path)
        if entry is not None:
            self._entries.move_to_end(path)
        self._record(path)
        return entry

    def _load(self, path: str) -> Optional[_Entry]:
        data = imports.read_bytes(path)
        self._digests[path] = imports.digest(data)
        if data is None:
            self._unloadable[path] = "-"
            return None
        loaded = self._parse(data, path)
        if loaded is None:
            self._unloadable[path] = self._digests[path]
            return None
        text, tree, label = loaded
        try:
            with source.deep_recursion():
                index = ModuleIndex(tree, path, text)
        except RecursionError:
            self._unloadable[path] = self._digests[path]
            return None
        if path in self._ever_parsed:
            self.reparsed += 1
        self._ever_parsed[path] = None
        self.parsed += 1
        return self._store(path, index, len(text), label)

    def _parse(self, data: bytes, path: str):
        if path.endswith(".ipynb"):
            return self.notebook_loader(data, path) if self.notebook_loader is not None else None
        decoded = source.decode(data)
        if isinstance(decoded, source.SourceError):
            return None
        tree = source.parse(decoded.text)
        if isinstance(tree, source.SourceError):
            return None
        return decoded.text, tree, None

    def _store(self, path: str, index: ModuleIndex, chars: int, label) -> _Entry:
        old = self._entries.pop(path, None)
        if old is not None:
            self._chars -= old.chars
            self._by_index.pop(id(old.index), None)
            old.index.release()
        entry = _Entry(index, self.graphs.module(path), chars, label)
        index.imports = self
        self._entries[path] = entry
        self._by_index[id(index)] = entry
        self._chars += chars
        return entry

    def _evict(self) -> None:
        """Drop modules until the budget holds: those needed latest by the
        files still to lint (:meth:`expect`), the least recently used first
        among equals. (Keeping the modules most files import, whatever the
        order, made a library package re-parse more: they crowd out the
        neighbours the next file needs.)"""
        while self._chars > self.budget_chars and self._entries:
            path = self._victim()
            entry = self._entries.pop(path)
            self._by_index.pop(id(entry.index), None)
            self._chars -= entry.chars
            entry.index.release()

    def _victim(self) -> str:
        if self._uses is None:
            return next(iter(self._entries))
        victim, latest = "", -1
        for path in self._entries:  # least recently used first
            use = self._next_use(path)
            if use > latest:
                victim, latest = path, use
                if use == _NEVER:
                    break
        return victim

    def _next_use(self, path: str) -> int:
        """The position of the next file to lint that may read ``path`` (the
        current file included), or _NEVER."""
        uses = (self._uses or {}).get(path)
        if not uses:
            return _NEVER
        at = bisect.bisect_left(uses, self._step)
        return uses[at] if at < len(uses) else _NEVER


def _spelled(rule, present: FrozenSet[bytes], data: bytes) -> bool:
    """Whether one of the rule's trigger words occurs (``present``: the
    words of the vocabulary that do; a rule outside the registry's
    vocabulary is searched for in ``data`` itself)."""
    vocabulary = _vocabulary()
    return any(word in present if word in vocabulary else word in data for word in rule.trigger_bytes())


@functools.lru_cache(maxsize=None)
def _vocabulary() -> FrozenSet[bytes]:
    """Every rule's trigger words."""
    from lintorch import registry

    return frozenset(word for cls in registry.all_rules() for word in cls.trigger_bytes())


def _join(qualname: str, rest: Sequence[str]) -> str:
    if not rest:
        return qualname
    return qualname + "." + ".".join(rest) if not qualname.endswith(".") else qualname + ".".join(rest)

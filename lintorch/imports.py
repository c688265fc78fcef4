"""Where a project's imports lead, from the file system alone.

Which directories a file's imports are searched in, which file an import
names, and which files of a project import a given module. Pure path and
byte work (no libcst): the findings cache validates cross-file entries with
it on warm runs, which must not pay for importing the parser.

Search roots of a file, in the order Python would try them for a script run
from its own directory: the file's directory, the directory above the
topmost package holding it (so ``pkg/sub/mod.py`` is ``pkg.sub.mod``), the
project root (the nearest directory with ``pyproject.toml``, ``setup.py``,
``setup.cfg`` or ``.git``) and its ``src/``. An import that names no file
under these roots (third-party, the standard library, a typo) is not a
project module and stays opaque.
"""

import bisect
import fnmatch
import hashlib
import json
import os
import re
import stat
from typing import Dict, FrozenSet, Iterator, List, Optional, Sequence, Set, Tuple, Union

#: Files and directories marking a project root.
PROJECT_MARKERS = ("pyproject.toml", "setup.py", "setup.cfg", ".git")
#: Directories never scanned for importers (as ``lintorch .`` never walks them).
SKIPPED_DIRS = (
    ".git", ".hg", ".svn", ".bzr", ".venv", "venv", ".env", "env", ".tox", ".nox",
    "build", "dist", "__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache",
    ".lintorch_cache", "node_modules", "site-packages", ".eggs", "*.egg-info", ".ipynb_checkpoints",
)
#: A project with more files than this is not scanned for importers: facts
#: that flow back from callers in other files are then not used (as before
#: cross-file analysis), rather than reading a whole monorepo for one file.
MAX_SCANNED_FILES = 5000
#: Top-level names never resolved to project files: lintorch's knowledge of
#: the torch API must win over a stray ``torch.py``.
NEVER_LOCAL = frozenset({"torch", "torchvision", "torchaudio", "torchtext", "__future__"})
SOURCE_SUFFIXES = (".py", ".ipynb")
#: More importers than this and a module is a library (timm's layers), not
#: part of one program: its callers elsewhere are not consulted.
MAX_IMPORTERS = 12
#: At most this many files are read for the facts of one file (its imports,
#: transitively, and its importers).
MAX_RELATED = 200

#: An import statement at the start of a line (matched only where a line
#: holds the word ``import``: far fewer places than line starts).
_IMPORT_RE = re.compile(
    rb"[ \t]*(?:from[ \t]+(?P<module>\.*[\w.]*)[ \t]+import[ \t]+(?P<names>\([^)]*\)|[^\n#;]*)"
    rb"|import[ \t]+(?P<plain>[^\n#;]+))"
)
#: ``sys.path.append("..")``, ``sys.path.insert(0, r"../src")``: a script
#: that makes a directory importable (relative to where it is run from,
#: which by convention is its own directory).
_SYS_PATH_RE = re.compile(rb"sys\.path\.(?:append|insert)\(\s*(?:\d+\s*,\s*)?[rR]?([\"'])([^\"'\n]+)\1\s*\)")


class Paths:
    """Memoised file-system questions (a run asks the same ones for every
    file of a directory)."""

    def __init__(self) -> None:
        self._isfile: Dict[str, bool] = {}
        self._isdir: Dict[str, bool] = {}
        self._project_root: Dict[str, Optional[str]] = {}
        self._import_root: Dict[str, str] = {}

    def isfile(self, path: str) -> bool:
        found = self._isfile.get(path)
        if found is None:
            found = self._isfile[path] = os.path.isfile(path)
        return found

    def isdir(self, path: str) -> bool:
        found = self._isdir.get(path)
        if found is None:
            found = self._isdir[path] = os.path.isdir(path)
        return found

    def project_root(self, directory: str) -> Optional[str]:
        """The nearest directory at or above ``directory`` with a project marker."""
        if directory in self._project_root:
            return self._project_root[directory]
        found = None
        if any(os.path.exists(os.path.join(directory, marker)) for marker in PROJECT_MARKERS):
            found = directory
        else:
            parent = os.path.dirname(directory)
            if parent and parent != directory:
                found = self.project_root(parent)
        self._project_root[directory] = found
        return found

    def import_root(self, directory: str) -> str:
        """The directory above the topmost package (a directory with an
        ``__init__.py``) holding ``directory``; ``directory`` itself when it is
        not a package."""
        found = self._import_root.get(directory)
        if found is None:
            found = directory
            while self.isfile(os.path.join(found, "__init__.py")):
                parent = os.path.dirname(found)
                if not parent or parent == found:
                    break
                found = parent
            self._import_root[directory] = found
        return found


class Module:
    """Where one file sits among the project's modules."""

    __slots__ = ("path", "name", "is_package", "roots", "project_root")

    def __init__(self, path: str, paths: Paths, added: Sequence[str] = ()):
        """``added``: directories the file adds to ``sys.path`` itself."""
        self.path = os.path.abspath(path)
        directory = os.path.dirname(self.path)
        base = os.path.basename(self.path)
        import_root = paths.import_root(directory)
        project_root = paths.project_root(directory)
        roots = [directory, import_root]
        if project_root is not None:
            roots += [project_root, os.path.join(project_root, "src")]
        roots += [os.path.normpath(os.path.join(directory, added_dir)) for added_dir in added]
        self.roots: Tuple[str, ...] = tuple(dict.fromkeys(r for r in roots if paths.isdir(r)))
        #: Where importers are looked for, and what messages show paths relative to.
        self.project_root: str = project_root or import_root
        self.is_package = base == "__init__.py"
        #: Dotted name from the import root (None for notebooks and files
        #: whose name is not an identifier: they cannot be imported).
        self.name: Optional[str] = None
        stem, suffix = os.path.splitext(base)
        if suffix == ".py" and stem.isidentifier():
            relative = os.path.relpath(directory, import_root)
            parts = [] if relative == "." else relative.split(os.sep)
            if not self.is_package:
                parts.append(stem)
            if parts and all(part.isidentifier() for part in parts):
                self.name = ".".join(parts)

    def display(self, path: str) -> str:
        """``path`` as messages show it: relative to this file's project root."""
        relative = os.path.relpath(path, self.project_root)
        return (relative if not relative.startswith("..") else path).replace(os.sep, "/")


def _module_file(directory: str, parts: Sequence[str], paths: Paths) -> Optional[str]:
    base = os.path.join(directory, *parts)
    if paths.isfile(base + ".py"):
        return base + ".py"
    init = os.path.join(base, "__init__.py")
    if paths.isfile(init):
        return init
    return None


def absolute_parts(importer: Module, qualname: str) -> Optional[List[str]]:
    """The absolute dotted parts an import of ``importer`` names
    (``.net.Net`` in ``models/__init__.py`` -> ``models.net.Net``)."""
    stripped = qualname.lstrip(".")
    level = len(qualname) - len(stripped)
    parts = stripped.split(".") if stripped else []
    if level == 0:
        return parts
    if importer.name is None:
        return None  # a relative import outside a package
    package = importer.name.split(".")
    if not importer.is_package:
        package = package[:-1]
    if level - 1 >= len(package):
        return None  # beyond the top-level package
    base = package[: len(package) - (level - 1)]
    return base + parts


def resolve(importer: Module, qualname: str, paths: Paths) -> Optional[Tuple[str, List[str]]]:
    """The project file an import names and the attribute parts after it:
    ``models.Net`` -> (``.../models/__init__.py``, ["Net"]),
    ``utils.evaluate`` -> (``.../utils.py``, ["evaluate"]). None when no
    search root holds the top-level name (not a project module)."""
    parts = absolute_parts(importer, qualname)
    if not parts or parts[0] in NEVER_LOCAL or not all(p.isidentifier() for p in parts):
        return None
    relative = qualname.startswith(".")
    roots = importer.roots if not relative else (_package_root(importer, paths),)
    for root in roots:
        if root is None:
            continue
        # The first root that holds the top-level name wins, as on sys.path.
        if _module_file(root, parts[:1], paths) is None and not paths.isdir(os.path.join(root, parts[0])):
            continue
        for end in range(len(parts), 0, -1):
            found = _module_file(root, parts[:end], paths)
            if found is not None:
                return found, parts[end:]
        return None
    return None


def _package_root(importer: Module, paths: Paths) -> Optional[str]:
    """The import root of ``importer``'s package (where its absolute dotted name starts)."""
    return paths.import_root(os.path.dirname(importer.path)) if importer.name is not None else None


# -- importers ------------------------------------------------------------


def imported_names(data: bytes) -> Iterator[str]:
    """Dotted names a file may import, from its raw bytes (a notebook's
    cells included): ``import a.b`` -> ``a.b``; ``from x import y, z`` ->
    ``x``, ``x.y``, ``x.z``. A superset is fine: each is resolved against
    the file system before it counts."""
    position = data.find(b"import")
    last_start = -1
    while position != -1:
        start = data.rfind(b"\n", 0, position) + 1
        match = _IMPORT_RE.match(data, start) if start != last_start else None
        position = data.find(b"import", position + 6)
        if match is None:
            continue
        last_start = start
        plain = match.group("plain")
        if plain is not None:
            for item in plain.decode("utf-8", "replace").split(","):
                words = item.replace("\\", " ").split()  # ``a.b as c`` -> ``a.b``
                if words:
                    yield words[0]
            continue
        module = match.group("module").decode("utf-8", "replace")
        names = match.group("names").decode("utf-8", "replace").strip("()\\ \t")
        if module.strip("."):
            yield module
        for item in names.replace("\n", ",").split(","):
            words = item.replace("\\", " ").split()
            name = words[0] if words else ""
            if name and name != "*" and name.isidentifier():
                yield module + name if module.endswith(".") else f"{module}.{name}"


def _notebook_code(data: bytes) -> bytes:
    try:
        document = json.loads(data)
        cells = document.get("cells", []) if isinstance(document, dict) else []
        parts = []
        for cell in cells:
            if isinstance(cell, dict) and cell.get("cell_type") == "code":
                source = cell.get("source", "")
                parts.append("".join(source) if isinstance(source, list) else str(source))
        return "\n".join(parts).encode("utf-8", "replace")
    except (ValueError, TypeError, AttributeError, RecursionError):
        return b""


def read_bytes(path: str, limit: int = 8 * 1024 * 1024) -> Optional[bytes]:
    """A regular file's bytes; None for anything else (a FIFO is never
    waited on), for an unreadable file, or for one over ``limit``."""
    data = read_regular_file(path, limit)
    return data if isinstance(data, bytes) else None


def read_regular_file(path: str, limit: Optional[int] = None) -> Union[bytes, str]:
    """A regular file's bytes, or why they cannot be read. Opened
    non-blocking and checked with fstat, so a FIFO or device that happens
    to be named ``*.py`` is reported instead of hanging the run."""
    fd = -1
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
        info = os.fstat(fd)
        if stat.S_ISREG(info.st_mode):
            if limit is not None and info.st_size > limit:
                return f"file larger than {limit} bytes"
            with os.fdopen(fd, "rb") as handle:
                fd = -1
                return handle.read()
        if stat.S_ISDIR(info.st_mode):  # named explicitly, or yielded by a walk that could not list it
            with os.scandir(path):
                return "is a directory"
        return "not a regular file (a FIFO, socket or device)"
    except IsADirectoryError:
        return "is a directory"
    except OSError as exc:
        what = "directory" if os.path.isdir(path) else "file"
        return f"cannot read {what}: {exc.strerror or exc}"
    except MemoryError:
        return "file too large to read into memory"
    finally:
        if fd >= 0:
            os.close(fd)


def digest(data: Optional[bytes]) -> str:
    """What the findings cache records for a file's content ("-": unreadable or absent)."""
    return hashlib.blake2b(data, digest_size=16).hexdigest() if data is not None else "-"


class ImportGraph:
    """Which files of one project import a given module, from the import
    lines of every ``.py``/``.ipynb`` file (no parsing). The files are read
    once, the first time a module's importers are asked for; only the
    import lines that can name the module (they spell its name) are
    resolved."""

    def __init__(self, root: str, graphs: "Graphs"):
        self.root = root
        self.graphs = graphs
        #: file -> the dotted names it may import; None when the project is
        #: too large to scan.
        self._names: Optional[Dict[str, FrozenSet[str]]] = None
        #: Every file's names, one per line, file after file (``_starts``:
        #: where each file's lines begin): one substring search finds the
        #: files whose import lines spell a module's name.
        self._text = ""
        self._starts: List[int] = []
        self._owners: List[str] = []
        self._scanned = False
        self._direct: Dict[str, FrozenSet[str]] = {}

    def _files(self) -> Optional[List[str]]:
        out: List[str] = []
        for directory, dirs, files in os.walk(self.root):
            dirs[:] = sorted(d for d in dirs if not any(fnmatch.fnmatch(d, p) for p in SKIPPED_DIRS))
            for name in sorted(files):
                if name.endswith(SOURCE_SUFFIXES):
                    out.append(os.path.join(directory, name))
                    if len(out) > MAX_SCANNED_FILES:
                        return None
        return out

    def _scan(self) -> None:
        self._scanned = True
        files = self._files()
        if files is None:
            return
        self._names = {path: self.graphs.names_of(path) for path in files}
        chunks = []
        offset = 0
        for path, names in self._names.items():
            if names:
                chunk = "".join(name + "\n" for name in sorted(names))
                self._starts.append(offset)
                self._owners.append(path)
                chunks.append(chunk)
                offset += len(chunk)
        self._text = "".join(chunks)

    def _spelling(self, word: str) -> List[str]:
        """The files with an imported name containing ``word`` (no newline)."""
        out = []
        text, starts = self._text, self._starts
        at = text.find(word)
        while at >= 0:
            owner = bisect.bisect_right(starts, at) - 1
            out.append(self._owners[owner])
            if owner + 1 >= len(starts):
                break
            at = text.find(word, starts[owner + 1])
        return out

    def _direct_importers(self, path: str) -> FrozenSet[str]:
        found = self._direct.get(path)
        if found is None:
            assert self._names is not None
            base = os.path.basename(path)
            word = os.path.basename(os.path.dirname(path)) if base == "__init__.py" else os.path.splitext(base)[0]
            out = set()
            for importer in self._spelling(word) if "\n" not in word else ():
                if importer == path:
                    continue
                module = self.graphs.module(importer)
                if any((self.graphs.resolve(module, name) or ("",))[0] == path for name in self._names[importer] if word in name):
                    out.add(importer)
            found = self._direct[path] = frozenset(out)
        return found

    def importers(self, path: str, limit: int) -> Optional[FrozenSet[str]]:
        """Files importing the module at ``path``, directly or through a
        package ``__init__`` that imports it (a re-export); None when the
        project is too large to scan or more than ``limit`` files import it
        (a library module: its callers are too many to be one program)."""
        if not self._scanned:
            self._scan()
        if self._names is None:
            return None
        path = os.path.abspath(path)
        found: Set[str] = set()
        todo = [path]
        seen: Set[str] = set()
        while todo:
            current = todo.pop()
            if current in seen:
                continue
            seen.add(current)
            for importer in self._direct_importers(current):
                if importer == path:
                    continue
                found.add(importer)
                if os.path.basename(importer) == "__init__.py":
                    todo.append(importer)
            if len(found) > limit:
                return None
        return frozenset(found)


class Graphs:
    """The import relations of the projects a run touches: each file's
    project imports (read once), and one :class:`ImportGraph` per project
    root for the reverse direction, built on demand."""

    def __init__(self, paths: Optional[Paths] = None):
        self.paths = paths or Paths()
        self._graphs: Dict[str, ImportGraph] = {}
        self._imports: Dict[str, FrozenSet[str]] = {}
        self._sorted_imports: Dict[str, Tuple[str, ...]] = {}
        self._related: Dict[Tuple[str, int], Tuple[str, ...]] = {}
        self._modules: Dict[str, Module] = {}
        self._facts: Dict[str, Tuple[FrozenSet[str], Tuple[str, ...]]] = {}
        self._resolved: Dict[tuple, Optional[Tuple[str, List[str]]]] = {}

    def names_of(self, path: str) -> FrozenSet[str]:
        """The dotted names a file may import (see :func:`imported_names`)."""
        return self._read(path)[0]

    def _read(self, path: str) -> Tuple[FrozenSet[str], Tuple[str, ...]]:
        """(the dotted names a file may import, the directories it adds to sys.path)."""
        found = self._facts.get(path)
        if found is None:
            data = read_bytes(path) or b""
            if path.endswith(".ipynb"):
                data = _notebook_code(data)
            added = tuple(m.group(2).decode("utf-8", "replace") for m in _SYS_PATH_RE.finditer(data)) if b"sys.path" in data else ()
            found = self._facts[path] = (frozenset(imported_names(data)), added)
        return found

    def module(self, path: str) -> Module:
        path = os.path.abspath(path)
        found = self._modules.get(path)
        if found is None:
            found = self._modules[path] = Module(path, self.paths, self._read(path)[1])
        return found

    def resolve(self, importer: Module, qualname: str) -> Optional[Tuple[str, List[str]]]:
        """:func:`resolve`, memoised (files of one directory share their roots)."""
        key = (importer.roots, importer.name if qualname.startswith(".") else None, importer.is_package, qualname)
        if key not in self._resolved:
            self._resolved[key] = resolve(importer, qualname, self.paths)
        found = self._resolved[key]
        # ``import utils`` inside utils.py (a third-party ``utils`` shadowed by
        # the file's own name when it runs): not followed
        return None if found is None or found[0] == importer.path else found

    def imports_of(self, path: str) -> FrozenSet[str]:
        """The project files ``path`` imports directly (from its import lines)."""
        path = os.path.abspath(path)
        found = self._imports.get(path)
        if found is None:
            names = self._read(path)[0]
            module = self.module(path) if names else None
            out = set()
            for name in names:
                resolved = self.resolve(module, name)
                if resolved is not None:
                    out.add(resolved[0])
            found = self._imports[path] = frozenset(out)
        return found

    def _imports_descending(self, path: str) -> Tuple[str, ...]:
        """:meth:`imports_of`, sorted in reverse (the walk pops the first)."""
        found = self._sorted_imports.get(path)
        if found is None:
            found = self._sorted_imports[path] = tuple(sorted(self.imports_of(path), reverse=True))
        return found

    def importers(self, module: Module, limit: int) -> Optional[FrozenSet[str]]:
        if module.name is None:
            return frozenset()  # a notebook or a script that cannot be imported
        graph = self._graphs.get(module.project_root)
        if graph is None:
            graph = self._graphs[module.project_root] = ImportGraph(module.project_root, self)
        return graph.importers(module.path, limit)

    def related(self, path: str, limit: int = MAX_RELATED) -> Tuple[str, ...]:
        """The files whose facts an analysis of ``path`` may use: the project
        modules it imports, transitively, and the files importing it (when
        they are few), at most ``limit`` of them."""
        path = os.path.abspath(path)
        known = self._related.get((path, limit))
        if known is not None:
            return known
        out: Dict[str, None] = {}
        todo = list(self._imports_descending(path))
        while todo and len(out) < limit:
            current = todo.pop()
            if current in out or current == path:
                continue
            out[current] = None
            todo.extend(other for other in self._imports_descending(current) if other not in out)
        for importer in sorted(self.importers(self.module(path), MAX_IMPORTERS) or ()):
            if len(out) >= limit:
                break
            out.setdefault(importer, None)
        found = self._related[(path, limit)] = tuple(out)
        return found


class DependencyCheck:
    """Whether the facts a cached file took from other files still hold:
    every module it read has the same content, and every module whose
    importers it consulted has the same importers. Reads and digests each
    file once per run."""

    def __init__(self) -> None:
        self.graphs = Graphs()
        self._digests: Dict[str, str] = {}

    def digest_of(self, path: str) -> str:
        found = self._digests.get(path)
        if found is None:
            found = self._digests[path] = digest(read_bytes(path))
        return found

    def __call__(self, deps: dict) -> bool:
        try:
            for path, recorded in deps.get("files", {}).items():
                if self.digest_of(path) != recorded:
                    return False
            for path, recorded in deps.get("importers", {}).items():
                now = self.graphs.importers(self.graphs.module(path), MAX_IMPORTERS)
                if (sorted(now) if now is not None else None) != recorded:
                    return False
        except (AttributeError, TypeError, ValueError, OSError):
            return False  # a damaged entry is a miss
        return True

"""Content-hash cache of findings.

The key is a hash of the file's bytes and location, lintorch's version and
the enabled codes, so an edit, an upgrade or a config change all miss. A
file whose findings took facts from other files of its project (the model
class it imports, the scripts calling its helpers) also stores those files'
content digests and the importers it found: the entry is a miss as soon as
one of them changes (``imports.DependencyCheck``). Entries are written
atomically (temp file + rename), so concurrent runs never see half a file,
and an unreadable or corrupt entry is simply a miss.
"""

import functools
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Callable, FrozenSet, List, Optional

from lintorch import __version__
from lintorch.rule import Finding, Fix, Severity

CACHE_DIR_NAME = ".lintorch_cache"
#: The shape of an entry's rows; a new shape starts a new directory, so no
#: run ever reads rows written in another shape.
ROW_FORMAT = 2  # 2: the explanation follows the message
_TAG = "Signature: 8a477f597d28d172789f06886806bc55\n# lintorch cache; see https://bford.info/cachedir/\n"


@functools.lru_cache(maxsize=1)
def _code_fingerprint() -> bytes:
    """lintorch's version plus the size and mtime of its own modules and
    rules, so editing a rule (an editable install, a rule in development)
    invalidates the cache as an upgrade does. A few dozen stat calls, once."""
    import lintorch
    import lintorch.rules

    digest = hashlib.blake2b(__version__.encode(), digest_size=16)
    for package in (lintorch, lintorch.rules):
        for directory in package.__path__:
            try:
                entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
            except OSError:
                continue
            for entry in entries:
                if entry.name.endswith(".py"):
                    try:
                        stat = entry.stat()
                    except OSError:
                        continue
                    digest.update(f"{entry.name}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    return digest.hexdigest().encode()


class FindingsCache:
    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.entries = self.directory / f"v{__version__}-{ROW_FORMAT}"
        self._prepared = False

    def _prepare(self) -> bool:
        if self._prepared:
            return True
        try:
            self.entries.mkdir(parents=True, exist_ok=True)
            tag = self.directory / "CACHEDIR.TAG"
            if not tag.exists():
                tag.write_text(_TAG)
                (self.directory / ".gitignore").write_text("*\n")
        except OSError:
            return False  # read-only checkout: run without a cache
        self._prepared = True
        return True

    @staticmethod
    def key(
        data: bytes, codes: FrozenSet[str], kind: str = "", info: FrozenSet[str] = frozenset(), path: str = ""
    ) -> str:
        """``kind`` separates inputs read differently from the same bytes
        (``ipynb``: a notebook); ``info``: codes reporting info findings;
        ``path``: where the file is (its imports resolve from there)."""
        digest = hashlib.blake2b(data, digest_size=20)
        digest.update(b"\0" + _code_fingerprint() + b"\0" + ",".join(sorted(codes)).encode())
        if path:
            digest.update(b"\0path:" + os.path.abspath(path).encode("utf-8", "surrogateescape"))
        if info:
            digest.update(b"\0info:" + ",".join(sorted(info)).encode())
        if kind:
            digest.update(b"\0" + kind.encode())
        return digest.hexdigest()

    def _path(self, key: str) -> Path:
        return self.entries / key[:2] / key

    def get(self, key: str, path: str, still_valid: Optional[Callable[[dict], bool]] = None) -> Optional[List[Finding]]:
        """The cached findings, or None; an entry that depends on other
        files is a hit only if ``still_valid(dependencies)`` says so."""
        try:
            with open(self._path(key), "rb") as handle:
                rows = json.loads(handle.read())
            if isinstance(rows, dict):
                dependencies = rows.get("dependencies")
                if still_valid is None or not isinstance(dependencies, dict) or not still_valid(dependencies):
                    return None
                rows = rows.get("findings")
            if not isinstance(rows, list):
                return None
            findings = [
                Finding(path, *r[:6], Severity(r[6]), r[7], *_extra(r), explanation=r[8]) for r in rows
            ]
            # Valid JSON of the wrong shape (a damaged or foreign entry) is a miss too.
            for f in findings:
                if not all(type(v) is int for v in (f.line, f.column, f.end_line, f.end_column)):
                    return None
                if not all(isinstance(v, str) for v in (f.code, f.name, f.message, f.explanation)):
                    return None
            return findings
        except (OSError, ValueError, TypeError, IndexError, KeyError):
            return None

    def put(self, key: str, findings: List[Finding], dependencies: Optional[dict] = None) -> None:
        if not self._prepare():
            return
        rows: object = [
            [f.line, f.column, f.end_line, f.end_column, f.code, f.name, f.severity.value, f.message, f.explanation]
            + _extra_row(f)
            for f in findings
        ]
        if dependencies:
            rows = {"dependencies": dependencies, "findings": rows}
        target = self._path(key)
        try:
            target.parent.mkdir(exist_ok=True)
            fd, temp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
            with os.fdopen(fd, "w") as handle:
                json.dump(rows, handle)
            os.replace(temp, target)
        except OSError:
            try:
                os.unlink(temp)
            except (OSError, UnboundLocalError):
                pass


# Optional trailing columns of a row: the notebook cell, and whether a fix is
# offered ([safe, description]) so a cached finding still counts as fixable
# (the fix itself is recomputed by --fix, which does not use the cache).


def _extra_row(finding: Finding) -> list:
    fix = [finding.fix.safe, finding.fix.description] if finding.fix is not None else None
    if finding.cell is None and fix is None:
        return []
    return [finding.cell, fix]


def _extra(row: list) -> tuple:
    if len(row) <= 9:
        return ()
    cell, fix = row[9], row[10]
    return (cell, Fix(None, None, bool(fix[0]), str(fix[1])) if fix else None)

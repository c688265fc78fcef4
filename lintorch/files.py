"""Which files a run covers: explicit files, and ``*.py``, ``*.pyi`` and
``*.ipynb`` (Jupyter notebooks) under directories."""

import fnmatch
import os
from dataclasses import dataclass, field
from typing import Iterator, List, Sequence, Tuple

from lintorch.config import DEFAULT_EXCLUDES, Config

SOURCE_SUFFIXES = (".py", ".pyi", ".ipynb")


@dataclass
class Discovery:
    files: List[str] = field(default_factory=list)
    #: (path, reason) for paths given on the command line that do not exist.
    missing: List[Tuple[str, str]] = field(default_factory=list)


def _default_excluded(name: str) -> bool:
    return any(fnmatch.fnmatch(name, pattern) for pattern in DEFAULT_EXCLUDES)


def _walk(directory: str, config: Config) -> Iterator[str]:
    # os.walk does not follow symlinked directories, so a symlink loop
    # cannot make the walk run forever. A directory that cannot be listed
    # (permissions) is yielded itself, so that reading it reports LT000
    # instead of its files being skipped unseen; unreadable files, FIFOs and
    # broken symlinks surface as LT000 when opened.
    unlisted: List[str] = []
    for root, dirs, files in os.walk(directory, onerror=lambda error: unlisted.append(error.filename or directory)):
        while unlisted:
            yield unlisted.pop()
        dirs[:] = sorted(
            d for d in dirs if not _default_excluded(d) and not config.is_excluded(os.path.join(root, d))
        )
        for name in sorted(files):
            if name.endswith(SOURCE_SUFFIXES):
                path = os.path.join(root, name)
                if not config.is_excluded(path):
                    yield path
    while unlisted:
        yield unlisted.pop()


def discover(paths: Sequence[str], config: Config) -> Discovery:
    """Files to lint, in a stable order, without duplicates.

    Explicitly named files are linted whatever their suffix and whatever
    ``exclude`` says (as ruff does), unless ``force-exclude`` is set, which
    the pre-commit hook turns on so that excluded files stay excluded when
    pre-commit names them.
    """
    found = Discovery()
    seen = set()

    def add(path: str) -> None:
        key = os.path.normcase(os.path.abspath(path))
        if key not in seen:
            seen.add(key)
            found.files.append(path)

    for path in paths:
        if os.path.isdir(path):
            for file in _walk(path, config):
                add(file)
        elif os.path.lexists(path):
            if not (config.force_exclude and config.is_excluded(path)):
                add(path)
        else:
            found.missing.append((path, "no such file or directory"))
    return found

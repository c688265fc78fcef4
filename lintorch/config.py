"""``[tool.lintorch]`` in pyproject.toml, merged with command-line options.

Unknown keys, unknown codes and wrong types are errors (exit 2), never
silently ignored: a typo in ``ignore`` must not turn a rule back on unseen.
"""

import fnmatch
import functools
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, FrozenSet, List, Optional, Sequence, Tuple

from lintorch import registry

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.9/3.10 only
    import tomli as tomllib

#: Directories never walked into (explicitly named files are still linted).
DEFAULT_EXCLUDES = (
    ".git", ".hg", ".svn", ".bzr", ".venv", "venv", ".env", "env", ".tox", ".nox",
    "build", "dist", "__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache",
    ".lintorch_cache", "node_modules", "site-packages", ".eggs", "*.egg-info", ".ipynb_checkpoints",
)

_LIST_KEYS = ("select", "ignore", "extend-select", "extend-ignore", "exclude", "extend-exclude")
KNOWN_KEYS = frozenset(_LIST_KEYS + ("per-file-ignores", "force-exclude"))


class ConfigError(Exception):
    """A configuration problem; the message names the file (and line)."""


@dataclass
class Config:
    #: None: the default set (every rule, info findings hidden).
    select: Optional[List[str]] = None
    ignore: List[str] = field(default_factory=list)
    extend_select: List[str] = field(default_factory=list)
    exclude: List[str] = field(default_factory=list)
    #: ``--exclude``/``--extend-exclude`` patterns, relative to the working directory.
    command_line_exclude: List[str] = field(default_factory=list)
    per_file_ignores: Dict[str, List[str]] = field(default_factory=dict)
    #: Apply ``exclude`` to explicitly named files too (for pre-commit).
    force_exclude: bool = False
    #: Directory that relative patterns are anchored to.
    root: Path = field(default_factory=Path.cwd)
    source: Optional[Path] = None

    def enabled_codes(self) -> FrozenSet[str]:
        return registry.resolve_enabled(self.select if self.select is not None else ["ALL"], self.ignore, self.extend_select)

    def info_codes(self) -> FrozenSet[str]:
        """Codes whose info findings are shown: those the user selected
        explicitly (``select``/``extend-select``), as ruff enables rules
        outside its default set."""
        return registry.resolve_enabled(self.select or [], self.ignore, self.extend_select)

    def per_file_ignored(self, path: str) -> FrozenSet[str]:
        """Code prefixes ignored for ``path`` by ``per-file-ignores``."""
        if not self.per_file_ignores:
            return frozenset()
        relative = _relative(path, self.root)
        out = set()
        for pattern, selectors in self.per_file_ignores.items():
            if _matches(relative, pattern):
                out.update(registry.normalize_selector(s) for s in selectors)
        return frozenset(out)

    def is_excluded(self, path: str) -> bool:
        if self.exclude:
            relative = _relative(path, self.root)
            if any(_matches(relative, pattern) for pattern in self.exclude):
                return True
        if self.command_line_exclude:
            relative = _relative(path, Path(os.getcwd()))
            return any(_matches(relative, pattern) for pattern in self.command_line_exclude)
        return False


def _resolved(root: Path) -> str:
    # a relative root depends on the working directory: never cached
    return _resolved_absolute(root) if root.is_absolute() else str(root.resolve())


@functools.lru_cache(maxsize=8)
def _resolved_absolute(root: Path) -> str:
    return str(root.resolve())


def _relative(path: str, root: Path) -> str:
    """``path`` relative to ``root``, with ``/`` separators (called for every
    file and directory a run walks: string work, not pathlib)."""
    absolute = os.path.abspath(path)
    base = _resolved(root)
    prefix = base if base.endswith(os.sep) else base + os.sep
    if absolute.startswith(prefix):
        return absolute[len(prefix) :].replace(os.sep, "/")
    try:
        return Path(absolute).relative_to(base).as_posix()
    except ValueError:
        return Path(path).as_posix()


def _matches(relative: str, pattern: str) -> bool:
    """Glob match on the relative path, on any trailing part of it, or on a
    leading directory (``fixtures`` excludes ``fixtures/a/b.py``)."""
    pattern = pattern.rstrip("/")
    if fnmatch.fnmatch(relative, pattern):
        return True
    parts = relative.split("/")
    for i in range(len(parts)):
        if fnmatch.fnmatch("/".join(parts[i:]), pattern):
            return True
        if fnmatch.fnmatch("/".join(parts[: i + 1]), pattern):
            return True
    return False


def find_pyproject(start_paths: Sequence[str]) -> Optional[Path]:
    """The nearest pyproject.toml with a ``[tool.lintorch]`` table, walking up
    from the common parent of the paths (or the working directory).

    The TOML is parsed: ``[tool."lintorch"]``, ``[ tool.lintorch ]`` and
    ``[tool]`` + ``lintorch = {...}`` all count. Only a file in which the key
    ``tool`` cannot be spelt at all (no ``tool``, no escape such as
    ``"\\u0074ool"``) is passed over on its bytes. A file that is not valid
    TOML is chosen when it might hold the table (it names ``lintorch`` or has
    escapes), so that :func:`load` reports it instead of ignoring it."""
    absolute = [os.path.abspath(p) for p in start_paths if p != "-"] or [os.getcwd()]
    try:
        common = Path(os.path.commonpath(absolute))
    except ValueError:  # paths on different drives
        common = Path(os.getcwd())
    if common.is_file() or not common.exists():
        common = common.parent
    for directory in (common, *common.parents):
        candidate = directory / "pyproject.toml"
        if candidate.is_file():
            try:
                data = candidate.read_bytes()
            except OSError:
                continue
            escaped = b"\\u" in data or b"\\U" in data
            if b"tool" not in data and not escaped:
                continue
            try:
                document = _parse(candidate, data)
            except ConfigError:
                if b"lintorch" in data or escaped:
                    return candidate
                continue
            tool = document.get("tool")
            if isinstance(tool, dict) and "lintorch" in tool:
                return candidate
    return None


def _parse(path: Path, raw: bytes) -> dict:
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not valid UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None


def load(path: Optional[Path]) -> Config:
    if path is None:
        return Config()
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    document = _parse(path, raw)
    tool = document.get("tool", {})
    table = tool.get("lintorch") if isinstance(tool, dict) else None
    if table is None:
        return Config(root=path.parent, source=path)
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [tool.lintorch] must be a table")
    return from_table(table, path)


def from_table(table: dict, path: Path) -> Config:
    unknown = sorted(set(table) - KNOWN_KEYS)
    if unknown:
        raise ConfigError(
            f"{path}: unknown key(s) in [tool.lintorch]: {', '.join(unknown)} "
            f"(known: {', '.join(sorted(KNOWN_KEYS))})"
        )
    values: Dict[str, List[str]] = {}
    for key in _LIST_KEYS:
        if key in table:
            values[key] = _string_list(table[key], key, path)
    per_file: Dict[str, List[str]] = {}
    if "per-file-ignores" in table:
        raw = table["per-file-ignores"]
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: per-file-ignores must be a table of glob = [codes]")
        for pattern, codes in raw.items():
            per_file[pattern] = _string_list(codes, f"per-file-ignores.{pattern!r}", path)
    force_exclude = table.get("force-exclude", False)
    if not isinstance(force_exclude, bool):
        raise ConfigError(f"{path}: force-exclude must be true or false")
    config = Config(
        force_exclude=force_exclude,
        select=values.get("select"),
        ignore=values.get("ignore", []) + values.get("extend-ignore", []),
        extend_select=values.get("extend-select", []),
        exclude=values.get("exclude", []) + values.get("extend-exclude", []),
        per_file_ignores=per_file,
        root=path.parent,
        source=path,
    )
    validate_selectors(config, str(path))
    return config


def _string_list(value, key: str, path: Path) -> List[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{path}: {key} must be a list of strings")
    return list(value)


def validate_selectors(config: Config, where: str) -> None:
    groups: List[Tuple[str, Sequence[str]]] = [
        ("select", config.select or []),
        ("ignore", config.ignore),
        ("extend-select", config.extend_select),
    ]
    groups += [(f"per-file-ignores[{k!r}]", v) for k, v in config.per_file_ignores.items()]
    for key, selectors in groups:
        for selector in selectors:
            try:
                registry.normalize_selector(selector)
            except registry.UnknownSelector:
                raise ConfigError(
                    f"{where}: unknown rule code or name {selector!r} in {key} "
                    "(see `lintorch rule --all`)"
                ) from None

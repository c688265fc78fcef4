"""Discovery of rule classes in ``lintorch.rules`` and selector resolution.

Adding a rule means adding one module to ``rules/``: every ``Rule`` subclass
defined there is picked up here, and its code, name and metadata are checked.
"""

import importlib
import pkgutil
import re
from functools import lru_cache
from typing import Dict, Iterable, List, Sequence, Tuple

from lintorch.codes import RULE_CODES
from lintorch.rule import Rule, Severity

CODE_RE = re.compile(r"^[A-Z]{1,3}[0-9]{0,3}$")
NAME_RE = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")

# LT000 is reported by the engine itself, not by a rule module; it still needs
# metadata for docs, SARIF and selection.
UNPARSABLE_CODE = "LT000"
UNPARSABLE_NAME = "unparsable-file"
INTERNAL_ERROR_CODE = "LT001"
INTERNAL_ERROR_NAME = "internal-error"


class RegistryError(Exception):
    pass


class UnknownSelector(ValueError):
    pass


@lru_cache(maxsize=1)
def all_rules() -> Tuple[type, ...]:
    """Every rule class, sorted by code. Imported once per process."""
    import lintorch.rules as package

    found: Dict[str, type] = {}
    names: Dict[str, str] = {}
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        for obj in vars(module).values():
            if not (isinstance(obj, type) and issubclass(obj, Rule) and obj is not Rule):
                continue
            if obj.__module__ != module.__name__ or not hasattr(obj, "code"):
                continue  # imported helper base, or an abstract family base
            _validate(obj)
            if obj.code in found and found[obj.code] is not obj:
                raise RegistryError(f"duplicate rule code {obj.code}")
            if obj.name in names and names[obj.name] != obj.code:
                raise RegistryError(f"duplicate rule name {obj.name}")
            found[obj.code] = obj
            names[obj.name] = obj.code
    listed = {code: cls.name for code, cls in found.items()}
    if listed != RULE_CODES:
        raise RegistryError(
            "lintorch/codes.py does not list the rules' codes and names "
            f"(rules: {sorted(listed.items())}; codes.py: {sorted(RULE_CODES.items())}): update it"
        )
    return tuple(found[code] for code in sorted(found))


def _validate(cls: type) -> None:
    for attr in ("code", "name", "severity", "summary", "symptom", "triggers"):
        if not hasattr(cls, attr):
            raise RegistryError(f"rule {cls.__name__} lacks {attr}")
    if not CODE_RE.match(cls.code) or cls.code in (UNPARSABLE_CODE, INTERNAL_ERROR_CODE):
        raise RegistryError(f"bad rule code {cls.code!r}")
    if not NAME_RE.match(cls.name):
        raise RegistryError(f"bad rule name {cls.name!r}")
    if not isinstance(cls.severity, Severity):
        raise RegistryError(f"{cls.code}: severity must be a Severity")
    if not (cls.__doc__ or "").strip():
        raise RegistryError(f"{cls.code}: the docstring is the rule's explanation")


def known_codes() -> Dict[str, str]:
    """code -> name for every code, engine codes included (from
    ``lintorch.codes``: the rules themselves are not imported)."""
    codes = {UNPARSABLE_CODE: UNPARSABLE_NAME, INTERNAL_ERROR_CODE: INTERNAL_ERROR_NAME}
    codes.update(RULE_CODES)
    return codes


def rule_by_selector(selector: str) -> type:
    for cls in all_rules():
        if selector.upper() == cls.code or selector.lower() == cls.name:
            return cls
    raise UnknownSelector(selector)


def normalize_selector(selector: str) -> str:
    """Map a code, code prefix, rule name or ``ALL`` to a code prefix.

    Raises :class:`UnknownSelector` for anything that matches no code, so a
    typo in a config file is an error rather than a silently ignored entry.
    """
    text = selector.strip()
    if text.upper() == "ALL":
        return ""
    codes = known_codes()
    lowered = text.lower()
    for code, name in codes.items():
        if lowered == name:
            return code
    upper = text.upper()
    if upper and re.match(r"^[A-Z]{1,3}[0-9]{0,3}$", upper):
        if any(code.startswith(upper) for code in codes):
            return upper
    raise UnknownSelector(selector)


def resolve_enabled(
    select: Sequence[str], ignore: Sequence[str], extend_select: Sequence[str] = ()
) -> frozenset:
    """The enabled codes, ruff-style: the most specific selector wins and an
    ignore wins a tie with a select of the same specificity."""
    selects = [normalize_selector(s) for s in list(select) + list(extend_select)]
    ignores = [normalize_selector(s) for s in ignore]
    enabled = set()
    for code in known_codes():
        best_select = _longest_prefix(code, selects)
        best_ignore = _longest_prefix(code, ignores)
        if best_select is not None and (best_ignore is None or len(best_select) > len(best_ignore)):
            enabled.add(code)
    return frozenset(enabled)


def _longest_prefix(code: str, prefixes: Iterable[str]):
    matches = [p for p in prefixes if code.startswith(p)]
    return max(matches, key=len) if matches else None


def instantiate(enabled: Iterable[str], info: Iterable[str] = ()) -> List[Rule]:
    """Rule instances for the ``enabled`` codes; those also in ``info``
    report their info-severity findings too."""
    wanted = set(enabled)
    with_info = set(info)
    rules = []
    for cls in all_rules():
        if cls.code in wanted:
            rule = cls()
            rule.report_info = cls.code in with_info
            rules.append(rule)
    return rules

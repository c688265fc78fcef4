"""The contract between the engine and a rule module in ``lintorch.rules``.

A rule is a class with its metadata (code, name, severity, docs, examples) and
one ``check`` method that queries the shared :class:`~lintorch.index.ModuleIndex`
built by the engine's single traversal and yields :class:`Report` objects.
"""

import enum
import textwrap
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Iterator, Optional, Sequence, Tuple

import libcst as cst

if TYPE_CHECKING:  # pragma: no cover
    from lintorch.index import ModuleIndex


class Severity(str, enum.Enum):
    ERROR = "error"
    WARNING = "warning"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Report:
    """What a rule yields: the node to blame and the full message.

    ``{line0}``, ``{line1}``... in the message are replaced by the line
    numbers of the ``related`` nodes once positions are known (positions are
    computed only for reported nodes, after all rules ran).
    """

    node: cst.CSTNode
    message: str
    severity: Optional[Severity] = None  # overrides the rule's default
    related: Tuple[cst.CSTNode, ...] = ()


@dataclass(frozen=True)
class Finding:
    """One diagnostic, positioned, as every output format sees it.

    ``line``/``column`` are 1-based and ``column`` counts characters (as ruff
    and flake8 print them); ``end_line``/``end_column`` are exclusive-end style
    like LSP ranges, also 1-based.
    """

    path: str
    line: int
    column: int
    end_line: int
    end_column: int
    code: str
    name: str
    severity: Severity
    message: str

    def sort_key(self) -> Tuple[str, int, int, str]:
        return (self.path, self.line, self.column, self.code)

    def as_dict(self) -> dict:
        return {
            "path": self.path,
            "line": self.line,
            "column": self.column,
            "end_line": self.end_line,
            "end_column": self.end_column,
            "code": self.code,
            "name": self.name,
            "severity": self.severity.value,
            "message": self.message,
        }


@dataclass(frozen=True)
class Example:
    """A code sample in a rule's docs; every one is also a test case."""

    code: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "code", textwrap.dedent(self.code).strip("\n") + "\n")


class Rule:
    """Base class of every rule.

    Subclasses set the class attributes below and implement :meth:`check`.
    The class docstring is the rule's explanation (what it does, why it is
    bad, the symptom, how to fix), shown by ``lintorch rule CODE``.
    """

    code: ClassVar[str]
    name: ClassVar[str]
    severity: ClassVar[Severity]
    #: One line, used as the title in docs and SARIF.
    summary: ClassVar[str]
    #: The training symptom the bug produces, in the words users search for.
    symptom: ClassVar[str]
    #: Words of which at least one must appear in the raw source for the rule
    #: to possibly fire; files with none skip the rule (and, if no enabled rule
    #: can fire, skip parsing altogether).
    triggers: ClassVar[Tuple[str, ...]]
    bad: ClassVar[Sequence[Example]] = ()
    good: ClassVar[Sequence[Example]] = ()

    def check(self, index: "ModuleIndex") -> Iterator[Report]:  # pragma: no cover
        raise NotImplementedError

    @classmethod
    def explanation(cls) -> str:
        return textwrap.dedent(cls.__doc__ or "").strip()

    @classmethod
    def trigger_bytes(cls) -> Tuple[bytes, ...]:
        cached = cls.__dict__.get("_trigger_bytes_cache")
        if cached is None:
            cached = tuple(word.encode("ascii") for word in cls.triggers)
            cls._trigger_bytes_cache = cached
        return cached

    def report(
        self,
        node: cst.CSTNode,
        message: str,
        *,
        related: Sequence[cst.CSTNode] = (),
        severity: Optional[Severity] = None,
    ) -> Report:
        return Report(node, message, severity, tuple(related))

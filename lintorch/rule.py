"""The contract between the engine and a rule module in ``lintorch.rules``.

A rule is a class with its metadata (code, name, severity, docs, examples) and
one ``check`` method that queries the module's semantic model
(:class:`~lintorch.analysis.Analysis`, built once by the engine over the
single traversal's index) and yields :class:`Report` objects.
"""

import enum
import textwrap
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, ClassVar, Iterator, Optional, Sequence, Tuple, Union

# libcst is imported only where trees are built: a run served from the
# findings cache never needs it (its import is most of a warm run).
if TYPE_CHECKING:  # pragma: no cover
    import libcst as cst

    from lintorch.analysis import Analysis


class Severity(str, enum.Enum):
    """``error``: this silently breaks learning. ``warning``: likely wrong.
    ``info``: hygiene or deprecated usage with no effect on learning here;
    info findings are off by default and shown only for codes the user
    selects explicitly (``--select``, ``--extend-select``, config)."""

    ERROR = "error"
    WARNING = "warning"
    INFO = "info"

    def __str__(self) -> str:
        return self.value


#: What a fix puts in place of its node: a new node, a function of the
#: (already updated) node returning the new one, or ``cst.RemoveFromParent()``.
Replacement = Union["cst.CSTNode", "cst.RemovalSentinel", Callable[["cst.CSTNode"], "cst.CSTNode"]]


@dataclass(frozen=True)
class Fix:
    """A source edit offered with a report, applied by ``lintorch --fix``.

    ``node`` is a node of the parsed module; ``replacement`` takes its place
    (see :data:`Replacement`). ``safe`` fixes keep the program's behaviour
    (applied by ``--fix``); unsafe ones change it on purpose (applied only with
    ``--unsafe-fixes``). ``description`` says what the edit does.

    A Fix only applies in the process that linted the file: pickled (by a
    parallel runner or a cache) it keeps ``safe`` and ``description`` but
    drops the node and replacement, so it still counts as "fixable".
    """

    node: Optional["cst.CSTNode"]
    replacement: Optional[Replacement]
    safe: bool
    description: str

    @property
    def applicable(self) -> bool:
        return self.node is not None and self.replacement is not None

    def __reduce__(self):
        return (Fix, (None, None, self.safe, self.description))


@dataclass(frozen=True)
class Report:
    """What a rule yields: the node to blame and what to say about it.

    ``message`` is one line of at most about 100 characters: what is wrong,
    with the key fact (shown by default, in editors and by flake8).
    ``explanation`` is the rest, specific to this finding: why it is wrong,
    the symptom and the fix (``--output-format full``, JSON, SARIF).
    ``{line0}``, ``{line1}``... in either are replaced by the line numbers
    of the ``related`` nodes once positions are known (positions are
    computed only for reported nodes, after all rules ran).
    """

    node: "cst.CSTNode"
    message: str
    severity: Optional[Severity] = None  # overrides the rule's default
    related: Tuple["cst.CSTNode", ...] = ()
    fix: Optional[Fix] = None
    explanation: str = ""


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
    #: Notebooks only: the 1-based number of the cell (counting every cell of
    #: the notebook, markdown too); ``line``/``end_line`` are then lines of
    #: that cell. None for Python files.
    cell: Optional[int] = None
    fix: Optional[Fix] = field(default=None, compare=False, repr=False)
    #: Why the finding matters, its symptom and fix (see :class:`Report`).
    explanation: str = field(default="", repr=False)

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
            "explanation": self.explanation,
            # Only notebook findings add a key ("cell"), so the JSON of
            # every Python file has the same keys.
            **({"cell": self.cell} if self.cell is not None else {}),
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
    #: When findings of this rule may carry another severity than
    #: ``severity``, the conditions in a few words ("error over the batch
    #: axis; info on 2-D input"); shown in docs and the README table.
    severity_cases: ClassVar[str] = ""
    #: Words of which at least one must appear in the raw source for the rule
    #: to possibly fire; files with none skip the rule (and, if no enabled rule
    #: can fire, skip parsing altogether).
    triggers: ClassVar[Tuple[str, ...]]
    bad: ClassVar[Sequence[Example]] = ()
    good: ClassVar[Sequence[Example]] = ()
    #: Whether this instance reports its info-severity findings (set by
    #: ``registry.instantiate`` for explicitly selected codes).
    report_info: bool = False

    def check(self, analysis: "Analysis") -> Iterator[Report]:  # pragma: no cover
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
        node: "cst.CSTNode",
        message: str,
        *,
        explanation: str = "",
        related: Sequence["cst.CSTNode"] = (),
        severity: Optional[Severity] = None,
        fix: Optional[Fix] = None,
    ) -> Report:
        return Report(node, message, severity, tuple(related), fix, explanation)

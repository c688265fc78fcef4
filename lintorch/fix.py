"""Applying the fixes rules offer (``--fix``, ``--unsafe-fixes``, ``--diff``).

A rule attaches a :class:`~lintorch.rule.Fix` to a report: a node of the
parsed module and what replaces it. Here the fixes of one file are applied
through libcst, so everything outside the replaced nodes (formatting,
comments, line endings) is kept byte for byte:

1. lint the source; keep the findings whose fix is enabled (safe ones, plus
   unsafe ones with ``--unsafe-fixes``);
2. pick fixes whose nodes do not overlap and replace those nodes in one
   libcst transformation;
3. check that the new source still parses (libcst and ``ast``) and keeps
   every comment; a fix that breaks either is dropped and reported, the
   others are kept;
4. repeat on the new source (a fix can make room for another) until nothing
   changes, at most :data:`MAX_PASSES` times.

Files are then written atomically (:func:`write_atomic`): a temporary file in
the same directory replaces the original with ``os.replace``, in the
original encoding, with its BOM and mode bits, and only if the file did not
change since it was read.
"""

import codecs
import difflib
import io
import os
import stat
import tempfile
import tokenize
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import libcst as cst

from lintorch import engine, notebook, registry, source
from lintorch.rule import Finding, Fix, Rule

MAX_PASSES = 10

Keep = Callable[[Finding], bool]


@dataclass
class FixOutcome:
    """What fixing one file did."""

    path: str
    original: bytes
    #: The fixed source text (decoded, BOM stripped); None when the file
    #: could not be decoded or parsed.
    text: Optional[str] = None
    original_text: Optional[str] = None
    encoding: str = "utf-8"
    has_bom: bool = False
    #: Findings whose fix was applied (positions as in the source they were found in).
    applied: List[Finding] = field(default_factory=list)
    #: (finding, reason) for fixes that were dropped.
    dropped: List[Tuple[Finding, str]] = field(default_factory=list)
    #: Findings of the fixed source (what is left to do by hand).
    remaining: List[Finding] = field(default_factory=list)
    #: Why the file was not fixed at all (notebooks), for a warning.
    skipped: Optional[str] = None
    #: Notebooks: the diff of the edited cells (the JSON diff is unreadable).
    cell_diff: Optional[str] = None

    @property
    def changed(self) -> bool:
        return self.text is not None and self.text != self.original_text

    def new_bytes(self) -> bytes:
        assert self.text is not None
        data = self.text.encode(self.encoding)
        return codecs.BOM_UTF8 + data if self.has_bom else data

    def diff(self) -> str:
        """A unified diff from the original to the fixed source."""
        if not self.changed:
            return ""
        if self.cell_diff is not None:
            return self.cell_diff
        before = (self.original_text or "").splitlines(keepends=True)
        after = (self.text or "").splitlines(keepends=True)
        lines = difflib.unified_diff(before, after, fromfile=f"a/{self.path}", tofile=f"b/{self.path}")
        out = []
        for line in lines:
            if not line.endswith(("\n", "\r")):
                line += "\n\\ No newline at end of file\n"
            out.append(line)
        return "".join(out)


def enabled(fix: Optional[Fix], unsafe: bool) -> bool:
    return fix is not None and fix.applicable and (fix.safe or unsafe)


def fix_bytes(
    data: bytes,
    path: str,
    rules: Sequence[Rule],
    *,
    unsafe: bool = False,
    keep: Optional[Keep] = None,
    debug: bool = False,
    project=None,
) -> FixOutcome:
    """Apply every enabled fix to one file's bytes (nothing is written).
    With a ``project``, findings use the facts of the other files (see
    ``engine.lint_bytes``)."""
    try:
        # libcst's code generation and positions recurse once per nesting level
        with source.deep_recursion():
            return _fix_bytes(data, path, rules, unsafe=unsafe, keep=keep, debug=debug, project=project)
    except RecursionError:
        outcome = FixOutcome(path, data)
        found = engine.lint_bytes(data, path, rules, debug=debug, project=project)
        outcome.remaining = [f for f in found if (keep or bool)(f)]
        outcome.skipped = "nested too deeply to fix safely; left unchanged"
        return outcome


def _fix_bytes(
    data: bytes,
    path: str,
    rules: Sequence[Rule],
    *,
    unsafe: bool = False,
    keep: Optional[Keep] = None,
    debug: bool = False,
    project=None,
) -> FixOutcome:
    outcome = FixOutcome(path, data)
    keep = keep or (lambda finding: True)
    decoded = source.decode(data)
    if isinstance(decoded, source.SourceError):
        outcome.remaining = [engine.error_finding(path, decoded)]
        return outcome
    outcome.original_text = text = decoded.text
    outcome.encoding, outcome.has_bom = decoded.encoding, decoded.has_bom
    if _encoded(outcome, text) != data:
        # e.g. a unicode_escape cookie: writing back would turn every line
        # break into a literal backslash-n. Never rewrite such a file.
        outcome.remaining = [f for f in engine.lint_bytes(data, path, rules, debug=debug, project=project) if keep(f)]
        outcome.skipped = f"not fixed: re-encoding it as {decoded.encoding} would not give back its bytes"
        return outcome
    if not engine.candidate_rules(data, path, rules, project):
        # no rule can fire: nothing to fix, but a syntax error is still reported
        outcome.remaining = [f for f in engine.lint_bytes(data, path, rules, debug=debug, project=project) if keep(f)]
        outcome.text = text
        return outcome
    dropped_keys = set()
    budget: Optional[Counter] = None
    findings: List[Finding] = []
    for _ in range(MAX_PASSES):
        module = source.parse(text)
        if isinstance(module, source.SourceError):
            outcome.remaining = [engine.error_finding(path, module)]
            return outcome  # the original does not parse: text stays None
        candidates = engine.candidate_rules(text.encode("utf-8"), path, rules, project)
        findings = [f for f in engine.lint_module(module, text, path, candidates, debug=debug, project=project) if keep(f)]
        if budget is None:
            # A code gets as many fixes as it had fixable findings in the
            # first pass (a fix may turn its finding into one with another
            # message, as log(softmax(x)) -> log_softmax(x) for LT107), so a
            # rule whose fix does not make its finding go away cannot loop.
            budget = Counter(f.code for f in findings if enabled(f.fix, unsafe))
        fixable = [
            f for f in findings if enabled(f.fix, unsafe) and _key(f) not in dropped_keys and budget[f.code] > 0
        ]
        if not fixable:
            break
        selected = _non_overlapping(module, fixable)
        new_text, applied, dropped = _apply_checked(module, selected)
        for finding, reason in dropped:
            dropped_keys.add(_key(finding))
            outcome.dropped.append((finding, reason))
        if not applied:
            continue
        if new_text == text:
            break  # the fixes changed nothing
        for finding in applied:
            budget[finding.code] -= 1
        outcome.applied.extend(applied)
        text = new_text
    else:
        module = source.parse(text)
        if not isinstance(module, source.SourceError):
            candidates = engine.candidate_rules(text.encode("utf-8"), path, rules, project)
            findings = [f for f in engine.lint_module(module, text, path, candidates, debug=debug, project=project) if keep(f)]
    if text != outcome.original_text and _encoded(outcome, text) is None:
        outcome.skipped = f"not fixed: the fixed code cannot be written in the file's encoding ({outcome.encoding})"
        outcome.applied = []
        text = outcome.original_text
        findings = [f for f in engine.lint_bytes(data, path, rules, debug=debug, project=project) if keep(f)]
    outcome.text = text
    outcome.remaining = findings
    return outcome


def _encoded(outcome: FixOutcome, text: str) -> Optional[bytes]:
    """``text`` as the file's bytes (encoding and BOM), or None."""
    try:
        data = text.encode(outcome.encoding)
    except (UnicodeError, LookupError):
        return None
    return codecs.BOM_UTF8 + data if outcome.has_bom else data


def _key(finding: Finding) -> Tuple[str, str, str]:
    return (finding.code, finding.message, finding.explanation)


def _non_overlapping(module: cst.Module, findings: List[Finding]) -> List[Finding]:
    """Findings whose fix nodes do not overlap, first come first served;
    the others wait for the next pass."""
    from libcst.metadata import MetadataWrapper, PositionProvider

    positions = MetadataWrapper(module, unsafe_skip_copy=True).resolve(PositionProvider)
    taken: List[Tuple[Tuple[int, int], Tuple[int, int]]] = []
    selected = []
    seen_nodes = set()
    for finding in findings:
        node = finding.fix.node
        if id(node) in seen_nodes:
            continue
        span = positions.get(node)
        if span is None:
            continue
        start = (span.start.line, span.start.column)
        end = (span.end.line, span.end.column)
        if any(start < other_end and other_start < end for other_start, other_end in taken):
            continue
        taken.append((start, end))
        seen_nodes.add(id(node))
        selected.append(finding)
    return selected


class _Apply(cst.CSTTransformer):
    def __init__(self, fixes: Sequence[Fix]):
        super().__init__()
        self.by_node: Dict[int, Fix] = {id(fix.node): fix for fix in fixes}

    def on_leave(self, original_node, updated_node):
        fix = self.by_node.get(id(original_node))
        if fix is None:
            return updated_node
        replacement = fix.replacement
        if isinstance(replacement, (cst.CSTNode, cst.RemovalSentinel)):
            return replacement
        return replacement(updated_node)


def apply_fixes(module: cst.Module, fixes: Sequence[Fix]) -> str:
    """The source of ``module`` with the (non-overlapping) fixes applied."""
    return module.visit(_Apply(fixes)).code


def check_parses(text: str) -> Optional[str]:
    """None when ``text`` is valid Python, else why not."""
    try:
        source.cpython_parse(text)
    except SyntaxError as exc:
        return f"{exc.msg} (line {exc.lineno})"
    except (ValueError, MemoryError, RecursionError) as exc:
        return f"{type(exc).__name__}: {exc}"
    parsed = source.parse(text)
    if isinstance(parsed, source.SourceError):
        return parsed.reason
    return None


def comments(text: str) -> Counter:
    """The comments of a source (a fix must not delete any)."""
    found: Counter = Counter()
    try:
        for token in tokenize.generate_tokens(io.StringIO(text).readline):
            if token.type == tokenize.COMMENT:
                found[token.string.rstrip()] += 1
    except (tokenize.TokenError, SyntaxError, ValueError):
        pass
    return found


def _apply_checked(module: cst.Module, findings: List[Finding]):
    """Apply the fixes together; when the result does not parse (or loses a
    comment), find the fixes that cause it (each is tried alone), drop them,
    keep the rest."""
    dropped: List[Tuple[Finding, str]] = []
    before = comments(module.code)
    text = _try_apply(module, findings, before)
    if isinstance(text, str):
        return text, findings, dropped
    good = []
    for finding in findings:
        alone = _try_apply(module, [finding], before)
        if isinstance(alone, str):
            good.append(finding)
        else:
            dropped.append((finding, alone[1]))
    while good:
        text = _try_apply(module, good, before)
        if isinstance(text, str):
            return text, good, dropped
        # Valid alone, invalid together: keep the first, retry the rest next pass.
        good = good[:1]
    return module.code, [], dropped


def _try_apply(module: cst.Module, findings: List[Finding], before: Counter):
    try:
        text = apply_fixes(module, [f.fix for f in findings])
    except Exception as exc:  # a replacement libcst cannot render
        return (None, f"the fix could not be applied: {type(exc).__name__}: {exc}")
    problem = check_parses(text)
    if problem is not None:
        return (None, f"the fixed code would not parse: {problem}")
    lost = before - comments(text)
    if lost:
        return (None, f"the fix would delete the comment {next(iter(lost))!r}")
    return text


# -- notebooks ---------------------------------------------------------------
#
# Fixes are computed on the program of the code cells (a fix may need several
# cells' context) and the changed lines are put back into their cells; the
# notebook is rewritten only in its own JSON layout (notebook.with_cell_sources).


def fix_notebook_bytes(
    data: bytes,
    path: str,
    rules: Sequence[Rule],
    *,
    unsafe: bool = False,
    keep: Optional[Keep] = None,
    debug: bool = False,
    project=None,
) -> FixOutcome:
    """Fix a notebook's code cells; see :func:`fix_bytes`."""
    outcome = FixOutcome(path, data)
    keep = keep or (lambda finding: True)

    def lint_only(reason: Optional[str] = None) -> FixOutcome:
        outcome.remaining = [f for f in engine.lint_bytes(data, path, rules, debug=debug, project=project) if keep(f)]
        if reason is not None and any(f.code != registry.UNPARSABLE_CODE for f in outcome.remaining):
            outcome.skipped = reason
        return outcome

    cells = notebook.load(data)
    if isinstance(cells, source.SourceError) or not cells:
        return lint_only()
    if not notebook.rewritable(data):
        return lint_only("notebook not fixed: its JSON layout is not one lintorch can rewrite unchanged")
    prog, module, _ = engine.notebook_program([notebook.cell_code(cell) for cell in cells], path)
    if module is None:
        return lint_only("notebook not fixed: its code cells do not parse together")
    fixed = fix_bytes(prog.text.encode("utf-8"), path, rules, unsafe=unsafe, keep=keep, debug=debug, project=project)
    outcome.dropped = [(engine.in_cells(prog, f), reason) for f, reason in fixed.dropped]
    if not fixed.changed:
        return lint_only()
    new_sources = notebook.cell_sources(prog, fixed.text)
    new_text = notebook.with_cell_sources(data, cells, new_sources) if new_sources is not None else None
    if new_text is None:
        return lint_only("notebook not fixed: a fix spans cells or IPython syntax")
    outcome.original_text, outcome.text = data.decode("utf-8-sig"), new_text
    outcome.has_bom = data.startswith(codecs.BOM_UTF8)
    outcome.applied = [engine.in_cells(prog, f) for f in fixed.applied]
    outcome.cell_diff = _cells_diff(path, {cell.number: cell for cell in cells}, new_sources)
    found = engine.lint_bytes(outcome.new_bytes(), path, rules, debug=debug, project=project)
    outcome.remaining = [f for f in found if keep(f)]
    return outcome


def _cells_diff(path: str, cells: Dict[int, notebook.Cell], new_sources: Dict[int, List[str]]) -> str:
    out = []
    for number in sorted(new_sources):
        before = [line + "\n" for line in notebook.split_lines(cells[number].source)]
        after = [line + "\n" for line in new_sources[number]]
        name = f"{path}:cell {number}"
        out.extend(difflib.unified_diff(before, after, fromfile=f"a/{name}", tofile=f"b/{name}"))
    return "".join(out)


# -- writing ---------------------------------------------------------------


class FileChangedError(Exception):
    """The file changed on disk between reading and writing it."""


def write_atomic(path: str, data: bytes, expected: bytes) -> None:
    """Replace the file at ``path`` with ``data``, atomically.

    The bytes are written to a temporary file in the same directory (so
    ``os.replace`` is a rename on one file system), given the original's
    permission bits, flushed to disk and renamed over the original. A
    symlink is followed: its target is replaced and the link kept. Raises
    :class:`FileChangedError` (and writes nothing) when the file no longer
    holds ``expected``, the bytes the fixes were computed from.
    """
    target = os.path.realpath(path)
    directory = os.path.dirname(target) or "."
    info = os.stat(target)
    handle, temporary = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(target) + ".", suffix=".lintorch")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, stat.S_IMODE(info.st_mode))
        with open(target, "rb") as current:
            if current.read() != expected:
                raise FileChangedError(f"{path}: changed on disk while lintorch was fixing it; not written")
        os.replace(temporary, target)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


def fix_file(
    path: str,
    display_path: str,
    rules: Sequence[Rule],
    *,
    unsafe: bool = False,
    keep: Optional[Keep] = None,
    write: bool = True,
    debug: bool = False,
    project=None,
) -> FixOutcome:
    """Fix one file on disk (or only compute the fix when ``write`` is
    False, for ``--diff``)."""
    data = engine.read_file(path, display_path)  # non-blocking: a FIFO is reported, not waited on
    if isinstance(data, Finding):
        outcome = FixOutcome(display_path, b"")
        outcome.remaining = [data] if (keep or bool)(data) else []
        return outcome
    if display_path.endswith(engine.NOTEBOOK_SUFFIX):
        outcome = fix_notebook_bytes(data, display_path, rules, unsafe=unsafe, keep=keep, debug=debug, project=project)
    else:
        outcome = fix_bytes(data, display_path, rules, unsafe=unsafe, keep=keep, debug=debug, project=project)
    if write and outcome.changed:
        write_atomic(path, outcome.new_bytes(), data)
    outcome.remaining = _without_unusable_fixes(outcome, unsafe)
    return outcome


def _without_unusable_fixes(outcome: FixOutcome, unsafe: bool) -> List[Finding]:
    """What is left after fixing, with no fix offered where another run
    could not apply it: a fix enabled in this run that is still there (it
    was dropped, or kept clashing), or any fix of a file that cannot be
    fixed at all. The summary's advice then counts only fixes that can apply."""
    return [
        replace(finding, fix=None)
        if finding.fix is not None and (outcome.skipped or enabled(finding.fix, unsafe))
        else finding
        for finding in outcome.remaining
    ]

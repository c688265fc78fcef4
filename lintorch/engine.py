"""Linting one file: bytes in, positioned findings out, never an exception.

Pipeline per file: read bytes -> skip if no enabled rule's trigger word
occurs -> decode (PEP 263) -> parse once with libcst -> one index walk ->
every enabled rule queries the module's semantic model -> positions computed only for the
reported nodes -> ``# noqa`` filtering.
"""

import dataclasses
import re
import traceback
from typing import TYPE_CHECKING, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import libcst as cst

from lintorch import imports, notebook, registry, source
from lintorch.analysis import Analysis
from lintorch.index import ModuleIndex
from lintorch.rule import Finding, Report, Rule, Severity

if TYPE_CHECKING:  # pragma: no cover
    from lintorch.project import Project

# flake8's own pattern, so a comment means the same thing to both tools.
NOQA_RE = re.compile(
    r"#\s*noqa"
    r"(?::[\s]?(?P<codes>[A-Z]+[0-9]+(?:[,\s]+)?)+)?",
    re.IGNORECASE,
)
_CODE_SPLIT_RE = re.compile(r"[,\s]+")
#: Jupyter notebooks are linted as the concatenation of their code cells.
NOTEBOOK_SUFFIX = ".ipynb"


def error_finding(path: str, error: source.SourceError) -> Finding:
    return Finding(
        path=path,
        line=error.line,
        column=error.column,
        end_line=error.line,
        end_column=error.column,
        code=registry.UNPARSABLE_CODE,
        name=registry.UNPARSABLE_NAME,
        severity=Severity.ERROR,
        message=f"cannot analyse this file: {error.reason}",
    )


def could_trigger(data: bytes, rules: Sequence[Rule]) -> List[Rule]:
    """The rules whose trigger words occur in the raw bytes (the cheap
    prefilter that spares most library files the parse)."""
    return [rule for rule in rules if any(word in data for word in rule.trigger_bytes())]


def candidate_rules(data: bytes, path: str, rules: Sequence[Rule], project: Optional["Project"] = None) -> List[Rule]:
    """:func:`could_trigger`; with a project, also the rules whose words
    occur in the files the analysis may take facts from."""
    return project.could_trigger(path, data, rules) if project is not None else could_trigger(data, rules)


def syntax_error(text: str) -> Optional[source.SourceError]:
    """Why ``text`` is not Python, or None, for files no rule needs parsed.

    CPython's parser answers first (a tenth of libcst's time, see
    bench/syntax_cost.py). Only where it refuses the code does libcst
    decide, as for every analysed file: it knows syntax newer than this
    interpreter, and its error carries CPython's message and position."""
    try:
        source.cpython_parse(text)
        return None
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        pass
    parsed = source.parse(text)
    return parsed if isinstance(parsed, source.SourceError) else None


def lint_bytes(
    data: bytes,
    path: str,
    rules: Sequence[Rule],
    *,
    apply_noqa: bool = True,
    debug: bool = False,
    check_syntax: bool = True,
    project: Optional["Project"] = None,
) -> List[Finding]:
    """Lint a file's raw bytes (decoded per PEP 263); a ``.ipynb`` path is
    read as a Jupyter notebook. ``check_syntax``: report a syntax error
    (LT000) even when no rule needs the file parsed. With a ``project``,
    facts flow in from the modules the file imports and the modules that
    import it."""
    if path.endswith(NOTEBOOK_SUFFIX):
        return lint_notebook(
            data, path, rules, apply_noqa=apply_noqa, debug=debug, check_syntax=check_syntax, project=project
        )
    candidates = candidate_rules(data, path, rules, project)
    decoded = source.decode(data)
    if isinstance(decoded, source.SourceError):
        return [error_finding(path, decoded)]
    if not candidates:
        # Files over the size limit are not checked: CPython needs seconds
        # and a GB per 10 MB of generated data, and no rule could fire.
        if check_syntax and len(decoded.text) <= source.MAX_SOURCE_CHARS:
            error = syntax_error(decoded.text)
            if error is not None:
                return [error_finding(path, error)]
        return []
    return _lint_decoded(decoded.text, path, candidates, apply_noqa, debug, project)


def lint_text(
    text: str,
    path: str,
    rules: Sequence[Rule],
    *,
    apply_noqa: bool = True,
    debug: bool = False,
    project: Optional["Project"] = None,
) -> List[Finding]:
    """Lint already-decoded source (the flake8 plugin, editors' buffers)."""
    # UTF-8 keeps the ASCII trigger words and makes no ASCII of anything else
    candidates = candidate_rules(text.encode("utf-8", "surrogatepass"), path, rules, project)
    if "\x00" in text:
        return [error_finding(path, source.SourceError("file contains a null byte (binary file?)"))]
    if not candidates:
        return []
    return _lint_decoded(text, path, candidates, apply_noqa, debug, project)


def _lint_decoded(
    text: str, path: str, rules: Sequence[Rule], apply_noqa: bool, debug: bool, project: Optional["Project"] = None
) -> List[Finding]:
    module = project.parsed_tree(path, text) if project is not None else None
    if module is None:
        module = source.parse(text)
    if isinstance(module, source.SourceError):
        return [error_finding(path, module)]
    return lint_module(module, text, path, rules, apply_noqa=apply_noqa, debug=debug, project=project)


def lint_module(
    module: cst.Module,
    text: str,
    path: str,
    rules: Sequence[Rule],
    *,
    apply_noqa: bool = True,
    debug: bool = False,
    line_label: Optional[Callable[[int], str]] = None,
    project: Optional["Project"] = None,
) -> List[Finding]:
    """``line_label`` turns a line number into the text that replaces
    ``{line0}`` in messages (notebooks say which cell); a node of another
    module of the ``project`` is shown as ``14 of models/net.py``."""
    with source.deep_recursion():
        try:
            index = project.adopt(path, text, module) if project is not None else ModuleIndex(module, path, text)
        except RecursionError:
            return [error_finding(path, source.SourceError("code nested too deeply to analyse"))]
        if index.is_other_framework:
            return []
        analysis = Analysis(index)
        reports: List[tuple] = []
        findings: List[Finding] = []
        for rule in rules:
            try:
                for report in rule.check(analysis):
                    if not isinstance(report, Report):
                        raise TypeError(f"check() yielded {type(report).__name__}, not Report")
                    if (report.severity or rule.severity) is Severity.INFO and not rule.report_info:
                        continue
                    reports.append((rule, report))
            except Exception as exc:  # a bug in one rule must not stop the others
                findings.append(_internal_error(path, rule, exc, debug))
        if reports:
            try:
                findings.extend(_position(module, path, reports, line_label, project))
            except RecursionError:  # libcst's position pass recurses per nesting level
                return [error_finding(path, source.SourceError("code nested too deeply to locate findings"))]
    if apply_noqa and findings:
        findings = filter_noqa(findings, text)
    findings.sort(key=Finding.sort_key)
    return _dedupe(findings)


# -- notebooks -------------------------------------------------------------
#
# Each code cell is checked on its own, as Jupyter compiles each cell on its
# own: a cell that does not parse is reported (LT000, with its cell) and left
# out, and the others are analysed as one program, so an unfinished cell
# cannot move its error onto the next cell and hide the rest.

_PARSER_POSITION_RE = re.compile(r"error at \d+:\d+: ")


def _cell_error(path: str, cell: Optional[int], error: source.SourceError, line: int, column: int) -> Finding:
    reason = _PARSER_POSITION_RE.sub("", error.reason)  # libcst's position in the joined cells
    finding = error_finding(path, source.SourceError(reason, line, column))
    message = f"cannot analyse this cell, left out (the other cells were analysed): {reason}"
    return dataclasses.replace(finding, cell=cell, message=message)


def _cells_that_parse(codes: Sequence[notebook.CellCode], path: str) -> Tuple[List[notebook.CellCode], List[Finding]]:
    good, errors = [], []
    for code in codes:
        error = syntax_error(code.text)
        if error is None:
            good.append(code)
        else:
            errors.append(_cell_error(path, code.number, error, error.line, code.column(error.line, error.column)))
    return good, errors


def notebook_program(
    codes: Sequence[notebook.CellCode], path: str
) -> Tuple[notebook.Program, Optional[cst.Module], List[Finding]]:
    """The program of the code cells that parse, its tree (None if the
    cells still do not parse together), and LT000 for each cell left out."""
    good, errors = _cells_that_parse(codes, path)
    while True:
        prog = notebook.program(good)
        module = source.parse(prog.text)
        if not isinstance(module, source.SourceError):
            return prog, module, errors
        # libcst refuses what CPython accepted cell by cell: leave that cell out too
        cell, line, column = prog.position(module.line, module.column)
        errors.append(_cell_error(path, cell, module, line, column))
        remaining = [code for code in good if code.number != cell]
        if cell is None or len(remaining) == len(good):
            return prog, None, errors
        good = remaining


def notebook_tree(data: bytes, path: str) -> Optional[Tuple[str, cst.Module, Callable[[int], str]]]:
    """``(text, tree, line label)`` of a notebook's cells that parse, for a
    project: the analysis of a module the notebook calls reads it for its
    arguments. None when it cannot be read."""
    cells = notebook.load(data)
    if isinstance(cells, source.SourceError):
        return None
    prog, module, _ = notebook_program([notebook.cell_code(cell) for cell in cells], path)
    return (prog.text, module, prog.label) if module is not None else None


def in_cells(prog: notebook.Program, finding: Finding) -> Finding:
    """A finding on the program, located in its notebook cell."""
    cell, line, column = prog.position(finding.line, finding.column)
    end_cell, end_line, end_column = prog.position(finding.end_line, finding.end_column)
    if end_cell != cell:  # cannot happen for one node; keep the range in the start cell
        end_line, end_column = line, column
    return dataclasses.replace(finding, cell=cell, line=line, column=column, end_line=end_line, end_column=end_column)


def lint_notebook(
    data: bytes,
    path: str,
    rules: Sequence[Rule],
    *,
    apply_noqa: bool = True,
    debug: bool = False,
    check_syntax: bool = True,
    project: Optional["Project"] = None,
) -> List[Finding]:
    """Lint a Jupyter notebook's code cells as one program (see :mod:`lintorch.notebook`)."""
    cells = notebook.load(data)
    if isinstance(cells, source.SourceError):
        return [error_finding(path, cells)]
    codes = [notebook.cell_code(cell) for cell in cells]
    candidates = candidate_rules("".join(code.text for code in codes).encode("utf-8"), path, rules, project)
    if not candidates:
        return _sorted_by_cell(_cells_that_parse(codes, path)[1]) if check_syntax else []
    prog, module, findings = notebook_program(codes, path)
    if module is not None:
        found = lint_module(
            module, prog.text, path, candidates, apply_noqa=apply_noqa, debug=debug, line_label=prog.label,
            project=project,
        )
        found = [in_cells(prog, finding) for finding in found]
        if any(finding.fix is not None for finding in found) and not notebook.rewritable(data):
            # --fix could not write this notebook back: offer no fix
            found = [dataclasses.replace(finding, fix=None) for finding in found]
        findings += found
    return _sorted_by_cell(findings)


def _sorted_by_cell(findings: List[Finding]) -> List[Finding]:
    return sorted(findings, key=lambda f: (f.cell or 0, f.line, f.column, f.code))


def _internal_error(path: str, rule: Rule, exc: BaseException, debug: bool) -> Finding:
    detail = f"{type(exc).__name__}: {exc}"
    if debug:
        detail += "\n" + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return Finding(
        path=path,
        line=1,
        column=1,
        end_line=1,
        end_column=1,
        code=registry.INTERNAL_ERROR_CODE,
        name=registry.INTERNAL_ERROR_NAME,
        severity=Severity.ERROR,
        message=f"internal error in rule {rule.code} ({rule.name}) on this file: {detail}",
        explanation="The other rules still ran. Please report it (--debug shows the traceback).",
    )


def _position(
    module: cst.Module,
    path: str,
    reports: Iterable[tuple],
    line_label: Optional[Callable[[int], str]] = None,
    project: Optional["Project"] = None,
) -> List[Finding]:
    # Imported here: most files have no findings and never need positions.
    from libcst.metadata import MetadataWrapper, PositionProvider

    label = line_label or str
    positions = MetadataWrapper(module, unsafe_skip_copy=True).resolve(PositionProvider)
    findings = []
    for rule, report in reports:
        assert isinstance(report, Report)
        code_range = positions.get(report.node)
        if code_range is None:  # a node the rule built itself; blame the file start
            start_line, start_col, end_line, end_col = 1, 0, 1, 0
        else:
            start_line, start_col = code_range.start.line, code_range.start.column
            end_line, end_col = code_range.end.line, code_range.end.column
        message, explanation = report.message, report.explanation
        for i, related in enumerate(report.related):
            related_range = positions.get(related)
            if related_range is not None:
                where = label(related_range.start.line)
            else:
                where = (project.locate(related) if project is not None else None) or "?"
            message = message.replace(f"{{line{i}}}", where)
            explanation = explanation.replace(f"{{line{i}}}", where)
        findings.append(
            Finding(
                path=path,
                line=start_line,
                column=start_col + 1,
                end_line=end_line,
                end_column=end_col + 1,
                code=rule.code,
                name=rule.name,
                severity=report.severity or rule.severity,
                message=message,
                fix=report.fix,
                explanation=explanation,
            )
        )
    return findings


def noqa_codes(line: str) -> Optional[frozenset]:
    """None: no noqa; empty set: blanket noqa; else the codes listed."""
    match = NOQA_RE.search(line)
    if match is None:
        return None
    codes = match.group("codes")
    if not codes:
        return frozenset()
    text = match.group(0).split(":", 1)[1]
    return frozenset(c.upper() for c in _CODE_SPLIT_RE.split(text.strip()) if c)


def filter_noqa(findings: List[Finding], text: str) -> List[Finding]:
    lines = source.split_lines(text)  # not splitlines(): form feeds do not end lines
    cache: Dict[int, Optional[frozenset]] = {}
    kept = []
    for finding in findings:
        if finding.code == registry.UNPARSABLE_CODE:
            kept.append(finding)
            continue
        if finding.line not in cache:
            line = lines[finding.line - 1] if 0 < finding.line <= len(lines) else ""
            cache[finding.line] = noqa_codes(line) if "noqa" in line.lower() else None
        codes = cache[finding.line]
        if codes is None:
            kept.append(finding)
        elif codes and not any(finding.code.startswith(code) for code in codes):
            kept.append(finding)
    return kept


def _dedupe(findings: List[Finding]) -> List[Finding]:
    seen = set()
    out = []
    for finding in findings:
        key = (finding.line, finding.column, finding.code)
        if key not in seen:
            seen.add(key)
            out.append(finding)
    return out


def read_file(path: str, display_path: str) -> Union[bytes, Finding]:
    """The file's bytes, or the LT000 finding saying why it cannot be read
    (a FIFO or device named ``*.py`` is reported, not waited on)."""
    data = imports.read_regular_file(path)
    return data if isinstance(data, bytes) else error_finding(display_path, source.SourceError(data))


def read_and_lint(path: str, display_path: str, rules: Sequence[Rule], *, debug: bool = False) -> List[Finding]:
    """Lint a file on disk; unreadable files become LT000 findings."""
    data = read_file(path, display_path)
    if isinstance(data, Finding):
        return [data]
    return lint_bytes(data, display_path, rules, debug=debug)

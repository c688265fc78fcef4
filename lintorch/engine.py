"""Linting one file: bytes in, positioned findings out, never an exception.

Pipeline per file: read bytes -> skip if no enabled rule's trigger word
occurs -> decode (PEP 263) -> parse once with libcst -> one index walk ->
every enabled rule queries the module's semantic model -> positions computed only for the
reported nodes -> ``# noqa`` filtering.
"""

import os
import re
import stat
import traceback
from typing import TYPE_CHECKING, Callable, Dict, Iterable, List, Optional, Sequence, Union

import libcst as cst

from lintorch import registry, source
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
    prefilter that spares most library files the parse). With a project,
    :meth:`Project.could_trigger` adds the rules whose words occur in the
    files the analysis may take facts from."""
    return [rule for rule in rules if any(word in data for word in rule.trigger_bytes())]


def lint_bytes(
    data: bytes,
    path: str,
    rules: Sequence[Rule],
    *,
    apply_noqa: bool = True,
    debug: bool = False,
    project: Optional["Project"] = None,
) -> List[Finding]:
    """Lint a file's raw bytes (decoded per PEP 263); a ``.ipynb`` path is
    read as a Jupyter notebook. With a ``project``, facts flow in from the
    modules the file imports and the modules that import it."""
    if path.endswith(NOTEBOOK_SUFFIX):
        from lintorch import notebook

        return notebook.lint_notebook_bytes(data, path, rules, apply_noqa=apply_noqa, debug=debug, project=project)
    candidates = could_trigger(data, rules)
    if project is not None and len(candidates) < len(rules):
        candidates = project.could_trigger(path, candidates, rules)
    decoded = source.decode(data)
    if isinstance(decoded, source.SourceError):
        return [error_finding(path, decoded)]
    if not candidates:
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
    candidates = [rule for rule in rules if any(word in text for word in rule.triggers)]
    if project is not None and len(candidates) < len(rules):
        candidates = project.could_trigger(path, candidates, rules)
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
        message=(
            f"internal error in rule {rule.code} ({rule.name}) on this file: {detail}; "
            "the other rules still ran. Please report it (--debug shows the traceback)."
        ),
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
        message = report.message
        for i, related in enumerate(report.related):
            related_range = positions.get(related)
            if related_range is not None:
                where = label(related_range.start.line)
            else:
                where = (project.locate(related) if project is not None else None) or "?"
            message = message.replace(f"{{line{i}}}", where)
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
    """The file's bytes, or the LT000 finding saying why it cannot be read.

    Opened non-blocking and checked with fstat, so a FIFO or device that
    happens to be named ``*.py`` is reported instead of hanging the run."""
    fd = -1
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
        mode = os.fstat(fd).st_mode
        if stat.S_ISREG(mode):
            with os.fdopen(fd, "rb") as handle:
                fd = -1
                return handle.read()
        if stat.S_ISDIR(mode):  # named explicitly, or yielded by a walk that could not list it
            with os.scandir(path):
                reason = "is a directory"
        else:
            reason = "not a regular file (a FIFO, socket or device)"
    except IsADirectoryError:
        reason = "is a directory"
    except OSError as exc:
        what = "directory" if os.path.isdir(path) else "file"
        reason = f"cannot read {what}: {exc.strerror or exc}"
    except MemoryError:
        reason = "file too large to read into memory"
    finally:
        if fd >= 0:
            os.close(fd)
    return error_finding(display_path, source.SourceError(reason))


def read_and_lint(path: str, display_path: str, rules: Sequence[Rule], *, debug: bool = False) -> List[Finding]:
    """Lint a file on disk; unreadable files become LT000 findings."""
    data = read_file(path, display_path)
    if isinstance(data, Finding):
        return [data]
    return lint_bytes(data, display_path, rules, debug=debug)

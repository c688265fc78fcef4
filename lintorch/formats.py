"""Output formats beyond plain text and JSON: SARIF 2.1.0 (GitHub code
scanning), GitHub Actions workflow annotations, and the text format's
extras (``--output-format full``: source excerpts with carets and the
explanation; colour; the closing summary).
"""

import os
import re
import sys
import textwrap
from pathlib import Path
from typing import IO, Dict, Iterable, List, Optional, Sequence, Tuple

from lintorch import __version__, registry
from lintorch.rule import Finding, Severity

SARIF_SCHEMA_URI = "https://json.schemastore.org/sarif-2.1.0.json"

# -- notebook findings located in the .ipynb file ----------------------------


def _read_or_none(path: str) -> Optional[bytes]:
    """A reported file's bytes for display; None if it cannot be read now
    (the findings are still printed, without the extra detail)."""
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError:
        return None


class NotebookFiles:
    """For formats read by tools that know only files: a notebook finding's
    position in the .ipynb JSON (see :func:`lintorch.notebook.file_positions`)."""

    def __init__(self):
        self._loaded: Dict[str, object] = {}

    def _load(self, path: str):
        if path not in self._loaded:
            from lintorch import notebook

            loaded = None
            data = _read_or_none(path)
            if data is not None:
                positions = notebook.file_positions(data)
                if positions is not None:
                    loaded = (positions, notebook.cell_lines(data))
            self._loaded[path] = loaded
        return self._loaded[path]

    def region(self, finding: Finding) -> Optional[Tuple[int, int, int, int]]:
        """(line, column, end_line, end_column) in the file, or None."""
        if finding.cell is None:
            return None
        loaded = self._load(finding.path)
        if loaded is None:
            return None
        positions, cells = loaded
        lines = cells.get(finding.cell, [])

        def text(line: int) -> Optional[str]:
            return lines[line - 1] if 1 <= line <= len(lines) else None

        start = positions.position(finding.cell, finding.line, finding.column, text(finding.line))
        end = positions.position(finding.cell, finding.end_line, finding.end_column, text(finding.end_line))
        if start is None or end is None:
            return None
        return start[0], start[1], end[0], end[1]


# -- SARIF ------------------------------------------------------------------

_SARIF_LEVEL = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "note"}


def _first_paragraph(text: str) -> str:
    return re.split(r"\n\s*\n", text.strip(), maxsplit=1)[0].replace("\n", " ")


def _strip_markdown(text: str) -> str:
    return re.sub(r"\*\*(.+?)\*\*", r"\1", text).replace("`", "")


def _escape_markdown(text: str) -> str:
    """Plain text that Markdown shows as written (``__init__``, ``x * y``)."""
    return re.sub(r"([\\`*_{}\[\]<>#|])", r"\\\1", text)


def sarif_rules(classes: Iterable[type]) -> List[dict]:
    """``reportingDescriptor`` objects: the registered rules plus the two
    pseudo-rules (unparsable file, internal error)."""
    from lintorch import output

    rules = []
    for cls in (*output.ENGINE_CODES, *classes):
        explanation = cls.explanation()
        rules.append(
            {
                "id": cls.code,
                "name": cls.name,
                "shortDescription": {"text": cls.summary},
                "fullDescription": {"text": _strip_markdown(_first_paragraph(explanation)) or cls.summary},
                "help": {"text": _strip_markdown(explanation), "markdown": output.rule_markdown(cls)},
                "defaultConfiguration": {"level": _SARIF_LEVEL[cls.severity]},
                "properties": {"tags": ["pytorch", "correctness"], "symptom": cls.symptom, "precision": "high"},
            }
        )
    return rules


def _artifact_uri(path: str) -> dict:
    """A relative URI against %SRCROOT% for relative paths (what GitHub
    code scanning matches against the checkout), a file URI otherwise."""
    if os.path.isabs(path):
        return {"uri": Path(path).as_uri()}
    posix = Path(path).as_posix()
    from urllib.parse import quote

    return {"uri": quote(posix), "uriBaseId": "%SRCROOT%"}


def sarif_result(finding: Finding, rule_index: Dict[str, int], notebooks: Optional[NotebookFiles] = None) -> dict:
    in_file = notebooks.region(finding) if notebooks is not None else None
    line, column, end_line, end_column = in_file or (finding.line, finding.column, finding.end_line, finding.end_column)
    region = {
        "startLine": line,
        "startColumn": column,
        "endLine": max(end_line, line),
        "endColumn": end_column,
    }
    if region["endLine"] == region["startLine"] and region["endColumn"] < region["startColumn"]:
        region["endColumn"] = region["startColumn"]
    message = {"text": finding.message}
    if finding.explanation:
        # What SARIF viewers show expanded (GitHub code scanning's alert
        # details): the one-line message, then why, the symptom and the fix.
        message["markdown"] = f"{_escape_markdown(finding.message)}\n\n{_escape_markdown(finding.explanation)}"
    result = {
        "ruleId": finding.code,
        "level": _SARIF_LEVEL.get(finding.severity, "warning"),
        "message": message,
        "locations": [{"physicalLocation": {"artifactLocation": _artifact_uri(finding.path), "region": region}}],
    }
    if finding.code in rule_index:
        result["ruleIndex"] = rule_index[finding.code]
    properties = {}
    if finding.cell is not None:
        # SARIF has no notebook cells: the region is in the .ipynb JSON when
        # the notebook is in nbformat's layout, else within the cell; the
        # cell and the position within it are always given here.
        properties["cell"] = finding.cell
        properties["cellLine"] = finding.line
        properties["cellColumn"] = finding.column
        properties["regionInCell"] = in_file is None
    if finding.fix is not None:
        properties["fix"] = {"applicability": "safe" if finding.fix.safe else "unsafe", "message": finding.fix.description}
    if properties:
        result["properties"] = properties
    return result


def sarif_log(findings: Sequence[Finding], classes: Optional[Iterable[type]] = None) -> dict:
    classes = list(registry.all_rules()) if classes is None else list(classes)
    rules = sarif_rules(classes)
    rule_index = {rule["id"]: i for i, rule in enumerate(rules)}
    notebooks = NotebookFiles()
    run = {
        "tool": {
            "driver": {
                "name": "lintorch",
                "version": __version__,
                "semanticVersion": __version__,
                "rules": rules,
            }
        },
        "columnKind": "unicodeCodePoints",
        "originalUriBaseIds": {"%SRCROOT%": {"uri": Path(os.getcwd()).as_uri() + "/"}},
        "results": [sarif_result(f, rule_index, notebooks) for f in findings],
    }
    return {"$schema": SARIF_SCHEMA_URI, "version": "2.1.0", "runs": [run]}


def write_sarif(findings: Sequence[Finding], stream: IO[str]) -> None:
    import json

    json.dump(sarif_log(findings), stream, indent=2)
    stream.write("\n")


# -- GitHub Actions annotations ---------------------------------------------


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def format_github(finding: Finding, notebooks: Optional[NotebookFiles] = None) -> str:
    """``::error file=...,line=...,col=...,endLine=...,endColumn=...,title=...::message``

    A notebook finding points into the .ipynb file when its layout allows
    (else at the line within the cell); the title names the cell and line."""
    command = {Severity.ERROR: "error", Severity.WARNING: "warning"}.get(finding.severity, "notice")
    title = f"{finding.code} {finding.name}"
    line, column, end_line, end_column = finding.line, finding.column, finding.end_line, finding.end_column
    if finding.cell is not None:
        title += f" (cell {finding.cell}, line {finding.line})"
        in_file = notebooks.region(finding) if notebooks is not None else None
        if in_file is not None:
            line, column, end_line, end_column = in_file
    properties = [
        ("file", finding.path),
        ("line", str(line)),
        ("col", str(column)),
        ("endLine", str(end_line)),
        ("endColumn", str(end_column)),
        ("title", title),
    ]
    joined = ",".join(f"{key}={_escape_property(value)}" for key, value in properties)
    return f"::{command} {joined}::{_escape_data(finding.message)}"


def write_github(findings: Sequence[Finding], stream: IO[str]) -> None:
    notebooks = NotebookFiles()
    for finding in findings:
        stream.write(format_github(finding, notebooks) + "\n")


# -- text: colour, source excerpts, summary ----------------------------------


class Style:
    """ANSI styling, or none."""

    def __init__(self, enabled: bool):
        self.enabled = enabled

    def _wrap(self, code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.enabled and text else text

    def bold(self, text: str) -> str:
        return self._wrap("1", text)

    def dim(self, text: str) -> str:
        return self._wrap("2", text)

    def severity(self, severity: Severity, text: str) -> str:
        return self._wrap({Severity.ERROR: "1;31", Severity.WARNING: "1;33"}.get(severity, "1;36"), text)

    def caret(self, text: str) -> str:
        return self._wrap("1;31", text)


def use_color(choice: str, stream: IO[str], environ=None) -> bool:
    """``--color always|never|auto``; auto means a terminal, without
    ``NO_COLOR`` set (https://no-color.org) and not ``TERM=dumb``."""
    environ = os.environ if environ is None else environ
    if choice == "always":
        return True
    if choice == "never":
        return False
    if environ.get("NO_COLOR"):
        return False
    if environ.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # closed stream
        return False


class SourceLines:
    """Reads the lines findings point at, once per file (``--show-source``)."""

    def __init__(self, stdin_text: Optional[Dict[str, str]] = None):
        self._files: Dict[str, object] = {}
        self._stdin = stdin_text or {}

    def _load(self, path: str):
        if path in self._files:
            return self._files[path]
        loaded: object = None
        data: Optional[bytes]
        if path in self._stdin:
            data = self._stdin[path].encode("utf-8")
        else:
            data = _read_or_none(path)
        if data is not None:
            if path.endswith(".ipynb"):
                from lintorch import notebook

                loaded = notebook.cell_lines(data)
            else:
                from lintorch import notebook, source

                decoded = source.decode(data)
                if not isinstance(decoded, source.SourceError):
                    loaded = notebook.split_lines(decoded.text)
        self._files[path] = loaded
        return loaded

    def line(self, finding: Finding) -> Optional[str]:
        loaded = self._load(finding.path)
        if loaded is None:
            return None
        if finding.cell is not None:
            if not isinstance(loaded, dict):
                return None
            lines = loaded.get(finding.cell)
            if lines is None:
                return None
        else:
            if not isinstance(loaded, list):
                return None
            lines = loaded
        if 1 <= finding.line <= len(lines):
            return lines[finding.line - 1]
        return None


def source_excerpt(finding: Finding, line: str, style: Style) -> List[str]:
    """The offending line and a caret range under the reported node (to the
    end of the line when the node spans several lines)."""
    start = max(finding.column - 1, 0)
    if finding.end_line == finding.line:
        end = max(finding.end_column - 1, start + 1)
    else:
        end = max(len(line.rstrip()), start + 1)
    end = min(end, max(len(line), start + 1))
    # Keep tabs where the line has them, so the carets line up in a terminal.
    padding = "".join(ch if ch == "\t" else " " for ch in line[:start])
    number = str(finding.line)
    gutter = " " * len(number)
    return [
        f"{style.dim(number + ' |')} {line.rstrip()}",
        f"{style.dim(gutter + ' |')} {padding}{style.caret('^' * (end - start))}",
    ]


#: Where ``--output-format full`` wraps a finding's explanation.
EXPLANATION_WIDTH = 88


def explanation_lines(finding: Finding, style: Style, gutter: str = " ") -> List[str]:
    """The finding's explanation (why, symptom, fix), wrapped and set off
    under the excerpt's gutter: ``  = CrossEntropyLoss applies ...``."""
    if not finding.explanation:
        return []
    lead, rest = f"{gutter} = ", " " * (len(gutter) + 3)
    wrapped = textwrap.wrap(
        finding.explanation, EXPLANATION_WIDTH - len(lead), break_long_words=False, break_on_hyphens=False
    )
    return [style.dim(lead if i == 0 else rest) + text for i, text in enumerate(wrapped)]


def format_text_styled(finding: Finding, style: Style) -> str:
    location = f"{finding.path}:"
    if finding.cell is not None:
        location += f"cell {finding.cell}:"
    location += f"{finding.line}:{finding.column}:"
    return f"{style.bold(location)} {style.severity(finding.severity, finding.code)} {finding.message}"


def write_text(
    findings: Sequence[Finding],
    stream: IO[str],
    files_checked: int,
    *,
    style: Optional[Style] = None,
    full: bool = False,
    sources: Optional[SourceLines] = None,
    unsafe_fixes: bool = False,
    quiet: bool = False,
) -> None:
    """The text report: one line per finding (``full``: with the offending
    line, carets and the explanation under it), then ``Found 3 findings in
    2 files (1 fixable, 5 checked).``, or ``All checks passed (5 files
    checked).`` (no summary when ``quiet``, nor when nothing was checked: the
    caller says that on stderr)."""
    style = style or Style(False)
    sources = sources or SourceLines()
    for finding in findings:
        stream.write(format_text_styled(finding, style) + "\n")
        if full:
            line = sources.line(finding)
            rows = source_excerpt(finding, line, style) if line is not None else []
            rows += explanation_lines(finding, style, " " * len(str(finding.line)) if rows else " ")
            for row in rows:
                stream.write(row + "\n")
            if rows:
                stream.write("\n")
    if quiet:
        return
    if findings:
        stream.write(summary(findings, files_checked, unsafe_fixes) + "\n")
    elif files_checked:
        stream.write(f"All checks passed ({plural(files_checked, 'file')} checked).\n")


def plural(count: int, noun: str, nouns: Optional[str] = None) -> str:
    """``1 file``, ``2 files`` (``nouns``: an irregular plural)."""
    return f"{count} {noun if count == 1 else nouns or noun + 's'}"


def summary(findings: Sequence[Finding], files_checked: int, unsafe_fixes: bool = False) -> str:
    files = len({f.path for f in findings})
    noun = "finding" if len(findings) == 1 else "findings"
    file_noun = "file" if files == 1 else "files"
    safe = sum(1 for f in findings if f.fix is not None and f.fix.safe)
    unsafe = sum(1 for f in findings if f.fix is not None and not f.fix.safe)
    fixable = safe + unsafe if unsafe_fixes else safe
    details = f"{fixable} fixable, " if fixable else ""
    text = f"Found {len(findings)} {noun} in {files} {file_noun} ({details}{files_checked} checked)."
    if fixable:
        text += " Run with --fix to apply the fixes (--diff to preview)."
    hidden = 0 if unsafe_fixes else unsafe
    if hidden:
        text += f" {hidden} more fixable with --unsafe-fixes."
    return text


# -- progress -----------------------------------------------------------------

#: A run over at least this many files shows a progress bar (on a terminal).
PROGRESS_MIN_FILES = 20


def progress(
    items: Iterable,
    stream: Optional[IO[str]] = None,
    environ=None,
    enabled: Optional[bool] = None,
    total: Optional[int] = None,
):
    """``items`` wrapped in a tqdm progress bar on stderr when it is a
    terminal, the run has many files (``total``, else ``len(items)``) and no
    CI is detected; else ``items`` unchanged."""
    stream = stream if stream is not None else sys.stderr
    environ = os.environ if environ is None else environ
    total = len(items) if total is None else total
    if enabled is None:
        try:
            tty = stream.isatty()
        except (AttributeError, ValueError):
            tty = False
        enabled = tty and total >= PROGRESS_MIN_FILES and not environ.get("CI") and environ.get("TERM") != "dumb"
    if not enabled:
        return items
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is a dependency, but a bar is never worth failing for
        return items
    return tqdm(items, total=total, file=stream, unit="file", leave=False, dynamic_ncols=True, desc="lintorch")

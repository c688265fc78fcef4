"""Jupyter notebooks: their code cells, analysed as one program.

A notebook (``.ipynb``) is JSON in the nbformat schema: ``cells`` (nbformat
4), or ``worksheets[*].cells`` (nbformat 3), each with a ``cell_type`` and
its text in ``source`` (``input`` in nbformat 3) as a string or a list of
strings to concatenate. The notebook's language is in
``metadata.kernelspec.language`` or ``metadata.language_info.name``.

The code cells are joined, in order, into one Python module, so a loss
defined in cell 3 and used in cell 7 is one program, as it is when the
notebook runs top to bottom. IPython syntax that is not Python is replaced
line for line, so every other line keeps its number and columns:

* line magics and shell escapes (``%matplotlib inline``, ``!pip install x``,
  ``files = !ls``, ``obj?``) become ``pass`` (or ``files = ...``) at the
  same indentation;
* a cell magic (``%%time``) on the first line: for magics whose body is
  Python (``%%time``, ``%%timeit``, ``%%capture``...) only that line goes;
  any other (``%%bash``, ``%%writefile``, ``%%html``...) blanks the cell.

A cell that is still not valid Python is reported (LT000, with its cell
number) and left out, and the other cells are analysed without it, as
Jupyter would still run them.

Findings carry ``cell``: the 1-based number of the cell counting every cell
of the notebook (markdown and raw cells too), i.e. its index in ``cells``
plus one; their ``line`` and ``end_line`` count lines within that cell.
"""

import dataclasses
import json
import re
from typing import Dict, List, Optional, Sequence, Tuple, Union

from lintorch import engine, source
from lintorch.rule import Finding, Rule

#: Cell magics whose body is Python code (run, timed, captured...).
PYTHON_CELL_MAGICS = frozenset(
    {"time", "timeit", "capture", "prun", "debug", "python", "python3", "memit", "mprun", "snakeviz", "skip"}
)

_PARSER_POSITION_RE = re.compile(r"error at \d+:\d+: ")
_LINE_SPLIT_RE = re.compile(r"\r\n|\r|\n")
# `files = !ls` / `out = %timeit -o f()` / `a, b = %sx cmd`
_MAGIC_ASSIGN_RE = re.compile(
    r"^(?P<indent>\s*)(?P<targets>[A-Za-z_][\w.]*(?:\s*,\s*[A-Za-z_][\w.]*)*)\s*=\s*[!%]"
)


@dataclasses.dataclass
class Cell:
    #: 1-based position among all the notebook's cells.
    number: int
    #: The cell's original text.
    source: str


@dataclasses.dataclass
class Program:
    """The code cells of a notebook as one Python module."""

    text: str
    #: For line ``n`` (1-based) of ``text``: (cell number, line within the cell).
    line_map: List[Tuple[int, int]]
    cells: List[Cell]


def split_lines(text: str) -> List[str]:
    lines = _LINE_SPLIT_RE.split(text)
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def _cell_text(value) -> Optional[str]:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(part, str) for part in value):
        return "".join(value)
    return None


def _language(document: dict) -> Optional[str]:
    metadata = document.get("metadata")
    if not isinstance(metadata, dict):
        return None
    for key, field in (("kernelspec", "language"), ("language_info", "name")):
        table = metadata.get(key)
        if isinstance(table, dict) and isinstance(table.get(field), str):
            return table[field].lower()
    return None


def load(data: bytes) -> Union[List[Cell], source.SourceError]:
    """The code cells of a notebook (empty for a non-Python notebook)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return source.SourceError(f"not a valid notebook: not UTF-8 (byte {exc.start})")
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        return source.SourceError(f"not a valid notebook: invalid JSON: {exc.msg}", exc.lineno, exc.colno)
    except RecursionError:
        return source.SourceError("not a valid notebook: JSON nested too deeply")
    if not isinstance(document, dict):
        return source.SourceError("not a valid notebook: the top level is not a JSON object")
    language = _language(document)
    if language is not None and language not in ("python", "python3", "ipython", "ipython3"):
        return []
    if isinstance(document.get("cells"), list):
        raw_cells = document["cells"]
        key = "source"
    elif isinstance(document.get("worksheets"), list):  # nbformat 3
        raw_cells = [
            cell
            for sheet in document["worksheets"]
            if isinstance(sheet, dict) and isinstance(sheet.get("cells"), list)
            for cell in sheet["cells"]
        ]
        key = "input"
    else:
        return source.SourceError("not a valid notebook: no cells (nbformat 3 or 4 expected)")
    cells = []
    for number, cell in enumerate(raw_cells, start=1):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        text = _cell_text(cell.get(key, cell.get("source", "")))
        if text is None:
            return source.SourceError(f"not a valid notebook: cell {number} has no readable source")
        cells.append(Cell(number, text))
    return cells


# -- IPython syntax ---------------------------------------------------------


class _Scanner:
    """Just enough of Python's tokenizer to know whether a line starts a new
    logical line (not inside a string, brackets or a backslash continuation)
    and where its comment starts."""

    def __init__(self):
        self.quote: Optional[str] = None  # the open string's quote: ' " ''' """
        self.depth = 0
        self.continued = False

    @property
    def at_statement_start(self) -> bool:
        return self.quote is None and self.depth == 0 and not self.continued

    def feed(self, line: str) -> int:
        """Scan one line; return where its code ends (its comment's start)."""
        i, n = 0, len(line)
        code_end = n
        while i < n:
            char = line[i]
            if self.quote is not None:
                if char == "\\":
                    i += 2
                    continue
                if line.startswith(self.quote, i):
                    i += len(self.quote)
                    self.quote = None
                    continue
                i += 1
                continue
            if char == "#":
                code_end = i
                break
            if char in "\"'":
                triple = char * 3
                self.quote = triple if line.startswith(triple, i) else char
                i += len(self.quote)
                continue
            if char in "([{":
                self.depth += 1
            elif char in ")]}":
                self.depth = max(0, self.depth - 1)
            i += 1
        if self.quote in ("'", '"'):
            self.quote = None  # an unterminated one-line string ends with the line
        self.continued = self.quote is None and line[:code_end].rstrip().endswith("\\") and code_end == n
        return code_end


def python_lines(cell_source: str) -> List[str]:
    """The cell's lines with IPython syntax replaced (same number of lines)."""
    lines = split_lines(cell_source)
    if not lines:
        return []
    out: List[str] = []
    # IPython drops leading blank lines before looking for a cell magic.
    start = next((i for i, line in enumerate(lines) if line.strip()), len(lines))
    out.extend(lines[:start])
    first = lines[start].strip() if start < len(lines) else ""
    if first.startswith("%%"):
        name = first[2:].split(None, 1)[0] if len(first) > 2 else ""
        if name not in PYTHON_CELL_MAGICS:
            return [""] * len(lines)
        out.append("")
        start += 1
    scanner = _Scanner()
    in_magic = False  # a magic line ending in a backslash continues
    for line in lines[start:]:
        stripped = line.lstrip()
        indent = line[: len(line) - len(stripped)]
        if in_magic:
            out.append("")
            in_magic = line.rstrip().endswith("\\")
            continue
        if scanner.at_statement_start and stripped:
            if stripped[0] in "%!?":
                out.append(indent + "pass")
                in_magic = line.rstrip().endswith("\\")
                continue
            assign = _MAGIC_ASSIGN_RE.match(line)
            if assign is not None:
                out.append(f"{assign.group('indent')}{assign.group('targets')} = ...")
                in_magic = line.rstrip().endswith("\\")
                continue
            was_start = True
        else:
            was_start = False
        code_end = scanner.feed(line)
        if was_start and scanner.at_statement_start and line[:code_end].rstrip().endswith("?"):
            out.append(indent + "pass")  # `obj?` / `obj??`: IPython help
            continue
        out.append(line)
    return out


def program(cells: Sequence[Cell]) -> Program:
    lines: List[str] = []
    line_map: List[Tuple[int, int]] = []
    for cell in cells:
        for number, line in enumerate(python_lines(cell.source), start=1):
            lines.append(line)
            line_map.append((cell.number, number))
    text = "\n".join(lines) + ("\n" if lines else "")
    return Program(text, line_map, list(cells))


# -- linting ----------------------------------------------------------------


def _locate(prog: Program, line: int) -> Tuple[Optional[int], int]:
    if 1 <= line <= len(prog.line_map):
        return prog.line_map[line - 1]
    if prog.line_map and line > len(prog.line_map):
        cell, last = prog.line_map[-1]
        return cell, last + (line - len(prog.line_map))
    return None, line


def _label(prog: Program, line: int) -> str:
    """``{line0}`` in messages: ``3 of cell 7``."""
    cell, cell_line = _locate(prog, line)
    return f"{cell_line} of cell {cell}" if cell is not None else str(line)


def _to_cells(prog: Program, finding: Finding) -> Finding:
    cell, line = _locate(prog, finding.line)
    end_cell, end_line = _locate(prog, finding.end_line)
    if end_cell != cell:  # cannot happen for one node; keep the range in the start cell
        end_line, end_column = line, finding.column
    else:
        end_column = finding.end_column
    # Fixes apply to .py files only (notebooks are not rewritten), so a
    # notebook finding is never counted as fixable.
    return dataclasses.replace(finding, cell=cell, line=line, end_line=end_line, end_column=end_column, fix=None)


def lint_notebook_bytes(
    data: bytes,
    path: str,
    rules: Sequence[Rule],
    *,
    apply_noqa: bool = True,
    debug: bool = False,
) -> List[Finding]:
    cells = load(data)
    if isinstance(cells, source.SourceError):
        return [engine.error_finding(path, cells)]
    findings: List[Finding] = []
    candidates = None
    while True:
        prog = program(cells)
        encoded = prog.text.encode("utf-8")
        if candidates is None:
            candidates = engine.could_trigger(encoded, rules)
            if not candidates:
                return []
        module = source.parse(prog.text)
        if not isinstance(module, source.SourceError):
            break
        # Leave the cell that does not parse out, as Jupyter still runs the others.
        cell, line = _locate(prog, module.line)
        reason = _PARSER_POSITION_RE.sub("", module.reason)  # a position in the joined cells
        error = engine.error_finding(path, source.SourceError(reason, line, module.column))
        message = f"cannot analyse this cell, left out (the other cells were analysed): {reason}"
        findings.append(dataclasses.replace(error, cell=cell, end_line=line, message=message))
        remaining = [c for c in cells if c.number != cell]
        if cell is None or len(remaining) == len(cells):
            return findings
        cells = remaining
    found = engine.lint_module(
        module, prog.text, path, candidates, apply_noqa=apply_noqa, debug=debug, line_label=lambda n: _label(prog, n)
    )
    findings.extend(_to_cells(prog, finding) for finding in found)
    findings.sort(key=lambda f: (f.cell or 0, f.line, f.column, f.code))
    return findings


def cell_lines(data: bytes) -> Dict[int, List[str]]:
    """Cell number -> the cell's original lines (for ``--show-source``)."""
    cells = load(data)
    if isinstance(cells, source.SourceError):
        return {}
    return {cell.number: split_lines(cell.source) for cell in cells}

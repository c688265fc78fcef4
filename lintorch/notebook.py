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

* the common leading indentation of a cell (that of its first non-blank
  line) is removed, as IPython removes it before running the cell, and
  columns are mapped back.

This module is only the mapping between the notebook file, its cells and
the program: which cells are code, the program's lines, and positions in
each of them. Linting and fixing a notebook (a cell that does not parse
is reported and left out) are :mod:`lintorch.engine`'s and
:mod:`lintorch.fix`'s.

Positions in cells: ``cell`` is the 1-based number of the cell counting
every cell of the notebook (markdown and raw cells too), i.e. its index in
``cells`` plus one; lines and columns count within that cell.
"""

import dataclasses
import json
import re
from typing import Dict, List, Optional, Sequence, Tuple, Union

from lintorch import source

#: Cell magics whose body is Python code (run, timed, captured...).
PYTHON_CELL_MAGICS = frozenset(
    {"time", "timeit", "capture", "prun", "debug", "python", "python3", "memit", "mprun", "snakeviz", "skip"}
)

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
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:  # JSON may escape a lone surrogate ("\udcff"): not text
            return source.SourceError(
                f"not a valid notebook: cell {number} holds an unpaired surrogate (U+{ord(exc.object[exc.start]):04X})"
            )
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


# -- the program ---------------------------------------------------------------


@dataclasses.dataclass
class CellCode:
    """A code cell as Python: IPython syntax replaced, common indentation removed."""

    cell: Cell
    lines: List[str]
    #: Per line: how many leading characters were removed (to map columns back).
    offsets: List[int]

    @property
    def number(self) -> int:
        return self.cell.number

    @property
    def text(self) -> str:
        return "\n".join(self.lines) + ("\n" if self.lines else "")

    def column(self, line: int, column: int) -> int:
        """A 1-based column of line ``line`` of :attr:`text`, in the cell."""
        return column + (self.offsets[line - 1] if 1 <= line <= len(self.offsets) else 0)


def cell_code(cell: Cell) -> CellCode:
    """IPython's order: leading blank lines are skipped, the first other
    line's indentation is removed from every line that starts with it,
    then magics and shell escapes are replaced."""
    lines = split_lines(cell.source)
    first = next((line for line in lines if line.strip()), "")
    indent = first[: len(first) - len(first.lstrip(" \t"))]
    offsets = [len(indent) if indent and line.startswith(indent) else 0 for line in lines]
    dedented = [line[offset:] for line, offset in zip(lines, offsets)]
    return CellCode(cell, python_lines("\n".join(dedented)) if dedented else [], offsets)


@dataclasses.dataclass
class Program:
    """Code cells joined, in order, into one Python module."""

    text: str
    #: For line ``n`` (1-based) of ``text``: (cell number, line within the cell).
    line_map: List[Tuple[int, int]]
    cells: List[CellCode]

    def _offset(self, line: int) -> int:
        if not 1 <= line <= len(self.line_map):
            return 0
        cell, cell_line = self.line_map[line - 1]
        code = next(c for c in self.cells if c.number == cell)
        return code.offsets[cell_line - 1]

    def locate(self, line: int) -> Tuple[Optional[int], int]:
        """(cell number, line within the cell) of a program line."""
        if 1 <= line <= len(self.line_map):
            return self.line_map[line - 1]
        if self.line_map and line > len(self.line_map):
            cell, last = self.line_map[-1]
            return cell, last + (line - len(self.line_map))
        return None, line

    def position(self, line: int, column: int) -> Tuple[Optional[int], int, int]:
        """(cell number, line, column) in the cell of a program position."""
        cell, cell_line = self.locate(line)
        return cell, cell_line, column + self._offset(line)

    def label(self, line: int) -> str:
        """A program line as messages name it: ``3 of cell 7``."""
        cell, cell_line = self.locate(line)
        return f"{cell_line} of cell {cell}" if cell is not None else str(line)


def program(cells: Sequence[CellCode]) -> Program:
    lines: List[str] = []
    line_map: List[Tuple[int, int]] = []
    for code in cells:
        for number, line in enumerate(code.lines, start=1):
            lines.append(line)
            line_map.append((code.number, number))
    text = "\n".join(lines) + ("\n" if lines else "")
    return Program(text, line_map, list(cells))


def cell_lines(data: bytes) -> Dict[int, List[str]]:
    """Cell number -> the cell's original lines (for ``--show-source``)."""
    cells = load(data)
    if isinstance(cells, source.SourceError):
        return {}
    return {cell.number: split_lines(cell.source) for cell in cells}


def cell_sources(prog: Program, new_text: str) -> Optional[Dict[int, List[str]]]:
    """Cell number -> new lines, for the cells whose lines changed when the
    program became ``new_text``; None when a change cannot be put back (it
    spans cells or touches a line rewritten from IPython syntax)."""
    import difflib

    old_lines = prog.text.split("\n")[:-1] if prog.text else []
    new_lines = split_lines(new_text)
    originals = {code.number: split_lines(code.cell.source) for code in prog.cells}
    indents = {code.number: _indent(code) for code in prog.cells}
    result: Dict[int, List[str]] = {code.number: [] for code in prog.cells}
    changed = set()
    matcher = difflib.SequenceMatcher(None, old_lines, new_lines, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            for i in range(i1, i2):
                cell, line = prog.line_map[i]
                result[cell].append(originals[cell][line - 1])
            continue
        old = [prog.line_map[i] for i in range(i1, i2)]
        cells = {cell for cell, _ in old}
        if not cells:  # a pure insertion belongs to the line before it
            anchor = prog.line_map[i1 - 1] if i1 > 0 else prog.line_map[0]
            cells = {anchor[0]}
        if len(cells) != 1:
            return None
        offset = prog._offset
        if any(originals[cell][line - 1][offset(i + 1):] != old_lines[i] for (cell, line), i in zip(old, range(i1, i2))):
            return None  # the edit touches a line rewritten from IPython syntax
        (cell,) = cells
        result[cell].extend(indents[cell] + line if line.strip() else line for line in new_lines[j1:j2])
        changed.add(cell)
    return {number: lines for number, lines in result.items() if number in changed}


def _indent(code: CellCode) -> str:
    """The indentation :func:`cell_code` removed from the cell's lines."""
    for line, offset in zip(split_lines(code.cell.source), code.offsets):
        if offset:
            return line[:offset]
    return ""


# -- rewriting the .ipynb file ----------------------------------------------------
#
# A notebook is rewritten only when its JSON layout is one json.dumps
# reproduces byte for byte (nbformat and Jupyter write indent=1 with sorted
# keys), so nothing but the edited cells' sources changes in the file.

_LAYOUTS = [
    {"indent": indent, "sort_keys": sort_keys, "ensure_ascii": ascii_only, "separators": (",", ": ")}
    for indent in (1, 2, 4)
    for sort_keys in (True, False)
    for ascii_only in (False, True)
]


def _layout(text: str, document) -> Optional[dict]:
    for layout in _LAYOUTS:
        dumped = json.dumps(document, **layout)
        if dumped + "\n" == text or dumped == text:
            return layout
    return None


def _code_cell_dicts(document: dict) -> Tuple[List[dict], str]:
    if isinstance(document.get("cells"), list):
        return list(document["cells"]), "source"
    cells = [cell for sheet in document.get("worksheets", []) for cell in sheet.get("cells", [])]
    return cells, "input"


def _document(data: bytes) -> Optional[Tuple[str, dict, dict]]:
    """(text, document, layout) of a notebook lintorch can rewrite, or None."""
    try:
        text = data.decode("utf-8-sig")
        document = json.loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not isinstance(document, dict):
        return None
    layout = _layout(text, document)
    return None if layout is None else (text, document, layout)


def rewritable(data: bytes) -> bool:
    """Whether :func:`with_cell_sources` can rewrite this notebook."""
    return _document(data) is not None


def with_cell_sources(data: bytes, cells: Sequence[Cell], new_sources: Dict[int, List[str]]) -> Optional[str]:
    """The notebook's text with the given cells' sources replaced (each a
    list of lines), in the file's own JSON layout; None if its layout is
    not one lintorch can reproduce."""
    loaded = _document(data)
    if loaded is None:
        return None
    text, document, layout = loaded
    raw_cells, key = _code_cell_dicts(document)
    by_number = {cell.number: cell for cell in cells}
    for number, lines in new_sources.items():
        raw = raw_cells[number - 1]
        ending = "\n" if by_number[number].source.endswith("\n") else ""
        joined = "\n".join(lines) + ending
        field_name = key if key in raw else "source"
        raw[field_name] = joined if isinstance(raw.get(field_name), str) else joined.splitlines(keepends=True)
    return json.dumps(document, **layout) + ("\n" if text.endswith("\n") else "")


# -- positions in the .ipynb file itself -------------------------------------
#
# Tools that know only files (GitHub code scanning and annotations) need a
# line of the .ipynb JSON. In nbformat's layout every source line of a cell is
# one JSON string on its own line, so a finding's (cell, line, column) maps to
# a (line, column) of the file.

_MARKER = "lintorch-source-line-{}-{}"


class FilePositions:
    """Maps (cell, line, column) to (line, column) in the notebook file."""

    def __init__(self, lines: Dict[Tuple[int, int], int], file_lines: List[str], ensure_ascii: bool):
        self._lines = lines
        self._file_lines = file_lines
        self._ensure_ascii = ensure_ascii

    def position(self, cell: int, line: int, column: int, source_line: Optional[str]) -> Optional[Tuple[int, int]]:
        file_line = self._lines.get((cell, line))
        if file_line is None:
            return None
        raw = self._file_lines[file_line - 1]
        quote = raw.find('"')
        if quote < 0 or source_line is None:
            return file_line, 1
        prefix = source_line[: max(column - 1, 0)]
        escaped = json.dumps(prefix, ensure_ascii=self._ensure_ascii)[1:-1]
        return file_line, quote + 1 + len(escaped) + 1


def file_positions(data: bytes) -> Optional[FilePositions]:
    """Positions in the file, when its layout is nbformat's (else None)."""
    loaded = _document(data)
    if loaded is None:
        return None
    text, marked, layout = loaded
    raw_cells, key = _code_cell_dicts(marked)
    for number, cell in enumerate(raw_cells, start=1):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        field_name = key if key in cell else "source"
        parts = cell.get(field_name)
        if not isinstance(parts, list) or not all(isinstance(p, str) for p in parts):
            continue
        # one element per line: each ends with its newline, only the last may not
        if any("\n" in p[:-1] or "\r" in p for p in parts) or any(not p.endswith("\n") for p in parts[:-1]):
            continue
        cell[field_name] = [_MARKER.format(number, i + 1) for i in range(len(parts))]
    dumped = json.dumps(marked, **layout).split("\n")
    lines: Dict[Tuple[int, int], int] = {}
    pattern = re.compile(r"lintorch-source-line-(\d+)-(\d+)")
    for index, row in enumerate(dumped, start=1):
        match = pattern.search(row)
        if match:
            lines[(int(match.group(1)), int(match.group(2)))] = index
    return FilePositions(lines, text.split("\n"), layout["ensure_ascii"])

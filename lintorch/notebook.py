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

from lintorch import engine, registry, source
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
    return dataclasses.replace(finding, cell=cell, line=line, end_line=end_line, end_column=end_column)


def _parsed_program(cells: List[Cell], path: str) -> Tuple[Program, Optional["cst.Module"], List[Finding]]:
    """The program of the cells that parse, its tree (None when none is
    left), and an LT000 finding for each cell left out."""
    findings: List[Finding] = []
    while True:
        prog = program(cells)
        module = source.parse(prog.text)
        if not isinstance(module, source.SourceError):
            return prog, module, findings
        # Leave the cell that does not parse out, as Jupyter still runs the others.
        cell, line = _locate(prog, module.line)
        reason = _PARSER_POSITION_RE.sub("", module.reason)  # a position in the joined cells
        error = engine.error_finding(path, source.SourceError(reason, line, module.column))
        message = f"cannot analyse this cell, left out (the other cells were analysed): {reason}"
        findings.append(dataclasses.replace(error, cell=cell, end_line=line, message=message))
        remaining = [c for c in cells if c.number != cell]
        if cell is None or len(remaining) == len(cells):
            return prog, None, findings
        cells = remaining


def program_tree(data: bytes, path: str):
    """``(text, tree, line label)`` of a notebook's code, for another file's
    analysis that imports nothing from it but is called from it; None when
    it cannot be read."""
    cells = load(data)
    if isinstance(cells, source.SourceError):
        return None
    prog, module, _ = _parsed_program(cells, path)
    return (prog.text, module, lambda n: _label(prog, n)) if module is not None else None


def lint_notebook_bytes(
    data: bytes,
    path: str,
    rules: Sequence[Rule],
    *,
    apply_noqa: bool = True,
    debug: bool = False,
    project=None,
) -> List[Finding]:
    cells = load(data)
    if isinstance(cells, source.SourceError):
        return [engine.error_finding(path, cells)]
    candidates = engine.could_trigger(program(cells).text.encode("utf-8"), rules)
    if project is not None and len(candidates) < len(rules):
        candidates = project.could_trigger(path, candidates, rules)
    if not candidates:
        return []
    prog, module, findings = _parsed_program(cells, path)
    if module is None:
        return findings
    found = engine.lint_module(
        module, prog.text, path, candidates, apply_noqa=apply_noqa, debug=debug, line_label=lambda n: _label(prog, n),
        project=project,
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


# -- fixing -----------------------------------------------------------------
#
# Fixes are computed on the joined program (a fix may need several cells'
# context) and the changed lines are put back into their cells. The notebook
# is rewritten only when its JSON layout is one json.dumps reproduces byte for
# byte (nbformat and Jupyter write indent=1 with sorted keys), so nothing but
# the edited cells' sources changes in the file.

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


def _cell_sources(prog: Program, new_text: str) -> Optional[Dict[int, List[str]]]:
    """Cell number -> new lines, for the cells whose lines changed; None when
    a change cannot be put back (it spans cells or touches IPython syntax)."""
    import difflib

    old_lines = prog.text.split("\n")[:-1] if prog.text else []
    new_lines = split_lines(new_text)
    originals = {cell.number: split_lines(cell.source) for cell in prog.cells}
    result: Dict[int, List[str]] = {cell.number: [] for cell in prog.cells}
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
        if any(originals[cell][line - 1] != old_lines[i] for (cell, line), i in zip(old, range(i1, i2))):
            return None  # the edit touches a line rewritten from IPython syntax
        (cell,) = cells
        result[cell].extend(new_lines[j1:j2])
        changed.add(cell)
    return {number: lines for number, lines in result.items() if number in changed}


def fix_notebook_bytes(data: bytes, path: str, rules: Sequence[Rule], *, unsafe: bool = False, keep=None, debug=False):
    """Fix a notebook's code cells; see :func:`lintorch.fix.fix_bytes`."""
    from lintorch import fix

    outcome = fix.FixOutcome(path, data)
    keep = keep or (lambda finding: True)

    def lint_only(reason: Optional[str] = None):
        outcome.remaining = [f for f in lint_notebook_bytes(data, path, rules, debug=debug) if keep(f)]
        if reason is not None and any(f.code != registry.UNPARSABLE_CODE for f in outcome.remaining):
            outcome.skipped = reason
        return outcome

    cells = load(data)
    if isinstance(cells, source.SourceError) or not cells:
        return lint_only()
    text = data.decode("utf-8-sig")
    outcome.has_bom = data.startswith(b"\xef\xbb\xbf")
    document = json.loads(text)
    layout = _layout(text, document)
    if layout is None:
        return lint_only("notebook not fixed: its JSON layout is not one lintorch can rewrite unchanged")
    prog = program(cells)
    if isinstance(source.parse(prog.text), source.SourceError):
        return lint_only("notebook not fixed: a code cell does not parse")
    fixed = fix.fix_bytes(prog.text.encode("utf-8"), path, rules, unsafe=unsafe, keep=keep, debug=debug)
    outcome.dropped = [(_to_cells(prog, f), reason) for f, reason in fixed.dropped]
    if not fixed.changed:
        return lint_only()
    new_sources = _cell_sources(prog, fixed.text)
    if new_sources is None:
        return lint_only("notebook not fixed: a fix spans cells or IPython syntax")
    raw_cells, key = _code_cell_dicts(document)
    by_number = {cell.number: cell for cell in cells}
    for number, lines in new_sources.items():
        raw = raw_cells[number - 1]
        ending = "\n" if by_number[number].source.endswith("\n") else ""
        joined = "\n".join(lines) + ending
        field_name = key if key in raw else "source"
        raw[field_name] = joined if isinstance(raw.get(field_name), str) else joined.splitlines(keepends=True)
    new_text = json.dumps(document, **layout) + ("\n" if text.endswith("\n") else "")
    outcome.original_text, outcome.text = text, new_text
    outcome.applied = [_to_cells(prog, f) for f in fixed.applied]
    outcome.cell_diff = _cells_diff(path, by_number, new_sources)
    new_data = outcome.new_bytes()
    outcome.remaining = [f for f in lint_notebook_bytes(new_data, path, rules, debug=debug) if keep(f)]
    return outcome


def _cells_diff(path: str, cells: Dict[int, Cell], new_sources: Dict[int, List[str]]) -> str:
    import difflib

    out = []
    for number in sorted(new_sources):
        before = [line + "\n" for line in split_lines(cells[number].source)]
        after = [line + "\n" for line in new_sources[number]]
        name = f"{path}:cell {number}"
        out.extend(difflib.unified_diff(before, after, fromfile=f"a/{name}", tofile=f"b/{name}"))
    return "".join(out)


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
    import copy

    try:
        text = data.decode("utf-8-sig")
        document = json.loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not isinstance(document, dict):
        return None
    layout = _layout(text, document)
    if layout is None:
        return None
    marked = copy.deepcopy(document)
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

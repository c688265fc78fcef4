"""Turning raw bytes into a libcst tree, or into a clear reason why not.

Every failure here becomes an LT000 finding with a position; nothing raises.
"""

import ast
import codecs
import contextlib
import io
import os
import re
import sys
import tokenize
import warnings
from dataclasses import dataclass
from typing import Iterator, List, Optional, Tuple, Union

import libcst as cst


@dataclass(frozen=True)
class SourceError:
    """Why a file could not be analysed, and where (1-based line/column)."""

    reason: str
    line: int = 1
    column: int = 1


@dataclass(frozen=True)
class DecodedSource:
    text: str
    encoding: str
    has_bom: bool


# Python's line ends (CRLF, CR, LF), as libcst and CPython's tokenizer see
# them; str.splitlines() also splits on form feeds and U+2028, Python does not.
_NEWLINE_RE = re.compile(r"\r\n|\r|\n")
_NEWLINE_BYTES_RE = re.compile(rb"\r\n|\r|\n")
_COOKIE_RE = re.compile(rb"^[ \t\f]*#.*?coding[:=][ \t]*([-\w.]+)")


def split_lines(text: str) -> List[str]:
    """The source's lines, split where Python splits them."""
    return _NEWLINE_RE.split(text)


def _position_of_offset(data: bytes, offset: int) -> Tuple[int, int]:
    line, line_start = 1, 0
    for match in _NEWLINE_BYTES_RE.finditer(data, 0, offset):
        line, line_start = line + 1, match.end()
    column = len(data[line_start:offset].decode("utf-8", errors="replace")) + 1
    return line, column


def _encoding_error(data: bytes, exc: SyntaxError) -> SourceError:
    """tokenize.detect_encoding's complaints, in words a user can act on."""
    message = str(exc.msg if hasattr(exc, "msg") else exc)
    cookie_line, cookie = 1, None
    for number, line in enumerate(_NEWLINE_BYTES_RE.split(data, 2)[:2], start=1):
        match = _COOKIE_RE.match(line)
        if match:
            cookie_line, cookie = number, match.group(1).decode("ascii", "replace")
            break
    if message.startswith("unknown encoding"):
        return SourceError(f"unknown encoding {cookie!r} in the coding cookie", cookie_line)
    if message.startswith("encoding problem") and data.startswith(codecs.BOM_UTF8):
        return SourceError(
            f"the file starts with a UTF-8 byte order mark but its coding cookie says {cookie!r}", cookie_line
        )
    if message.startswith("invalid or missing encoding declaration"):
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as error:
            line, column = _position_of_offset(data, error.start)
            byte = data[error.start : error.start + 1].hex()
            return SourceError(
                f"not valid utf-8 (byte 0x{byte}) and no coding cookie names another encoding (binary file?)",
                line,
                column,
            )
    return SourceError(f"cannot determine encoding: {message}", cookie_line)


def decode(data: bytes) -> Union[DecodedSource, SourceError]:
    """Decode per PEP 263: BOM, then a coding cookie, else UTF-8."""
    if b"\x00" in data:  # CPython refuses null bytes in source whatever the encoding
        line, column = _position_of_offset(data, data.index(b"\x00"))
        return SourceError("file contains a null byte (binary file?)", line, column)
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    except SyntaxError as exc:
        return _encoding_error(data, exc)
    has_bom = data.startswith(codecs.BOM_UTF8)
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        line, column = _position_of_offset(data, exc.start)
        byte = data[exc.start : exc.start + 1].hex()
        return SourceError(f"not valid {exc.encoding}: byte 0x{byte} cannot be decoded", line, column)
    except LookupError:
        return SourceError(f"unknown encoding {encoding!r} in the coding cookie")
    except (UnicodeError, ValueError) as exc:  # codecs such as 'undefined' always fail
        return SourceError(f"cannot decode with the {encoding!r} codec named in the coding cookie: {exc}")
    if text.startswith("\ufeff"):
        text = text[1:]
    if "\x00" in text:
        lines = split_lines(text[: text.index("\x00")])
        line, column = len(lines), len(lines[-1]) + 1
        return SourceError("file contains a null byte (binary file?)", line, column)
    return DecodedSource(text, "utf-8" if encoding == "utf-8-sig" else encoding, has_bom)


# libcst's native parser recurses in Rust; a deeply nested expression can make
# the conversion to Python objects hit the interpreter's recursion limit.
_PARSE_RECURSION_LIMIT = 10_000


#: Expression nesting beyond which a file is reported, not analysed. libcst's
#: parser is superlinear in nesting depth (a 1,000-term ``1+1+...`` chain
#: parses in about a second, 3,000 terms take half a minute) and CPython
#: itself refuses about 3,000 levels, so real code never comes near this.
MAX_NESTING = 1000
#: CPython's tokenizer refuses more nested brackets than this.
_MAX_BRACKETS = 200
_SHAPE_RE = re.compile(
    r"""
    # Every token starts with one of these characters: saying so first lets
    # the scan skip the text between tokens without trying each alternative
    # at every character (the scan takes a third of the time).
    (?=["'\#\\\r\n()\[\]{},l])
    (?:
    (?P<skip>                          # strings and comments: brackets inside do not count
        \"\"\"(?:[^"\\]|\\.|"(?!""))*(?:\"\"\"|\Z)
      | '''(?:[^'\\]|\\.|'(?!''))*(?:'''|\Z)
      | "(?:[^"\\\r\n]|\\.)*"?
      | '(?:[^'\\\r\n]|\\.)*'?
      | \#[^\r\n]*
    )
    | (?P<join>\\(?:\r\n|\r|\n))      # backslash continuation
    | (?P<newline>\r\n|\r|\n)
    | (?P<open>[(\[{])
    | (?P<close>[)\]}])
    | (?P<comma>,)
    | (?P<binder>\blambda\b)          # commas after it separate no siblings
    )
    """,
    re.VERBOSE | re.DOTALL,
)


def _count_newlines(text: str) -> int:
    return text.count("\n") + text.count("\r") - text.count("\r\n")


def _shape(text: str) -> Tuple[int, int, int, int]:
    """A cheap upper bound on expression nesting, from one regex scan of the
    text: (the bound for the deepest logical line and its line; the deepest
    bracket nesting and its line). The scan only decides whether the exact
    check (CPython's parser and a walk of its tree) is needed.

    Each level of an expression owns at least one character outside
    strings, comments and its nested brackets (an operator, a name, a
    string counted as one), so a bracketed region nests at most as deep as
    its longest comma-separated element plus its deepest inner region. The
    +2 per region covers the region's own node and the tuple its commas may
    form. The commas of ``lambda a, b: ...`` do not separate siblings (a
    chain of such lambdas nests once per lambda), so after ``lambda`` a
    region's commas stop splitting it. (A comprehension's ``for a, b in``
    clauses nest as clauses, not expressions: CPython's tree, which the
    exact check walks, keeps them flat, and libcst parses thousands fast.)"""
    line = first_line = bound_line = deepest_line = 1
    bound = deepest = 0
    # One frame per open bracket: [characters of the current element at
    # this level, deepest inner region in it, best finished element,
    # whether commas have stopped separating siblings]
    frame = [0, 0, 0, False]
    stack: List[list] = []
    position = 0
    for match in _SHAPE_RE.finditer(text):
        kind = match.lastgroup
        start = match.start()
        frame[0] += start - position
        position = match.end()
        if kind == "open":
            frame[0] += 1  # a call or subscript nests once per bracket: a[0][0]...
            stack.append(frame)
            frame = [0, 0, 0, False]
            if len(stack) > deepest:
                deepest, deepest_line = len(stack), line
        elif kind == "close":
            if stack:
                region = max(frame[2], frame[0] + frame[1]) + 2
                frame = stack.pop()
                if region > frame[1]:
                    frame[1] = region
        elif kind == "comma":
            if not frame[3]:
                if frame[0] + frame[1] > frame[2]:
                    frame[2] = frame[0] + frame[1]
                frame[0] = frame[1] = 0
        elif kind == "binder":
            frame[0] += position - start
            frame[3] = True
        elif kind == "skip":
            token = match.group()
            if token[0] != "#":
                line += _count_newlines(token)
                # f-strings hold expressions: their characters count
                f_string = "f" in text[max(start - 2, 0) : start].lower()
                frame[0] += len(token) if f_string else 1
        elif kind == "join":
            line += 1
        else:  # newline
            if not stack:
                logical = max(frame[2], frame[0] + frame[1]) + 1
                if logical > bound:
                    bound, bound_line = logical, first_line
                frame = [0, 0, 0, False]
                first_line = line + 1
            line += 1
    frame[0] += len(text) - position
    while stack:  # unclosed brackets at the end of the file
        region = max(frame[2], frame[0] + frame[1]) + 2
        frame = stack.pop()
        frame[1] = max(frame[1], region)
    logical = max(frame[2], frame[0] + frame[1]) + 1
    if logical > bound:
        bound, bound_line = logical, first_line
    return bound, bound_line, deepest, deepest_line


def _too_deep(text: str) -> Optional[SourceError]:
    """An error for code nested too deeply to analyse in bounded time, or
    None. Costs one regex scan; CPython's parser (about a sixth of libcst's
    time) and a walk of its tree run only where the scan's bound is high."""
    bound, bound_line, deepest, deepest_line = _shape(text)
    if bound <= MAX_NESTING and deepest <= _MAX_BRACKETS:
        return None
    try:
        tree = cpython_parse(text)
    except SyntaxError as error:
        # libcst may know newer syntax than this interpreter, but its native
        # parser overflows the C stack (SIGSEGV) on very deep nesting, so
        # code this long or deep that CPython rejects is not handed to it.
        return SourceError(f"syntax error: {error.msg}", error.lineno or 1, max(error.offset or 1, 1))
    except (RecursionError, MemoryError):
        line = deepest_line if deepest > _MAX_BRACKETS else bound_line
        return SourceError("expression nested too deeply to analyse (CPython cannot compile it either)", line)
    except ValueError:
        return None
    node = _node_deeper_than(tree, MAX_NESTING)
    if node is None:
        return None
    line = getattr(node, "lineno", 1)
    source_line = (split_lines(text)[line - 1:line] or [""])[0]
    column = len(source_line.encode("utf-8")[: getattr(node, "col_offset", 0)].decode("utf-8", "replace")) + 1
    return SourceError(f"expression nested more than {MAX_NESTING} levels deep; too deep to analyse", line, column)


def _node_deeper_than(tree: ast.AST, limit: int) -> Optional[ast.AST]:
    """The outermost expression of a statement that nests more than
    ``limit`` expressions deep, or None."""
    stack: List[Tuple[ast.AST, int, Optional[ast.AST]]] = [(tree, 0, None)]
    pop, push, children, expr = stack.pop, stack.append, ast.iter_child_nodes, ast.expr
    while stack:
        node, depth, root = pop()
        if isinstance(node, ast.BoolOp):  # flat here, one level per operator in libcst
            depth += len(node.values) - 1
        if depth > limit:
            return root
        for child in children(node):
            if isinstance(child, expr):
                push((child, depth + 1, root or child))
            else:
                push((child, depth, root))
    return None


@contextlib.contextmanager
def deep_recursion() -> Iterator[None]:
    """Raise the recursion limit for work on deep trees (libcst's recursive
    code generation for positions, the index walk of nested blocks)."""
    old_limit = sys.getrecursionlimit()
    if old_limit < _PARSE_RECURSION_LIMIT:
        sys.setrecursionlimit(_PARSE_RECURSION_LIMIT)
    try:
        yield
    finally:
        if old_limit < _PARSE_RECURSION_LIMIT:
            sys.setrecursionlimit(old_limit)


#: libcst needs 0.5 to 1 GB of memory and about half a minute per MB of
#: source (PERF-NOTES; dense generated data is the worst case). The largest
#: hand-written file in torch's wheel is 1.4 MB. Larger files are reported,
#: not analysed, so that one generated file cannot exhaust a CI runner.
MAX_SOURCE_CHARS = 2 * 1024 * 1024


def parse(text: str) -> Union[cst.Module, SourceError]:
    if len(text) > MAX_SOURCE_CHARS:
        return SourceError(
            f"file too large to analyse ({len(text) / 1e6:.1f} million characters; "
            f"the limit is {MAX_SOURCE_CHARS / 1e6:.1f} million): exclude it if it is generated"
        )
    too_deep = _too_deep(text)
    if too_deep is not None:
        return too_deep
    old_limit = sys.getrecursionlimit()
    if old_limit < _PARSE_RECURSION_LIMIT:
        sys.setrecursionlimit(_PARSE_RECURSION_LIMIT)
    try:
        with _nodes_unvalidated():
            return cst.parse_module(text)
    except cst.ParserSyntaxError as exc:
        return _syntax_error(text, exc)
    except RecursionError:
        return SourceError("expression nested too deeply to analyse")
    except MemoryError:
        return SourceError("file too large to analyse")
    except Exception as exc:  # libcst raises assorted errors on exotic input
        return SourceError(f"cannot parse: {type(exc).__name__}: {exc}")
    finally:
        if old_limit < _PARSE_RECURSION_LIMIT:
            sys.setrecursionlimit(old_limit)


def _skip_validation(node: cst.CSTNode) -> None:
    pass


#: libcst's own hook, kept once: restoring this (not whatever a concurrent
#: parse in another thread left in place) can never leave validation off.
_VALIDATE = cst.CSTNode.__dict__.get("__post_init__")


@contextlib.contextmanager
def _nodes_unvalidated() -> Iterator[None]:
    """Build the parser's nodes without libcst's per-node ``_validate()``.

    Every node's dataclass ``__post_init__`` re-checks invariants (regex
    matches on each whitespace and name) that the native parser already
    guarantees: 13% of parse time on the benchmark corpus. Nodes built
    outside a parse (fixes, tests) and trees from libcst's pure-Python
    parser (``LIBCST_PARSER_TYPE=pure``) are still validated."""
    if _VALIDATE is None or os.environ.get("LIBCST_PARSER_TYPE") == "pure":
        yield
        return
    cst.CSTNode.__post_init__ = _skip_validation  # type: ignore[assignment]
    try:
        yield
    finally:
        cst.CSTNode.__post_init__ = _VALIDATE  # type: ignore[assignment]


def cpython_parse(text: str) -> ast.Module:
    """``ast.parse`` without its SyntaxWarnings (``1if x else 2``, invalid
    escapes on 3.12) reaching lintorch's stderr."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ast.parse(text)


def _syntax_error(text: str, exc: "cst.ParserSyntaxError") -> SourceError:
    """Prefer CPython's own message and position (the ones users know from
    tracebacks); fall back to libcst's where CPython accepts the code."""
    try:
        cpython_parse(text)
    except SyntaxError as error:
        line = error.lineno or 1
        column = error.offset or 1
        return SourceError(f"syntax error: {error.msg}", line, max(column, 1))
    except (RecursionError, MemoryError, ValueError):
        pass
    message = str(exc.message).strip().splitlines()[0] if exc.message else "invalid syntax"
    return SourceError(f"syntax error: {message}", exc.raw_line, exc.raw_column + 1)


def load(data: bytes) -> Tuple[Optional[DecodedSource], Union[cst.Module, SourceError]]:
    decoded = decode(data)
    if isinstance(decoded, SourceError):
        return None, decoded
    return decoded, parse(decoded.text)

"""Turning raw bytes into a libcst tree, or into a clear reason why not.

Every failure here becomes an LT000 finding with a position; nothing raises.
"""

import ast
import codecs
import io
import sys
import tokenize
from dataclasses import dataclass
from typing import Optional, Tuple, Union

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


def _position_of_offset(data: bytes, offset: int) -> Tuple[int, int]:
    line = data.count(b"\n", 0, offset) + 1
    line_start = data.rfind(b"\n", 0, offset) + 1
    column = len(data[line_start:offset].decode("utf-8", errors="replace")) + 1
    return line, column


def decode(data: bytes) -> Union[DecodedSource, SourceError]:
    """Decode per PEP 263: BOM, then a coding cookie, else UTF-8."""
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    except SyntaxError as exc:
        return SourceError(f"cannot determine encoding: {exc.msg if hasattr(exc, 'msg') else exc}")
    has_bom = data.startswith(codecs.BOM_UTF8)
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        line, column = _position_of_offset(data, exc.start)
        byte = data[exc.start : exc.start + 1].hex()
        return SourceError(f"not valid {exc.encoding}: byte 0x{byte} cannot be decoded", line, column)
    except LookupError:
        return SourceError(f"unknown encoding {encoding!r} in the coding cookie")
    if text.startswith("\ufeff"):
        text = text[1:]
    if "\x00" in text:
        offset = text.index("\x00")
        line = text.count("\n", 0, offset) + 1
        column = offset - (text.rfind("\n", 0, offset) + 1) + 1
        return SourceError("file contains a null byte (binary file?)", line, column)
    return DecodedSource(text, "utf-8" if encoding == "utf-8-sig" else encoding, has_bom)


# libcst's native parser recurses in Rust; a deeply nested expression can make
# the conversion to Python objects hit the interpreter's recursion limit.
_PARSE_RECURSION_LIMIT = 10_000


def parse(text: str) -> Union[cst.Module, SourceError]:
    old_limit = sys.getrecursionlimit()
    if old_limit < _PARSE_RECURSION_LIMIT:
        sys.setrecursionlimit(_PARSE_RECURSION_LIMIT)
    try:
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


def _syntax_error(text: str, exc: "cst.ParserSyntaxError") -> SourceError:
    """Prefer CPython's own message and position (the ones users know from
    tracebacks); fall back to libcst's where CPython accepts the code."""
    try:
        ast.parse(text)
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

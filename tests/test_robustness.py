"""Bad input never crashes a run and never hides other files' findings
(issue 8): every case has a documented outcome, an LT000 finding with a
position or a clear error, the contract's exit code, and no traceback.

Most cases run in-process for speed; each category also runs the real CLI
in a subprocess once to check stderr and the exit code end to end.
"""

import json
import os
import subprocess
import sys
import time

import pytest

from conftest import REPO
from lintorch import engine, registry, source
from lintorch.rule import Report

# LT102 at 4:18 (the criterion call's first argument).
BUG = (
    "import torch\n"
    "import torch.nn as nn\n"
    "criterion = nn.CrossEntropyLoss()\n"
    "loss = criterion(torch.softmax(logits, dim=1), y)\n"
)
BUG_AT = (4, 18)
ONE_LINE_BUG = "import torch, torch.nn.functional as F; loss = F.cross_entropy(torch.softmax(x, dim=1), y)\n"


def lint(data, path="t.py", debug=False):
    if isinstance(data, str):
        data = data.encode("utf-8")
    rules = registry.instantiate(registry.resolve_enabled(["ALL"], []))
    return engine.lint_bytes(data, path, rules, debug=debug)


def summary(findings):
    return [(f.code, f.line, f.column) for f in findings]


def only_lt000(findings):
    assert [f.code for f in findings] == ["LT000"], summary(findings)
    return findings[0]


def cli(*args, cwd, env=None, timeout=120):
    """The CLI in a fresh process: (exit code, stdout, stderr)."""
    full_env = dict(os.environ, **(env or {}))
    result = subprocess.run(
        [sys.executable, "-m", "lintorch", "--no-cache", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, result.stdout, result.stderr


# -- decoding ---------------------------------------------------------------


@pytest.mark.parametrize(
    "data, line, column, words",
    [
        pytest.param(BUG.encode() + b"x = '\xff\xfe'\n", 5, 6, "not valid utf-8: byte 0xff", id="invalid-utf8"),
        pytest.param(b"x = '\xe9'  # no cookie\n" + BUG.encode(), 1, 6, "no coding cookie", id="latin1-without-cookie"),
        pytest.param(b"# coding: klingon\n" + BUG.encode(), 1, 1, "unknown encoding 'klingon'", id="unknown-codec"),
        pytest.param(
            b"#!/usr/bin/env python\n# -*- coding: klingon -*-\n" + BUG.encode(),
            2,
            1,
            "unknown encoding 'klingon' in the coding cookie",
            id="unknown-codec-after-shebang",
        ),
        pytest.param(
            b"# coding: undefined\n" + BUG.encode(), 1, 1, "'undefined' codec", id="codec-that-always-fails"
        ),
        pytest.param(b"# coding: rot13\n" + BUG.encode(), 1, 1, "unknown encoding 'rot13'", id="not-a-text-codec"),
        pytest.param(
            b"\xef\xbb\xbf# coding: latin-1\n" + BUG.encode(), 1, 1, "byte order mark", id="bom-with-other-cookie"
        ),
        pytest.param(BUG.encode() + b"x = 1\x00\n", 5, 6, "null byte", id="null-byte"),
        pytest.param(bytes(range(256)) * 40, 1, 1, "binary file?", id="binary"),
        pytest.param(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\x00" * 50, 3, 1, "null byte", id="png-named-py"),
    ],
)
def test_undecodable_files_are_lt000_with_position(data, line, column, words):
    finding = only_lt000(lint(data))
    assert words in finding.message
    assert (finding.line, finding.column) == (line, column)
    assert finding.message.startswith("cannot analyse this file: ")


@pytest.mark.parametrize(
    "data, at",
    [
        pytest.param(b"# -*- coding: latin-1 -*-\n# caf\xe9\n" + BUG.encode(), (6, 18), id="latin1-cookie"),
        pytest.param(b"\xef\xbb\xbf" + BUG.encode(), BUG_AT, id="bom"),
        pytest.param(b"\xef\xbb\xbf" + ONE_LINE_BUG.encode(), (1, 64), id="bom-column-not-shifted"),
        pytest.param(b"\xef\xbb\xbf# coding: utf-8\n" + BUG.encode(), (5, 18), id="bom-with-utf8-cookie"),
        # columns count characters, not bytes
        pytest.param(("s = 'ü€'; " + ONE_LINE_BUG).encode(), (1, 74), id="multibyte-before-finding"),
        pytest.param(BUG.replace("\n", "\r\n").encode(), BUG_AT, id="crlf"),
        pytest.param(BUG.replace("\n", "\r").encode(), BUG_AT, id="cr-only"),
        pytest.param(BUG.replace("\n", "\r", 2).encode(), BUG_AT, id="mixed-endings"),
        pytest.param(b"import torch\n\x0c\n" + BUG.encode()[13:], (5, 18), id="form-feed-line"),
    ],
)
def test_encodings_and_line_endings_keep_positions(data, at):
    assert summary(lint(data)) == [("LT102", *at)]


@pytest.mark.parametrize("ending", ["\n", "\r\n", "\r"])
@pytest.mark.parametrize("separator", ["", "\x0c\n", "# caf\u2028e\n"])
def test_noqa_applies_to_the_reported_line_whatever_the_line_endings(ending, separator):
    text = "import torch\n" + separator + BUG[len("import torch\n") :]
    text = text.replace("dim=1), y)", "dim=1), y)  # noqa: LT102").replace("\n", ending)
    # \x0c and U+2028 are not line ends for Python: str.splitlines() would
    # shift every later line by one and apply the noqa to the wrong line.
    assert lint(text) == []


@pytest.mark.parametrize(
    "data",
    [b"", b"\n", b"   \n\t\n", b"# only a comment about backward()\n", b"\xef\xbb\xbf", b"\r", b'"""backward"""'],
    ids=["empty", "newline", "whitespace", "comment", "only-bom", "lone-cr", "docstring-only"],
)
def test_empty_and_trivial_files_are_clean(data):
    assert lint(data) == []


# -- syntax: CPython and libcst ---------------------------------------------


@pytest.mark.parametrize(
    "extra, line, words",
    [
        pytest.param("print 'hello'\n", 5, "Missing parentheses in call to 'print'", id="py2-print"),
        pytest.param("exec 'x = 1'\n", 5, "Missing parentheses in call to 'exec'", id="py2-exec"),
        pytest.param("if True:\n\tx = 1\n        y = 2\n", 7, "inconsistent use of tabs and spaces", id="tabs-spaces"),
        pytest.param("async = 1\n", 5, "invalid syntax", id="async-as-name"),
        pytest.param("x = 0777\n", 5, "leading zeros", id="py2-octal"),
        pytest.param("def f(:\n", 5, "invalid syntax", id="bad-def"),
        pytest.param("x = (1,\n", 5, "never closed", id="unclosed-at-eof"),
        pytest.param("".join(" " * i + "if x:\n" for i in range(101)) + " " * 101 + "pass\n", 105, "too many levels of indentation", id="101-nested-blocks"),
    ],
)
def test_syntax_errors_use_cpythons_message_and_position(extra, line, words):
    finding = only_lt000(lint(BUG + extra))
    assert words in finding.message and finding.line == line


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param("type Vector = list[float]\n", id="py312-type-alias"),
        pytest.param("def first[T](xs: list[T]) -> T:\n    return xs[0]\nclass Box[T]: pass\n", id="pep695"),
        pytest.param('songs = ["a"]\nmsg = f"{", ".join(songs)}"\n', id="py312-fstring-quotes"),
        pytest.param("try:\n    pass\nexcept* ValueError:\n    pass\n", id="except-star"),
        pytest.param("match cmd:\n    case [x, *rest] if x > 0:\n        pass\n    case _:\n        pass\n", id="match"),
        pytest.param("if (n := len(y)) > 5:\n    pass\n", id="walrus"),
        pytest.param("x = f\"{f'{f\"{1}\"}'}\"\n", id="nested-fstrings"),
        # CPython 3 rejects this Python 2 form; libcst's grammar accepts it,
        # so the file is analysed rather than reported (documented leniency).
        pytest.param("try:\n    pass\nexcept Exception, e:\n    pass\n", id="py2-except-comma"),
    ],
)
def test_syntax_libcst_accepts_is_analysed(extra):
    """Newer syntax than this interpreter knows is still linted: libcst
    decides for files of ordinary shape, so a 3.12 project linted by a 3.11
    lintorch gets findings, not a syntax error."""
    assert summary(lint(BUG + extra)) == [("LT102", *BUG_AT)]


# -- deep nesting and huge files -----------------------------------------------


def timed_lint(data):
    start = time.perf_counter()
    findings = lint(data)
    return findings, time.perf_counter() - start


@pytest.mark.parametrize(
    "expression",
    [
        pytest.param("(" * 1000 + "1" + ")" * 1000, id="1000-parens"),
        pytest.param("[" * 1000 + "1" + "]" * 1000, id="1000-lists"),
        pytest.param("f(" * 1000 + "1" + ")" * 1000, id="1000-calls"),
        pytest.param("{" * 5000 + "}" * 5000, id="5000-dicts"),
    ],
)
def test_brackets_deeper_than_cpython_allows_are_reported_fast(expression):
    """libcst would take half a minute on 1,000 nested calls and overflow
    the C stack (SIGSEGV) near 2,000 brackets; CPython stops at 200."""
    findings, seconds = timed_lint(BUG + "x = " + expression + "\n")
    finding = only_lt000(findings)
    assert "too many nested parentheses" in finding.message and finding.line == 5
    assert seconds < 10


@pytest.mark.parametrize(
    "expression, words",
    [
        pytest.param("-" * 1001 + "1", "more than 1000 levels", id="1001-unary"),
        pytest.param("a" + "[0]" * 1001, "more than 1000 levels", id="1001-subscripts"),
        pytest.param(" or ".join(["a"] * 20000), "more than 1000 levels", id="20000-or-chain"),
        pytest.param("+".join(["1"] * 20000), "CPython cannot compile it either", id="20000-plus-chain"),
        pytest.param("a" + ".b" * 20000, "CPython cannot compile it either", id="20000-attribute-chain"),
        pytest.param("lambda: " * 1001 + "1", "more than 1000 levels", id="1001-lambdas"),
    ],
)
def test_expressions_nested_too_deep_are_reported_fast(expression, words):
    findings, seconds = timed_lint(BUG + "x = " + expression + "\n" + BUG)
    finding = only_lt000(findings)
    assert words in finding.message
    assert finding.line == 5
    assert seconds < 10


def test_deep_expression_hidden_in_an_fstring_is_found():
    findings, seconds = timed_lint(BUG + 'x = f"{' + " or ".join(["a"] * 20000) + '}"\n')
    assert "more than 1000 levels" in only_lt000(findings).message
    assert seconds < 10


@pytest.mark.parametrize(
    "expression",
    [
        pytest.param("+".join(["1"] * 999), id="999-plus-chain"),
        # flat for CPython, 899 nested BooleanOperations for libcst: its
        # recursive position pass used to raise RecursionError here
        pytest.param(" or ".join(["a"] * 900), id="900-or-chain"),
        pytest.param(" ".join(["'a'"] * 1000), id="1000-implicit-concatenations"),
        pytest.param(" < ".join(["a"] * 2000), id="2000-comparisons"),
        pytest.param("lambda: " * 300 + "1", id="300-lambdas"),
        pytest.param("(" * 199 + "1" + ")" * 199, id="199-parens"),
        # clauses nest in libcst, but as clauses: no deep expression, fast to parse
        pytest.param("[a " + "for a, b in c " * 1001 + "]", id="1001-comprehension-clauses"),
    ],
)
def test_deep_but_legal_expressions_are_still_linted(expression):
    findings, seconds = timed_lint(BUG + "x = " + expression + "\n")
    assert summary(findings) == [("LT102", *BUG_AT)]
    assert seconds < 30


def test_deeply_nested_blocks_are_walked():
    """ModuleIndex recurses once per nested block (about 4 frames each)."""
    body = "".join(" " * i + ("def f():\n" if i % 2 else "for x in y:\n") for i in range(98))
    inner = " " * 98
    text = BUG + body + inner + "loss = criterion(torch.softmax(logits, dim=1), y)\n"
    assert summary(lint(text)) == [("LT102", *BUG_AT), ("LT102", 103, 116)]


def test_ten_megabyte_generated_file_is_reported_in_bounded_time():
    """libcst needs about 1 GB of memory per MB of dense source: a 10 MB
    file would take ~10 GB and minutes, so it is reported instead."""
    row = "    (1, 2.5, 'abc', None),\n"
    text = BUG + "DATA = [\n" + row * (10_000_000 // len(row)) + "]\n"
    findings, seconds = timed_lint(text)
    finding = only_lt000(findings)
    assert "file too large to analyse" in finding.message and "exclude it" in finding.message
    assert seconds < 15


def test_ten_megabyte_file_without_trigger_words_is_skipped_cheaply():
    row = "    (1, 2.5, 'abc', None),\n"
    findings, seconds = timed_lint("DATA = [\n" + row * (10_000_000 // len(row)) + "]\n")
    assert findings == [] and seconds < 5


def test_file_just_under_the_size_limit_is_not_refused():
    padding = "# " + "x" * 98 + "\n"
    text = BUG + padding * ((source.MAX_SOURCE_CHARS - len(BUG) - 1000) // len(padding))
    assert len(text) <= source.MAX_SOURCE_CHARS
    assert summary(lint(text)) == [("LT102", *BUG_AT)]


def test_shape_scan_ignores_brackets_in_strings_and_comments():
    text = 'x = "((((((((((" + \'[[[[\'\n# ((((((((\ny = """\n{{{{{{{{\n"""\n'
    longest, _, deepest, _ = source._shape(text * 50)
    assert deepest == 0 and longest < 40


def test_parse_skips_validation_only_while_parsing():
    """The parse builds nodes without libcst's _validate(); the tree is the
    one libcst builds with it, and validation is back on afterwards, even
    after a parse that failed."""
    import libcst as cst

    text = (REPO / "fixtures" / "LT102" / "bad_forward_returns_softmax.py").read_text()
    assert source.parse(text).deep_equals(cst.parse_module(text))
    assert isinstance(source.parse("x = (\n"), source.SourceError)
    with pytest.raises(cst.CSTValidationError):
        cst.Name("")


def test_shape_bound_stays_low_on_long_flat_literals():
    """A 10,000-entry config dict is one logical line of 300k characters but
    nests four brackets deep: the exact (CPython) check must not run for it."""
    entries = "".join(f"    'model_{i}': _cfg(url='https://x/{i}.pth', mean=(0.5, 0.5), crop_pct=0.9),\n" for i in range(10_000))
    bound, _, deepest, _ = source._shape("default_cfgs = generate({\n" + entries + "})\n")
    assert bound < 100 and deepest == 4


@pytest.mark.parametrize(
    "expression",
    [
        pytest.param("lambda a, b: " * 1001 + "1", id="lambdas-with-parameter-commas"),
        pytest.param("lambda a=1, b=" * 1001 + "1" + ": 1" * 1001, id="lambdas-in-parameter-defaults"),
        pytest.param("f" + "()" * 1001, id="call-chain"),
        pytest.param("x" + "[0]" * 1001, id="subscript-chain"),
        pytest.param("(" + "1, " * 5 + "+".join(["1"] * 1001) + ")", id="deep-element-after-commas"),
    ],
)
def test_shape_bound_is_an_upper_bound_on_nesting(expression):
    bound, line, _, _ = source._shape("import torch\nx = " + expression + "\n")
    assert bound > source.MAX_NESTING and line == 2


def test_subprocess_deep_and_huge_files_do_not_kill_the_run(tmp_path):
    """The cases that made libcst segfault or run for minutes, end to end."""
    files = {
        "or_chain.py": BUG + "x = " + " or ".join(["a"] * 20000) + "\n",
        "parens.py": BUG + "x = " + "(" * 3000 + "1" + ")" * 3000 + "\n",
        "plus.py": BUG + "x = " + "+".join(["1"] * 10000) + "\n",
        "huge.py": BUG + "DATA = [\n" + "    (1, 2.5, 'abc', None),\n" * 400_000 + "]\n",
        "train.py": BUG,
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    code, out, err = cli("-j", "1", ".", cwd=tmp_path)
    assert code == 1 and err == ""
    for name in ("or_chain.py", "parens.py", "plus.py", "huge.py"):
        assert f"{name}:" in out and "LT000" in out.split(f"{name}:")[1].split("\n")[0]
    assert "train.py:4:18: LT102" in out


# -- the file system ---------------------------------------------------------------


@pytest.fixture
def tree(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "train.py").write_text(BUG)
    return tmp_path


def out_lines(out):
    return sorted(line for line in out.splitlines() if not line.startswith("Found"))


def test_symlink_loops_do_not_hang_the_walk(tree, run_cli):
    os.symlink("..", tree / "pkg" / "parent")
    os.symlink(".", tree / "pkg" / "self")
    os.symlink("b.py", tree / "pkg" / "a.py")
    os.symlink("a.py", tree / "pkg" / "b.py")
    code, out, err = run_cli("--no-cache", ".")
    assert code == 1 and err == ""
    assert out_lines(out) == [
        "pkg/a.py:1:1: LT000 cannot analyse this file: cannot read file: Too many levels of symbolic links",
        "pkg/b.py:1:1: LT000 cannot analyse this file: cannot read file: Too many levels of symbolic links",
        "pkg/train.py:4:18: LT102 " + out.split("pkg/train.py:4:18: LT102 ")[1].split("\n")[0],
    ]


def test_broken_symlink_is_reported(tree, run_cli):
    os.symlink("gone.py", tree / "pkg" / "broken.py")
    code, out, _ = run_cli("--no-cache", ".")
    assert code == 1
    assert "pkg/broken.py:1:1: LT000 cannot analyse this file: cannot read file: No such file or directory" in out
    assert "pkg/train.py:4:18: LT102" in out


def test_directory_named_like_a_source_file_is_walked(tree, run_cli):
    (tree / "x.py").mkdir()
    (tree / "x.py" / "inner.py").write_text(BUG)
    code, out, _ = run_cli("--no-cache", "x.py")
    assert code == 1 and out.startswith("x.py/inner.py:4:18: LT102")
    code, out, _ = run_cli("--no-cache", ".")
    assert "x.py/inner.py:4:18: LT102" in out and "pkg/train.py:4:18: LT102" in out


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_fifo_named_py_is_reported_not_read(tree):
    """Opening a FIFO for reading blocks until a writer appears: the walk
    must not hang the run (checked in a subprocess with a timeout)."""
    os.mkfifo(tree / "pkg" / "pipe.py")
    code, out, err = cli(".", cwd=tree, timeout=60)
    assert code == 1 and err == ""
    assert "pkg/pipe.py:1:1: LT000 cannot analyse this file: not a regular file (a FIFO, socket or device)" in out
    assert "pkg/train.py:4:18: LT102" in out
    code, out, _ = cli("pkg/pipe.py", cwd=tree, timeout=60)
    assert code == 1 and "not a regular file" in out


def test_device_named_on_the_command_line_is_reported(tree, run_cli):
    code, out, _ = run_cli("--no-cache", os.devnull)
    assert code == 1 and "not a regular file" in out


def test_unlistable_directory_is_reported_and_the_rest_linted(tree, run_cli, monkeypatch):
    (tree / "secret").mkdir()
    (tree / "secret" / "hidden.py").write_text(BUG)
    real_scandir = os.scandir

    def scandir(path="."):
        if os.path.basename(os.fspath(path)) == "secret":
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    code, out, err = run_cli("--no-cache", ".")
    assert code == 1 and err == ""
    assert "secret:1:1: LT000 cannot analyse this file: cannot read directory: Permission denied" in out
    assert "pkg/train.py:4:18: LT102" in out and "hidden.py" not in out


def test_unreadable_file_is_reported_and_the_rest_linted(tree, run_cli, monkeypatch):
    (tree / "pkg" / "locked.py").write_text(BUG)
    real_open = os.open

    def fake_open(path, *args, **kwargs):
        if os.fspath(path).endswith("locked.py"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", fake_open)
    code, out, err = run_cli("--no-cache", ".")
    assert code == 1 and err == ""
    assert "pkg/locked.py:1:1: LT000 cannot analyse this file: cannot read file: Permission denied" in out
    assert "pkg/train.py:4:18: LT102" in out


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads everything")
def test_real_permissions_in_a_subprocess(tree):
    (tree / "pkg" / "locked.py").write_text(BUG)
    (tree / "secret").mkdir()
    (tree / "secret" / "hidden.py").write_text(BUG)
    os.chmod(tree / "pkg" / "locked.py", 0)
    os.chmod(tree / "secret", 0)
    try:
        code, out, err = cli(".", cwd=tree)
    finally:
        os.chmod(tree / "secret", 0o755)
        os.chmod(tree / "pkg" / "locked.py", 0o644)
    assert code == 1 and err == ""
    assert "pkg/locked.py:1:1: LT000 cannot analyse this file: cannot read file: Permission denied" in out
    assert "secret:1:1: LT000 cannot analyse this file: cannot read directory: Permission denied" in out
    assert "pkg/train.py:4:18: LT102" in out


def test_subprocess_bad_paths_and_names(tree):
    """Missing paths exit 2 with a message; undecodable file names and an
    ASCII-only console are written escaped, not a UnicodeEncodeError."""
    os.symlink("gone.py", tree / "pkg" / "broken.py")
    name = os.fsdecode(b"bad\xff.py")
    (tree / name).write_text(BUG)
    (tree / "café.py").write_text(BUG)
    code, out, err = cli(".", "missing.py", cwd=tree, env={"PYTHONIOENCODING": "ascii"})
    assert code == 2
    assert err == "lintorch: error: missing.py: no such file or directory\n"
    assert "bad\\udcff.py:4:18: LT102" in out and "caf\\xe9.py:4:18: LT102" in out
    assert "pkg/broken.py:1:1: LT000" in out and "pkg/train.py:4:18: LT102" in out
    code, out, err = cli("--format", "json", ".", cwd=tree, env={"PYTHONIOENCODING": "ascii"})
    assert code == 1 and err == "" and len(json.loads(out)) == 4


# -- configuration -----------------------------------------------------------------


@pytest.mark.parametrize(
    "content, words",
    [
        pytest.param(b"[tool.lintorch]\nselect = [\n", "invalid TOML", id="invalid-toml"),
        pytest.param(b"tool = 1\n# [tool.lintorch]\n", None, id="tool-not-a-table"),
        pytest.param(b"[tool.lintorch]\nexclude = ['\xff']\n", "not valid UTF-8", id="not-utf8"),
        pytest.param(b"[tool]\nlintorch = 3  # [tool.lintorch]\n", "[tool.lintorch] must be a table", id="lintorch-not-a-table"),
        pytest.param(b"[tool.lintorch]\nselect = 'LT1'\nignore = [1]\n", "ignore must be a list of strings", id="bad-type"),
    ],
)
def test_broken_configuration_is_a_clear_error(tree, content, words):
    (tree / "pyproject.toml").write_bytes(content)
    code, out, err = cli(".", cwd=tree)
    if words is None:  # not our table: ignored, the run goes on
        assert code == 1 and err == "" and "pkg/train.py:4:18: LT102" in out
    else:
        assert code == 2 and out == ""
        assert err.startswith("lintorch: error: ") and "pyproject.toml" in err and words in err


def test_pyproject_that_is_a_directory_is_ignored(tree, run_cli):
    (tree / "pyproject.toml").mkdir()
    code, out, err = run_cli("--no-cache", ".")
    assert code == 1 and err == "" and "pkg/train.py:4:18: LT102" in out


# -- the cache -------------------------------------------------------------


def test_cache_entries_of_the_wrong_shape_are_misses(tree, run_cli):
    cold = run_cli(".")
    entries = [p for p in (tree / ".lintorch_cache").rglob("*") if p.is_file() and p.parent.name != ".lintorch_cache"]
    assert entries
    for bad in ('{"a": 1}', '[["x", 1, 1, 1, "LT102", "n", "error", "m"]]', '[[1, 1, 1, 1, "LT102", "n", "bogus", "m"]]', "[null]"):
        for entry in entries:
            entry.write_text(bad)
        assert run_cli(".") == cold


def test_cache_directory_that_cannot_be_created_means_no_cache(tree, run_cli):
    (tree / "not-a-dir").write_text("a file where the cache directory should be")
    expected = run_cli("--no-cache", ".")
    assert run_cli("--cache-dir", "not-a-dir", ".") == expected
    assert run_cli("--cache-dir", "not-a-dir/sub", ".") == expected


# -- internal errors in rules -----------------------------------------------------


class Boom(Exception):
    pass


def test_a_crashing_rule_is_lt001_and_the_other_rules_still_run(monkeypatch):
    from lintorch.rules.lt201_missing_zero_grad import MissingZeroGrad

    def crash(self, index):
        raise Boom("kaput")
        yield  # pragma: no cover

    monkeypatch.setattr(MissingZeroGrad, "check", crash)
    text = BUG + "for x in data:\n    loss.backward()\n    optimizer.step()\n"
    findings = lint(text, "train.py")
    assert summary(findings) == [("LT001", 1, 1), ("LT102", *BUG_AT)]
    message = findings[0].message
    assert "internal error in rule LT201 (missing-zero-grad)" in message and "Boom: kaput" in message
    assert findings[0].path == "train.py" and "Traceback" not in message
    debug = lint(text, "train.py", debug=True)[0].message
    assert "Traceback (most recent call last)" in debug and 'raise Boom("kaput")' in debug


@pytest.mark.parametrize(
    "bad_check",
    [
        pytest.param(lambda self, index: iter([42]), id="yields-a-non-report"),
        pytest.param(lambda self, index: iter([Report(None, "m")]), id="report-without-node"),
        pytest.param(lambda self, index: (_ for _ in ()).throw(RecursionError("deep")), id="recursion-error"),
        pytest.param(lambda self, index: 1 / 0, id="not-a-generator"),
    ],
)
def test_misbehaving_rules_are_contained(monkeypatch, bad_check):
    from lintorch.rules.lt201_missing_zero_grad import MissingZeroGrad

    monkeypatch.setattr(MissingZeroGrad, "check", bad_check)
    findings = lint(BUG + "loss.backward()\n")
    codes = [f.code for f in findings]
    assert "LT102" in codes and set(codes) <= {"LT001", "LT102", "LT201"}


def test_subprocess_crashing_rule_with_and_without_debug(tmp_path):
    """End to end: exit 1, no traceback on stderr, the other file linted;
    --debug puts the traceback in the finding."""
    (tmp_path / "a.py").write_text(BUG + "loss.backward()\n")
    (tmp_path / "b.py").write_text(BUG)
    script = (
        "import sys\n"
        "from lintorch.rules.lt201_missing_zero_grad import MissingZeroGrad\n"
        "def crash(self, index):\n"
        "    raise KeyError('boom')\n"
        "MissingZeroGrad.check = crash\n"
        "from lintorch.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    for debug in ([], ["--debug"]):
        result = subprocess.run(
            [sys.executable, "-c", script, "--no-cache", "-j", "1", *debug, "a.py", "b.py"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 1 and result.stderr == ""
        assert "a.py:1:1: LT001 internal error in rule LT201 (missing-zero-grad) on this file: KeyError: 'boom'" in result.stdout
        assert "a.py:4:18: LT102" in result.stdout and "b.py:4:18: LT102" in result.stdout
        assert ("Traceback (most recent call last)" in result.stdout) == bool(debug)


# -- --fix never loses data ---------------------------------------------------------

FIXABLE = BUG  # LT102 has a fix: the softmax is dropped


def snapshot(path):
    info = os.stat(path)
    return path.read_bytes(), info.st_mtime_ns, info.st_mode


@pytest.mark.parametrize(
    "content",
    [
        pytest.param((FIXABLE + "def broken(:\n").encode(), id="syntax-error"),
        pytest.param(FIXABLE.encode() + b"x = '\xff'\n", id="invalid-utf8"),
        pytest.param(FIXABLE.encode() + b"x = 1\x00\n", id="null-byte"),
        pytest.param(b"# coding: klingon\n" + FIXABLE.encode(), id="unknown-codec"),
        pytest.param((FIXABLE + "x = " + "+".join(["1"] * 5000) + "\n").encode(), id="too-deep"),
        pytest.param((FIXABLE + "# " + "x" * (source.MAX_SOURCE_CHARS + 10) + "\n").encode(), id="too-large"),
    ],
)
def test_fix_never_touches_a_file_it_cannot_parse(tree, run_cli, content):
    path = tree / "pkg" / "train.py"
    path.write_bytes(content)
    before = snapshot(path)
    code, out, err = run_cli("--isolated", "--no-cache", "--fix", "--unsafe-fixes", "pkg/train.py")
    assert code == 1 and "LT000" in out and "Traceback" not in err
    assert snapshot(path) == before
    assert sorted(os.listdir(tree / "pkg")) == ["train.py"]  # no temporary file left


def test_fix_of_deeply_nested_code_still_works():
    """libcst's code generation recurses per nesting level; --fix raises the
    recursion limit as linting does (this used to raise RecursionError)."""
    from lintorch import fix

    text = FIXABLE + "x = " + " or ".join(["a"] * 900) + "\n"
    outcome = fix.fix_bytes(text.encode(), "t.py", registry.instantiate(registry.resolve_enabled(["ALL"], [])), unsafe=True)
    assert outcome.changed and [f.code for f in outcome.applied] == ["LT102"]
    assert outcome.text == text.replace("torch.softmax(logits, dim=1)", "logits")


def test_fix_refuses_a_file_changed_while_it_was_fixed(tree, run_cli, monkeypatch):
    from lintorch import fix

    path = tree / "pkg" / "train.py"
    real = fix.fix_bytes

    def edit_meanwhile(data, *args, **kwargs):
        outcome = real(data, *args, **kwargs)
        path.write_text(BUG + "# the user saved this meanwhile\n")
        return outcome

    monkeypatch.setattr(fix, "fix_bytes", edit_meanwhile)
    code, _, err = run_cli("--isolated", "--no-cache", "--fix", "--unsafe-fixes", "pkg/train.py")
    assert code == 2
    assert "pkg/train.py: not fixed: pkg/train.py: changed on disk while lintorch was fixing it; not written" in err
    assert path.read_text().endswith("# the user saved this meanwhile\n")
    assert sorted(os.listdir(tree / "pkg")) == ["train.py"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_subprocess_fix_with_a_fifo_and_a_broken_file_in_the_tree(tree):
    os.mkfifo(tree / "pkg" / "pipe.py")
    (tree / "pkg" / "broken.py").write_text(FIXABLE + "def broken(:\n")
    broken_before = snapshot(tree / "pkg" / "broken.py")
    code, out, err = cli("--isolated", "--fix", "--unsafe-fixes", ".", cwd=tree, timeout=120)
    assert code == 1, err
    assert "pkg/pipe.py:1:1: LT000" in out and "pkg/broken.py:5:12: LT000" in out
    assert "Fixed 1 finding in 1 file." in err
    assert (tree / "pkg" / "train.py").read_text() == BUG.replace("torch.softmax(logits, dim=1)", "logits")
    assert snapshot(tree / "pkg" / "broken.py") == broken_before


# -- notebooks ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "content, words",
    [
        pytest.param(b"", "invalid JSON", id="empty"),
        pytest.param(b'{"cells": [\n  {"cell_type": "code",,}\n]}', "invalid JSON", id="invalid-json"),
        pytest.param(b"[]", "the top level", id="json-list"),
        pytest.param(b'{"cells": 5}', "no cells", id="cells-not-a-list"),
        pytest.param(b'{"cells": [{"cell_type": "code", "source": 5}]}', "cell 1", id="source-not-text"),
        pytest.param(b"[" * 100_000 + b"]" * 100_000, "nested", id="json-nested-100000-deep"),
        pytest.param(b"\xff\xfe{}", "not UTF-8", id="not-utf8"),
    ],
)
def test_broken_notebooks_are_lt000(content, words):
    finding = only_lt000(lint(content, "nb.ipynb"))
    assert words in finding.message


def test_subprocess_broken_notebooks_do_not_stop_the_run(tree):
    (tree / "bad.ipynb").write_bytes(b'{"cells": [\n  {"cell_type": "code",,}\n]}')
    (tree / "deep.ipynb").write_bytes(b"[" * 100_000 + b"]" * 100_000)
    before = snapshot(tree / "bad.ipynb")
    code, out, err = cli(".", cwd=tree)
    assert code == 1 and err == ""
    assert "bad.ipynb:2:" in out and "deep.ipynb:1:1: LT000" in out and "pkg/train.py:4:18: LT102" in out
    code, out, err = cli("--fix", ".", cwd=tree)
    assert code == 1 and "bad.ipynb:2:" in out
    assert snapshot(tree / "bad.ipynb") == before


# -- the probe ---------------------------------------------------------------------

STUBBORN = '''
import signal, subprocess, sys, time
import torch
from torch.utils.data import DataLoader, Dataset

signal.signal(signal.SIGTERM, signal.SIG_IGN)  # and so do the forked workers


class Slow(Dataset):
    def __len__(self):
        return 100

    def __getitem__(self, i):
        time.sleep(1000)
        return torch.zeros(2)


helper = subprocess.Popen(
    [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(1000)"]
)
for batch in DataLoader(Slow(), batch_size=4, num_workers=2):
    pass
'''


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX process groups")
def test_probe_kills_a_script_that_ignores_sigterm_with_its_workers(tmp_path):
    """SIGTERM first (the child writes what it has), then SIGKILL to the
    whole process group: the script, its DataLoader workers and the helper
    process all ignore SIGTERM, and none may outlive the probe."""
    pytest.importorskip("torch")
    from lintorch.probe import runner
    from lintorch.probe.cli import probe

    script = tmp_path / "stubborn.py"
    script.write_text(STUBBORN)
    started = time.monotonic()
    result = probe(str(script), [], steps=5, timeout=15.0)
    run = result["_run"]
    assert run.timed_out and result["outcome"]["status"] == "timeout"
    assert not run.leftover_processes and not runner._group_alive(run.pid)
    assert time.monotonic() - started < 15.0 + runner.GRACE_SECONDS + 30


def test_subprocess_cpythons_syntax_warnings_stay_off_stderr(tmp_path):
    """CPython's parser, used for syntax-error messages, deep-code checks and
    to validate fixes, warns on stderr about code such as ``1if x else 2``;
    lintorch's stderr carries only its own messages."""
    (tmp_path / "broken.py").write_text("import torch\nloss.backward()\nx = 1if y else 2\ndef f(:\n")
    code, out, err = cli("broken.py", cwd=tmp_path)
    assert code == 1 and err == "" and "broken.py:4:7: LT000" in out
    (tmp_path / "fixable.py").write_text(FIXABLE + "x = 1if y else 2\n")
    code, out, err = cli("--isolated", "--fix", "--unsafe-fixes", "fixable.py", cwd=tmp_path)
    assert code == 0 and err == "Fixed 1 finding in 1 file.\n"


@pytest.mark.parametrize("cookie", ["unicode_escape", "raw_unicode_escape"])
def test_fix_never_rewrites_a_file_whose_encoding_does_not_round_trip(tree, run_cli, cookie):
    """Writing back through a unicode_escape cookie would turn every line
    break into a literal backslash-n: such a file is reported, not fixed."""
    path = tree / "pkg" / "train.py"
    path.write_bytes(f"# coding: {cookie}\n".encode() + FIXABLE.encode() + b"s = '\\u00e9'\n")
    before = snapshot(path)
    code, out, err = run_cli("--isolated", "--no-cache", "--fix", "--unsafe-fixes", "pkg/train.py")
    assert code == 1 and "pkg/train.py:5:18: LT102" in out
    assert f"not fixed: re-encoding it as {cookie}" in err
    assert snapshot(path) == before


def test_fix_that_cannot_be_encoded_is_not_written(monkeypatch):
    """A fix whose text the file's encoding cannot hold (latin-1 here) is
    undone rather than written as something else."""
    from lintorch import fix

    rules = registry.instantiate(registry.resolve_enabled(["ALL"], []))
    data = b"# coding: latin-1\n" + FIXABLE.encode()
    real = fix.apply_fixes
    monkeypatch.setattr(fix, "apply_fixes", lambda module, fixes: real(module, fixes) + "# \u20ac\n")
    outcome = fix.fix_bytes(data, "t.py", rules, unsafe=True)
    assert not outcome.changed and outcome.applied == []
    assert "cannot be written in the file's encoding" in outcome.skipped
    assert [f.code for f in outcome.remaining] == ["LT102"]


def test_notebook_cell_with_an_unpaired_surrogate_is_lt000():
    """Found by bench/fuzz.py: JSON may escape a lone surrogate, which is not
    text; encoding the cell used to raise UnicodeEncodeError."""
    from lintorch import fix

    data = json.dumps({"cells": [{"cell_type": "code", "source": "import torch\nloss.backward()\nx = '\udcff'\n"}]}).encode()
    finding = only_lt000(lint(data, "nb.ipynb"))
    assert "cell 1 holds an unpaired surrogate (U+DCFF)" in finding.message
    rules = registry.instantiate(registry.resolve_enabled(["ALL"], []))
    outcome = fix.fix_notebook_bytes(data, "nb.ipynb", rules, unsafe=True)
    assert not outcome.changed and [f.code for f in outcome.remaining] == ["LT000"]


def test_subprocess_a_worker_that_dies_does_not_end_the_run(tmp_path):
    """A native crash in a pool worker (simulated by SIGKILL on one file)
    breaks the process pool: the run re-lints the rest one file per worker,
    reports the file that kills its worker as LT000, and goes on."""
    for i in range(24):
        (tmp_path / f"m{i:02d}.py").write_text(BUG if i % 2 else "import torch\n")
    (tmp_path / "killer.py").write_text(BUG)
    script = (
        "import os, signal, sys\n"
        "from lintorch import engine\n"
        "real = engine.lint_bytes\n"
        "def lint_bytes(data, path, *args, **kwargs):\n"
        "    if path.endswith('killer.py'):\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "    return real(data, path, *args, **kwargs)\n"
        "engine.lint_bytes = lint_bytes\n"
        "from lintorch.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, "--no-cache", "-j", "2", "."],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert "killer.py:1:1: LT000 cannot analyse this file: the process analysing this file died" in result.stdout
    linted = [line.split(":")[0] for line in result.stdout.splitlines() if ": LT102 " in line]
    assert linted == [f"m{i:02d}.py" for i in range(1, 24, 2)]

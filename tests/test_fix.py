"""Autofix: every fix on files under tests/data/fix (input + .expected.py),
on every rule fixture, the CLI flags, atomic writing that keeps encoding,
BOM, line endings and mode bits, and fixes that would break the code."""

import codecs
import os
import stat
import sys
from pathlib import Path

import libcst as cst
import pytest

from conftest import FIXTURES, REPO
from lintorch import engine, fix, registry, source
from lintorch.rule import Fix, Rule, Severity

DATA = REPO / "tests" / "data" / "fix"
CASES = sorted(p for p in DATA.glob("*.py") if not p.name.endswith(".expected.py"))
# NAME.py: the input; NAME.expected.py: after --fix --unsafe-fixes;
# NAME.safe.expected.py: after --fix alone (absent: --fix alone changes nothing).


def all_rules():
    """As `--select ALL`: every rule, info findings (and their fixes) included."""
    codes = registry.resolve_enabled(["ALL"], [])
    return registry.instantiate(codes, codes)


def expected_path(path: Path) -> Path:
    return path.with_name(path.stem + ".expected.py")


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.name)
def test_fix_gives_the_expected_file_and_a_second_run_is_a_no_op(path):
    outcome = fix.fix_bytes(path.read_bytes(), path.name, all_rules(), unsafe=True)
    assert outcome.text == expected_path(path).read_text(encoding="utf-8"), outcome.diff()
    again = fix.fix_bytes(outcome.new_bytes(), path.name, all_rules(), unsafe=True)
    assert not again.changed and again.applied == []
    # what is left is only findings without an applicable fix
    assert not any(fix.enabled(f.fix, True) for f in again.remaining)


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.name)
def test_safe_fixes_alone(path):
    """Without --unsafe-fixes only safe fixes apply: the result is
    NAME.safe.expected.py, or the unchanged file when there is none."""
    outcome = fix.fix_bytes(path.read_bytes(), path.name, all_rules(), unsafe=False)
    safe_expected = path.with_name(path.stem + ".safe.expected.py")
    expected = safe_expected if safe_expected.exists() else path
    assert (outcome.text if outcome.changed else path.read_text(encoding="utf-8")) == expected.read_text(
        encoding="utf-8"
    ), outcome.diff()
    assert all(f.fix.safe for f in outcome.applied)


FIXTURE_FILES = sorted(FIXTURES.rglob("*.py"))


@pytest.mark.parametrize("path", FIXTURE_FILES, ids=lambda p: str(p.relative_to(FIXTURES)))
def test_fixes_on_rule_fixtures_parse_and_are_idempotent(path):
    rules = all_rules()
    outcome = fix.fix_bytes(path.read_bytes(), str(path), rules, unsafe=True)
    assert outcome.dropped == []
    if outcome.changed:
        assert fix.check_parses(outcome.text) is None
        fixed_codes = {f.code for f in outcome.applied}
        again = fix.fix_bytes(outcome.new_bytes(), str(path), rules, unsafe=True)
        assert not again.changed
        # each applied fix removed its finding: fewer findings of that code remain
        original = engine.lint_bytes(path.read_bytes(), str(path), rules)
        for code in fixed_codes:
            count_before = sum(1 for f in original if f.code == code)
            count_after = sum(1 for f in outcome.remaining if f.code == code)
            assert count_after < count_before


BUGGY = (
    "import torch\n"
    "import torch.nn as nn\n"
    "\n"
    "criterion = nn.CrossEntropyLoss()\n"
    "loss = criterion(torch.softmax(logits, dim=1), y)  # comment\n"
)
FIXED = BUGGY.replace("torch.softmax(logits, dim=1)", "logits")


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_cli_fix_diff_and_second_run(project, run_cli):
    path = project / "train.py"
    path.write_text(BUGGY, encoding="utf-8")

    code, out, err = run_cli("--isolated", "--fix", "train.py")  # the LT102 fix is unsafe
    assert code == 1 and path.read_text() == BUGGY
    assert "1 more fixable with --unsafe-fixes" in out

    code, out, err = run_cli("--isolated", "--diff", "--unsafe-fixes", "train.py")
    assert code == 1 and path.read_text() == BUGGY
    assert "-loss = criterion(torch.softmax(logits, dim=1), y)  # comment\n" in out
    assert "+loss = criterion(logits, y)  # comment\n" in out
    assert "Would apply 1 fix in 1 file." in err

    code, out, err = run_cli("--isolated", "--fix", "--unsafe-fixes", "train.py")
    assert code == 0 and out == "All checks passed (1 file checked).\n"
    assert path.read_text() == FIXED
    assert "Fixed 1 finding in 1 file." in err

    code, out, err = run_cli("--isolated", "--fix", "--unsafe-fixes", "train.py")
    assert code == 0 and path.read_text() == FIXED and "Fixed 0 findings in 0 files." in err
    code, out, _ = run_cli("--isolated", "--diff", "--unsafe-fixes", "train.py")
    assert code == 0 and out == ""


def test_fix_reports_what_is_left(project, run_cli):
    path = project / "train.py"
    path.write_text(
        "import torch.nn as nn\ncriterion = nn.CrossEntropyLoss()\n"
        "probs = out.softmax(1)\nprint(probs)\nloss = criterion(probs, y)\n",
        encoding="utf-8",
    )
    code, out, _ = run_cli("--isolated", "--fix", "--unsafe-fixes", "train.py")
    assert code == 1 and out.startswith("train.py:5:18: LT102")  # probs is printed too: no fix


def test_fix_refuses_stdin(project, run_cli):
    code, _, err = run_cli("--isolated", "--fix", "-")
    assert code == 2 and "stdin" in err


@pytest.mark.parametrize(
    "encode",
    [
        pytest.param(lambda t: t.replace("\n", "\r\n").encode("utf-8"), id="crlf"),
        pytest.param(lambda t: codecs.BOM_UTF8 + t.encode("utf-8"), id="bom"),
        pytest.param(lambda t: ("# -*- coding: latin-1 -*-\n# café\n" + t).encode("latin-1"), id="latin-1"),
        pytest.param(lambda t: codecs.BOM_UTF8 + t.replace("\n", "\r\n").encode("utf-8"), id="bom-crlf"),
    ],
)
def test_fix_keeps_encoding_bom_and_line_endings(project, run_cli, encode):
    path = project / "train.py"
    path.write_bytes(encode(BUGGY))
    code, _, _ = run_cli("--isolated", "--fix", "--unsafe-fixes", "train.py")
    assert code == 0
    assert path.read_bytes() == encode(FIXED)


def test_inserted_lines_use_the_file_line_endings(project, run_cli):
    text = "for x, y in loader:\n    loss = criterion(model(x), y)\n    loss.backward()\n    optimizer.step()\n"
    path = project / "loop.py"
    path.write_bytes(text.replace("\n", "\r\n").encode())
    run_cli("--isolated", "--fix", "--unsafe-fixes", "loop.py")
    data = path.read_bytes()
    assert b"\r\n    optimizer.zero_grad()\r\n" in data
    assert data.count(b"\n") == data.count(b"\r\n") == 5


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX mode bits")
def test_fix_keeps_mode_bits_and_symlinks(project, run_cli):
    path = project / "train.py"
    path.write_text(BUGGY, encoding="utf-8")
    os.chmod(path, 0o751)
    link = project / "link.py"
    link.symlink_to(path)
    code, _, _ = run_cli("--isolated", "--fix", "--unsafe-fixes", "link.py")
    assert code == 0
    assert link.is_symlink() and path.read_text() == FIXED
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o751
    assert sorted(p.name for p in project.iterdir()) == ["link.py", "train.py"]  # no temp file left


def test_write_atomic_refuses_a_file_changed_since_read(tmp_path):
    path = tmp_path / "a.py"
    path.write_bytes(b"x = 1\n")
    with pytest.raises(fix.FileChangedError):
        fix.write_atomic(str(path), b"x = 2\n", expected=b"x = 0\n")
    assert path.read_bytes() == b"x = 1\n"
    assert [p.name for p in tmp_path.iterdir()] == ["a.py"]
    fix.write_atomic(str(path), b"x = 2\n", expected=b"x = 1\n")
    assert path.read_bytes() == b"x = 2\n"


class _BreakingRule(Rule):
    """A test-only rule whose fix turns `answer` into invalid code."""

    code = "LT999"
    name = "test-breaking-fix"
    severity = Severity.WARNING
    summary = symptom = "test"
    triggers = ("answer",)

    def check(self, analysis):
        for binding in analysis.index.module_scope.bindings.get("answer", []):
            yield self.report(binding.value, "test", fix=Fix(binding.value, cst.Name("lambda"), True, "break it"))


class _GoodRule(_BreakingRule):
    code = "LT998"
    triggers = ("other",)

    def check(self, analysis):
        for binding in analysis.index.module_scope.bindings.get("other", []):
            if isinstance(binding.value, cst.Integer) and binding.value.value == "1":
                yield self.report(binding.value, "test", fix=Fix(binding.value, cst.Integer("2"), True, "set 2"))


def test_a_fix_that_breaks_the_code_is_dropped_and_reported():
    text = b"answer = 42\nother = 1\n"
    outcome = fix.fix_bytes(text, "t.py", [_BreakingRule(), _GoodRule()])
    assert outcome.text == "answer = 42\nother = 2\n"
    [(finding, reason)] = outcome.dropped
    assert finding.code == "LT999" and "would not parse" in reason
    assert [f.code for f in outcome.applied] == ["LT998"]
    assert [f.code for f in outcome.remaining] == ["LT999"]


def test_dropped_fix_is_reported_by_the_cli(project, run_cli, monkeypatch):
    (project / "t.py").write_text("answer = 42\n", encoding="utf-8")
    from lintorch import runner

    monkeypatch.setattr(runner.RuleCache, "rules_for", lambda self, codes: [_BreakingRule()])
    monkeypatch.setattr(runner.RuleCache, "codes_for", lambda self, path: frozenset({"LT999"}))
    code, out, err = run_cli("--isolated", "--fix", "t.py")
    assert "t.py:1:10: LT999 fix dropped: the fixed code would not parse" in err
    assert (project / "t.py").read_text() == "answer = 42\n"
    assert code == 1
    # the summary does not advise --fix for a fix --fix just failed to apply
    assert out.endswith("Found 1 finding in 1 file (1 checked).\n")
    code, out, _ = run_cli("--isolated", "t.py")  # a plain check cannot know it yet
    assert "1 fixable" in out and "Run with --fix" in out


def test_fix_advice_after_fixing_counts_only_fixes_that_can_apply(project, run_cli):
    import json as json_module

    from lintorch import notebook

    (project / "safe.py").write_text("import torch\ny = torch.log(torch.softmax(x, dim=1))\n", encoding="utf-8")
    (project / "unsafe.py").write_text(BUGGY, encoding="utf-8")
    lines = ["import torch\n", "criterion = torch.nn.CrossEntropyLoss()\n", "loss = criterion(torch.softmax(z, 1), y)\n"]
    cells = [{"cell_type": "code", "metadata": {}, "source": lines, "outputs": [], "execution_count": None}]
    document = {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    (project / "compact.ipynb").write_text(json_module.dumps(document, separators=(",", ":")), encoding="utf-8")
    assert not notebook.rewritable((project / "compact.ipynb").read_bytes())
    code, out, err = run_cli("--isolated", "--fix", "safe.py", "unsafe.py", "compact.ipynb")
    assert code == 1 and "Fixed 1 finding in 1 file." in err
    # unsafe.py's fix can still apply with --unsafe-fixes; the notebook's cannot at all
    assert out.splitlines()[-1] == "Found 2 findings in 2 files (3 checked). 1 more fixable with --unsafe-fixes."


def test_fixes_preserve_formatting_outside_the_edit():
    text = (
        "import torch.nn as nn\n"
        "crit = nn.CrossEntropyLoss( )   # odd spacing\n"
        "loss = crit( x.softmax( dim = 1 ) ,\n"
        "             y )\n"
    )
    outcome = fix.fix_bytes(text.encode(), "t.py", all_rules(), unsafe=True)
    assert outcome.text == text.replace("x.softmax( dim = 1 )", "x")
    assert isinstance(source.parse(outcome.text), cst.Module)


def test_cached_findings_still_count_as_fixable(project, run_cli):
    (project / "train.py").write_text(BUGGY, encoding="utf-8")
    args = ("--isolated", "--cache-dir", str(project / "cache"), "train.py")
    first = run_cli(*args)
    second = run_cli(*args)
    assert first == second
    assert "1 more fixable with --unsafe-fixes" in second[1]


@pytest.mark.parametrize(
    "before,after",
    [
        ("F.softmax(x)", "F.softmax(x, dim=-1)"),
        ("F.softmax(x, dim=None)", "F.softmax(x, dim=-1)"),
        ("F.softmax(x, None)", "F.softmax(x, -1)"),
        ("nn.Softmax()", "nn.Softmax(dim=-1)"),
        ("F.softmax(x, dtype=torch.float)", "F.softmax(x, dtype=torch.float, dim=-1)"),
        ("F.softmax(\n    x,\n)", "F.softmax(\n    x, dim=-1,\n)"),
    ],
)
def test_edit_with_argument(before, after):
    from lintorch import edits

    position = 0 if before.startswith("nn.") else 1
    new = edits.with_argument(cst.parse_expression(before), "dim", position, "-1")
    assert cst.Module([]).code_for_node(new) == after


def test_edit_helpers():
    from lintorch import edits

    code = cst.Module([]).code_for_node
    assert code(edits.renamed_method(cst.parse_expression("torch.softmax(x, 1)"), "log_softmax")) == "torch.log_softmax(x, 1)"
    assert code(edits.renamed_method(cst.parse_expression("x.softmax(dim=1)"), "log_softmax")) == "x.log_softmax(dim=1)"
    assert edits.renamed_method(cst.parse_expression("softmax(x, 1)"), "log_softmax") is None
    assert code(edits.call_without_method(cst.parse_expression("self.net.forward(x)"))) == "self.net(x)"
    assert code(edits.call_without_method(cst.parse_expression("(a or b).forward(x)"))) == "(a or b)(x)"
    assert code(edits.parenthesized(cst.parse_expression("a + b"))) == "(a + b)"
    assert code(edits.parenthesized(cst.parse_expression("f(a)"))) == "f(a)"
    assert edits.count_name_loads(cst.parse_module("p = f(x)\nq = p.p + g(p=1)\n"), "p") == 2


def test_a_fix_that_would_delete_a_comment_is_dropped():
    text = b"import torch\nz = torch.log(torch.softmax(  # why\n    x, 1))\n"
    outcome = fix.fix_bytes(text, "t.py", all_rules())
    assert not outcome.changed
    [(finding, reason)] = outcome.dropped
    assert finding.code == "LT105" and reason == "the fix would delete the comment '# why'"

"""The command-line contract: output formats, exit codes, selection, noqa,
config, stdin, rule docs."""

import json
import os
import subprocess
import sys

import pytest

from conftest import BUGGY, CLEAN, FIXTURES, write

def test_text_output_and_exit_1(project, run_cli):
    write(project / "train.py", BUGGY)
    code, out, err = run_cli("train.py")
    assert code == 1
    first = out.splitlines()[0]
    assert first.startswith("train.py:5:18: LT102 CrossEntropyLoss receives softmax output")
    assert "Found 1 finding in 1 file (1 checked)." in out
    assert err == ""


def test_clean_run_says_so_with_the_number_of_files(project, run_cli):
    write(project / "ok.py", CLEAN)
    assert run_cli("ok.py") == (0, "All checks passed (1 file checked).\n", "")
    write(project / "pkg" / "more.py", CLEAN)
    assert run_cli(".") == (0, "All checks passed (2 files checked).\n", "")


def test_quiet_drops_the_summary_only(project, run_cli):
    write(project / "ok.py", CLEAN)
    assert run_cli("-q", "ok.py") == (0, "", "")
    write(project / "train.py", BUGGY)
    code, out, err = run_cli("--quiet", "train.py")
    assert code == 1 and err == ""
    assert out.startswith("train.py:5:18: LT102 ") and len(out.splitlines()) == 1


def test_machine_readable_formats_get_no_summary(project, run_cli):
    write(project / "ok.py", CLEAN)
    assert run_cli("--format", "json", "ok.py") == (0, "[]\n", "")
    code, out, err = run_cli("--format", "github", "ok.py")
    assert (code, out, err) == (0, "", "")


def test_empty_directory_says_nothing_was_checked(project, run_cli):
    (project / "empty").mkdir()
    code, out, err = run_cli("empty")
    assert (code, out) == (0, "")
    assert err == (
        "lintorch: warning: no Python files or notebooks to check in empty "
        "(*.py, *.pyi, *.ipynb; excluded paths are skipped); nothing was checked\n"
    )
    code, out, err = run_cli("--format", "json", "empty")  # stdout stays valid JSON
    assert (code, out) == (0, "[]\n") and "nothing was checked" in err


def test_all_files_excluded_says_nothing_was_checked(project, run_cli):
    write(project / "pyproject.toml", '[tool.lintorch]\nexclude = ["gen"]\n')
    write(project / "gen" / "train.py", BUGGY)
    code, out, err = run_cli("--force-exclude", "gen/train.py")
    assert (code, out) == (0, "") and "nothing was checked" in err


def test_no_rule_selected_says_nothing_was_checked(project, run_cli):
    write(project / "train.py", BUGGY)
    for argv in (["--select="], ["--select", "LT1", "--ignore", "LT1"]):
        code, out, err = run_cli(*argv, "train.py")
        assert (code, out) == (0, "")
        assert err == "lintorch: warning: no rule is selected (select, ignore); nothing was checked\n"
    code, out, err = run_cli("--select=", "--fix", "train.py")
    assert code == 0 and "All checks passed" not in out and "nothing was checked" in err


def test_a_missing_path_alone_is_an_error_not_nothing_checked(project, run_cli):
    code, out, err = run_cli("nope.py")
    assert (code, out) == (2, "") and err == "lintorch: error: nope.py: no such file or directory\n"


def test_exit_zero(project, run_cli):
    write(project / "train.py", BUGGY)
    code, out, _ = run_cli("--exit-zero", "train.py")
    assert code == 0 and "LT102" in out


def test_json_output(project, run_cli):
    write(project / "train.py", BUGGY)
    code, out, _ = run_cli("--format", "json", "train.py")
    assert code == 1
    [item] = json.loads(out)
    assert item == {
        "path": "train.py",
        "line": 5,
        "column": 18,
        "end_line": 5,
        "end_column": 46,
        "code": "LT102",
        "name": "activation-before-cross-entropy",
        "severity": "error",
        "message": "CrossEntropyLoss receives softmax output (softmax(...))",
        "explanation": item["explanation"],
    }
    assert "log_softmax to raw logits itself" in item["explanation"] and "Pass the logits" in item["explanation"]


def test_statistics(project, run_cli):
    write(project / "a.py", BUGGY)
    write(project / "b.py", BUGGY)
    code, out, _ = run_cli("--statistics", ".")
    assert code == 1
    assert "2  LT102  activation-before-cross-entropy" in out


@pytest.mark.parametrize("selector", ["LT102", "LT1", "activation-before-cross-entropy", "lt102"])
def test_ignore_accepts_codes_prefixes_and_names(project, run_cli, selector):
    write(project / "train.py", BUGGY)
    assert run_cli("--ignore", selector, "train.py")[0] == 0


def test_select_limits_rules(project, run_cli):
    write(project / "train.py", BUGGY)
    assert run_cli("--select", "LT2", "train.py")[0] == 0
    assert run_cli("--select", "LT2", "--extend-select", "LT102", "train.py")[0] == 1


def test_unknown_selector_is_usage_error(project, run_cli):
    write(project / "train.py", BUGGY)
    code, out, err = run_cli("--select", "LT999", "train.py")
    assert code == 2 and "unknown rule code or name 'LT999'" in err and out == ""


def test_missing_path_is_error_but_others_are_linted(project, run_cli):
    write(project / "train.py", BUGGY)
    code, out, err = run_cli("train.py", "nope.py")
    assert code == 2
    assert "nope.py: no such file or directory" in err
    assert "LT102" in out


def test_directory_walk_skips_venvs_and_build(project, run_cli):
    write(project / "src" / "train.py", BUGGY)
    for skipped in (".venv", "venv", "build", "__pycache__", ".git", "pkg.egg-info"):
        write(project / skipped / "train.py", BUGGY)
    code, out, _ = run_cli(".")
    paths = {line.split(":")[0] for line in out.splitlines() if "LT102" in line}
    assert paths == {os.path.join("src", "train.py")}


def test_noqa_blanket_and_specific(project, run_cli):
    lines = BUGGY.splitlines()
    write(project / "blanket.py", "\n".join(lines[:-1] + [lines[-1] + "  # noqa"]) + "\n")
    write(project / "specific.py", "\n".join(lines[:-1] + [lines[-1] + "  # noqa: LT102"]) + "\n")
    write(project / "prefix.py", "\n".join(lines[:-1] + [lines[-1] + "  # NOQA:LT1"]) + "\n")
    write(project / "other.py", "\n".join(lines[:-1] + [lines[-1] + "  # noqa: LT201"]) + "\n")
    code, out, _ = run_cli("blanket.py", "specific.py", "prefix.py", "other.py")
    assert [line.split(":")[0] for line in out.splitlines() if "LT102" in line] == ["other.py"]


def test_stdin_with_filename(project, run_cli, monkeypatch):
    import io

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(BUGGY.encode())))
    code, out, _ = run_cli("-", "--stdin-filename", "pkg/train.py")
    assert code == 1 and out.startswith("pkg/train.py:5:18: LT102")


def test_syntax_error_is_lt000_and_run_continues(project, run_cli):
    write(project / "broken.py", "import torch\ndef f(:\n    loss.backward()\n")
    write(project / "train.py", BUGGY)
    code, out, err = run_cli("broken.py", "train.py")
    assert code == 1 and err == ""
    assert out.startswith("broken.py:2:7: LT000 cannot analyse this file: syntax error")
    assert "train.py:5:18: LT102" in out


def test_rule_docs(run_cli):
    code, out, _ = run_cli("rule", "LT102")
    assert code == 0
    assert out.startswith("LT102 activation-before-cross-entropy (error)")
    for section in ("What it does", "Why is this bad", "Symptom", "Fix", "Use instead"):
        assert section in out
    code, out, _ = run_cli("rule", "bce-on-multiclass")
    assert code == 0 and out.startswith("LT101 ")
    code, _, err = run_cli("rule", "LT999")
    assert code == 2 and "unknown rule" in err


def test_rule_all_lists_every_rule(run_cli):
    from lintorch import registry

    code, out, _ = run_cli("rule", "--all")
    assert code == 0
    for cls in registry.all_rules():
        assert f"{cls.code} {cls.name} ({cls.severity.value}" in out
    assert "LT107 softmax-dim (error (info without dim= on 1-D/2-D input or where the rank is not visible))" in out
    assert "LT000 unparsable-file (error)" in out and "LT001 internal-error (error)" in out
    code, out, _ = run_cli("rule", "--all", "--format", "json")
    assert [item["code"] for item in json.loads(out)] == ["LT000", "LT001"] + [cls.code for cls in registry.all_rules()]


@pytest.mark.parametrize("selector", ["LT000", "lt000", "unparsable-file", "LT001", "internal-error"])
def test_rule_docs_for_the_engine_codes(run_cli, selector):
    code, out, err = run_cli("rule", selector)
    assert code == 0 and err == ""
    assert out.split()[0] == ("LT000" if selector.lower() in ("lt000", "unparsable-file") else "LT001")
    for section in ("What it does", "Why is this bad", "Symptom", "Fix"):
        assert section in out
    code, out, _ = run_cli("rule", selector, "--format", "markdown")
    assert code == 0 and out.startswith("## LT00")


def test_version(run_cli, capsys):
    from lintorch import __version__

    with pytest.raises(SystemExit) as exit_info:
        run_cli("--version")
    assert exit_info.value.code == 0
    assert __version__ in capsys.readouterr().out


def test_console_script_runs_as_subprocess(tmp_path):
    """The installed entry point, a fresh process: exit code and output."""
    script = tmp_path / "train.py"
    script.write_bytes((FIXTURES / "LT501" / "bad_from_import.py").read_bytes())
    result = subprocess.run(
        [sys.executable, "-m", "lintorch", "train.py"], capture_output=True, text=True, cwd=tmp_path
    )
    assert result.returncode == 1, result.stderr
    assert "LT501" in result.stdout and result.stderr == ""


def test_linting_never_imports_torch():
    code = (
        "import sys\n"
        "from lintorch.cli import main\n"
        f"main([{str(FIXTURES)!r}, '--exit-zero', '--format', 'json'])\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip().endswith("ok")


def test_info_findings_only_for_explicitly_selected_codes(tmp_path, run_cli):
    """info findings (hygiene) are off by default and shown, as ruff shows
    rules outside its default set, when the code is selected explicitly."""
    script = tmp_path / "infer.py"
    script.write_text(
        "import torch.nn as nn\n\nmodel = nn.Linear(4, 2)\nprediction = model.forward(x)\n", encoding="utf-8"
    )
    status, out, _ = run_cli(str(script), "--no-cache")
    assert status == 0 and "LT602" not in out
    for selection in (["--extend-select", "LT602"], ["--select", "LT6"], ["--select", "ALL"]):
        status, out, _ = run_cli(str(script), "--no-cache", "--format", "json", *selection)
        assert status == 1, selection
        [finding] = json.loads(out)
        assert finding["code"] == "LT602" and finding["severity"] == "info"
    status, out, _ = run_cli(str(script), "--no-cache", "--select", "ALL", "--ignore", "LT602")
    assert status == 0 and "LT602" not in out


# -- syntax errors in files no rule needs parsed -----------------------------

NO_TRIGGER_SYNTAX_ERROR = "import torch\ndef f(:\n"


def test_syntax_error_without_trigger_words_is_reported_when_named(project, run_cli):
    write(project / "s.py", NO_TRIGGER_SYNTAX_ERROR)
    code, out, err = run_cli("s.py")
    assert code == 1 and err == ""
    assert out.startswith("s.py:2:7: LT000 cannot analyse this file: syntax error: invalid syntax")


def test_syntax_error_without_trigger_words_is_reported_in_a_walk(project, run_cli):
    write(project / "pkg" / "s.py", NO_TRIGGER_SYNTAX_ERROR)
    write(project / "pkg" / "ok.py", CLEAN)
    code, out, _ = run_cli("--format", "json", ".")
    assert code == 1
    assert [(item["path"], item["code"], item["line"]) for item in json.loads(out)] == [
        (os.path.join("pkg", "s.py"), "LT000", 2)
    ]


def test_syntax_check_follows_the_selection_of_lt000(project, run_cli):
    write(project / "s.py", NO_TRIGGER_SYNTAX_ERROR)
    assert run_cli("--ignore", "LT000", "s.py")[0] == 0
    assert run_cli("--select", "LT0", "s.py")[0] == 1


def test_syntax_newer_than_this_python_is_not_an_error_without_trigger_words(project, run_cli):
    # CPython 3.11 refuses these; libcst, which decides for analysed files, accepts them
    write(project / "new.py", "type Vector = list[float]\ndef first[T](xs: list[T]) -> T:\n    return xs[0]\n")
    code, out, _ = run_cli("--format", "json", "new.py")
    assert (code, json.loads(out)) == (0, [])


def test_fix_reports_a_syntax_error_without_trigger_words(project, run_cli):
    write(project / "s.py", NO_TRIGGER_SYNTAX_ERROR)
    code, out, _ = run_cli("--fix", "s.py")
    assert code == 1 and "s.py:2:7: LT000" in out
    assert (project / "s.py").read_text() == NO_TRIGGER_SYNTAX_ERROR


# -- a report that cannot be written -------------------------------------------

needs_dev_full = pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")


@needs_dev_full
@pytest.mark.parametrize("argv", [["train.py"], ["--format", "sarif", "train.py"], ["ok.py"]])
def test_output_file_on_a_full_disk_is_a_clear_error(project, run_cli, argv):
    write(project / "train.py", BUGGY)
    write(project / "ok.py", CLEAN)
    code, out, err = run_cli("-o", "/dev/full", *argv)
    assert (code, out) == (2, "")
    assert err == "lintorch: error: cannot write to /dev/full: No space left on device\n"


@needs_dev_full
@pytest.mark.parametrize(
    "argv", [["train.py"], ["--format", "json", "train.py"], ["--diff", "--unsafe-fixes", "fixable.py"], ["rule", "LT102"]]
)
def test_stdout_on_a_full_disk_is_a_clear_error(tmp_path, argv):
    write(tmp_path / "train.py", BUGGY)
    write(tmp_path / "fixable.py", "import torch\ny = torch.log(torch.softmax(x, dim=1))\n")
    with open("/dev/full", "w") as full:
        result = subprocess.run(
            [sys.executable, "-m", "lintorch", "--no-cache", *argv] if argv[0] != "rule" else
            [sys.executable, "-m", "lintorch", *argv],
            cwd=tmp_path, stdout=full, stderr=subprocess.PIPE, text=True,
        )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if not line.startswith("Would apply")]
    assert lines == ["lintorch: error: cannot write to standard output: No space left on device"]

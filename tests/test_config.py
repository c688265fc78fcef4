"""[tool.lintorch] in pyproject.toml."""

import json
import os
import textwrap

import pytest

from conftest import BUGGY, write


def pyproject(root, body):
    write(root / "pyproject.toml", textwrap.dedent(body))


def test_config_ignore(project, run_cli):
    pyproject(project, '[tool.lintorch]\nignore = ["LT102"]\n')
    write(project / "train.py", BUGGY)
    assert run_cli("train.py")[0] == 0


def test_config_select_and_cli_extend(project, run_cli):
    pyproject(project, '[tool.lintorch]\nselect = ["LT2"]\n')
    write(project / "train.py", BUGGY)
    assert run_cli("train.py")[0] == 0
    assert run_cli("--extend-select", "LT102", "train.py")[0] == 1


def test_more_specific_select_beats_prefix_ignore(project, run_cli):
    pyproject(project, '[tool.lintorch]\nselect = ["LT102"]\nignore = ["LT1"]\n')
    write(project / "train.py", BUGGY)
    assert run_cli("train.py")[0] == 1


def test_per_file_ignores(project, run_cli):
    pyproject(
        project,
        """
        [tool.lintorch]
        per-file-ignores = { "experiments/*.py" = ["activation-before-cross-entropy"] }
        """,
    )
    write(project / "experiments" / "try.py", BUGGY)
    write(project / "train.py", BUGGY)
    code, out, _ = run_cli(".")
    assert code == 1
    assert [line.split(":")[0] for line in out.splitlines() if "LT102" in line] == ["train.py"]


def test_exclude_applies_to_walks_and_with_force_exclude_to_explicit_files(project, run_cli):
    pyproject(project, '[tool.lintorch]\nexclude = ["generated"]\n')
    write(project / "generated" / "train.py", BUGGY)
    assert run_cli(".")[0] == 0
    assert run_cli("generated/train.py")[0] == 1  # named explicitly: linted, as ruff does
    assert run_cli("--force-exclude", "generated/train.py")[0] == 0
    pyproject(project, '[tool.lintorch]\nexclude = ["generated"]\nforce-exclude = true\n')
    assert run_cli("generated/train.py")[0] == 0


def test_config_found_by_walking_up_from_paths(project, run_cli, monkeypatch):
    pyproject(project, '[tool.lintorch]\nignore = ["LT102"]\n')
    write(project / "pkg" / "deep" / "train.py", BUGGY)
    monkeypatch.chdir(project / "pkg")
    assert run_cli("deep/train.py")[0] == 0


def test_pyproject_without_lintorch_table_is_skipped(project, run_cli):
    pyproject(project, '[tool.lintorch]\nignore = ["LT102"]\n')
    pyproject(project / "sub", "[project]\nname = 'x'\n")
    write(project / "sub" / "train.py", BUGGY)
    assert run_cli("sub/train.py")[0] == 0


def test_explicit_config_and_isolated(project, run_cli):
    pyproject(project / "conf", '[tool.lintorch]\nignore = ["LT102"]\n')
    write(project / "train.py", BUGGY)
    assert run_cli("--config", "conf/pyproject.toml", "train.py")[0] == 0
    pyproject(project, '[tool.lintorch]\nignore = ["LT102"]\n')
    assert run_cli("--isolated", "train.py")[0] == 1


@pytest.mark.parametrize(
    "body,message",
    [
        ('[tool.lintorch]\nselcet = ["LT1"]\n', "unknown key(s) in [tool.lintorch]: selcet"),
        ('[tool.lintorch]\nignore = ["LT9"]\n', "unknown rule code or name 'LT9' in ignore"),
        ("[tool.lintorch]\nignore = 3\n", "ignore must be a list of strings"),
        ("[tool.lintorch]\nignore = [\n", "invalid TOML"),
        ('[tool.lintorch]\nper-file-ignores = ["x"]\n', "per-file-ignores must be a table"),
    ],
)
def test_bad_config_is_a_clear_error(project, run_cli, body, message):
    pyproject(project, body)
    write(project / "train.py", BUGGY)
    code, out, err = run_cli("train.py")
    assert code == 2 and out == ""
    assert message in err and "pyproject.toml" in err


def test_invalid_toml_names_the_line(project, run_cli):
    pyproject(project, '[tool.lintorch]\nselect = ["LT1"]\nignore = [1,,]\n')
    write(project / "train.py", BUGGY)
    code, _, err = run_cli("train.py")
    assert code == 2 and "line 3" in err


def test_missing_config_file(project, run_cli):
    write(project / "train.py", BUGGY)
    code, _, err = run_cli("--config", "nope.toml", "train.py")
    assert code == 2 and "nope.toml: config file not found" in err


@pytest.mark.parametrize(
    "body",
    [
        '[tool."lintorch"]\nignore = ["LT102"]\n',
        '[ tool.lintorch ]\nignore = ["LT102"]\n',
        '[ "tool" . \'lintorch\' ]\nignore = ["LT102"]\n',
        '[tool]\nlintorch = { ignore = ["LT102"] }\n',
        'tool.lintorch.ignore = ["LT102"]\n',
        'tool = { lintorch = { ignore = ["LT102"] } }\n',
        '["\\u0074ool".lintorch]\nignore = ["LT102"]\n',  # an escape: the bytes never say "tool"
        '[project]\nname = "x"\n\n[tool.black]\nline-length = 100\n\n[tool."lintorch"]\nignore = ["LT102"]\n',
    ],
    ids=["quoted", "spaces", "quoted-both", "inline-table", "dotted-keys", "top-inline", "escape", "among-others"],
)
def test_every_toml_spelling_of_the_table_is_found(project, run_cli, body):
    pyproject(project, body)
    write(project / "train.py", BUGGY)
    assert run_cli("train.py")[0] == 0


@pytest.mark.parametrize(
    "body",
    [
        "# [tool.lintorch] is not here\n[tool.black]\nline-length = 100\n",
        '[project]\nname = "lintorch"\ndescription = "[tool.lintorch]"\n',
        "[tool.lintorch-extra]\nx = 1\n",
    ],
    ids=["comment", "string", "other-table"],
)
def test_text_that_only_looks_like_the_table_is_not_it(project, run_cli, body):
    pyproject(project, '[tool.lintorch]\nignore = ["LT102"]\n')
    pyproject(project / "sub", body)
    write(project / "sub" / "train.py", BUGGY)
    assert run_cli("sub/train.py")[0] == 0  # the parent's table applies, not an empty config


def test_invalid_toml_that_cannot_be_ours_is_passed_over(project, run_cli):
    pyproject(project, '[tool.lintorch]\nignore = ["LT102"]\n')
    pyproject(project / "sub", "[tool.black\nline-length = 100\n")
    write(project / "sub" / "train.py", BUGGY)
    assert run_cli("sub/train.py")[0] == 0
    pyproject(project / "sub", "[tool.lintorch\nignore = []\n")
    code, _, err = run_cli("sub/train.py")
    assert code == 2 and "invalid TOML" in err and "sub" in err


def test_force_exclude_applies_to_stdin_filename(project, run_cli, monkeypatch):
    import io
    import sys

    pyproject(project, '[tool.lintorch]\nexclude = ["generated"]\n')

    def lint_stdin(*argv):
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(BUGGY.encode())))
        return run_cli("-", "--stdin-filename", "generated/train.py", *argv)

    assert lint_stdin()[0] == 1  # named (through stdin): linted, as a named file is
    code, out, err = lint_stdin("--force-exclude")
    assert (code, out) == (0, "") and "nothing was checked" in err
    pyproject(project, '[tool.lintorch]\nexclude = ["generated"]\nforce-exclude = true\n')
    assert lint_stdin()[0] == 0


def test_extend_ignore_and_extend_exclude_add_to_the_lists(project, run_cli):
    pyproject(
        project,
        '[tool.lintorch]\nignore = ["LT2"]\nextend-ignore = ["LT102"]\n'
        'exclude = ["old"]\nextend-exclude = ["generated"]\n',
    )
    for directory in ("old", "generated", "src"):
        write(project / directory / "train.py", BUGGY + "for x in loader:\n    loss.backward()\n    optimizer.step()\n")
    assert run_cli(".") == (0, "All checks passed (1 file checked).\n", "")


def test_exclude_and_extend_exclude_on_the_command_line(project, run_cli):
    pyproject(project, '[tool.lintorch]\nexclude = ["old"]\n')
    for directory in ("old", "generated", "src"):
        write(project / directory / "train.py", BUGGY)

    def linted(*argv):
        code, out, _ = run_cli("--format", "json", *argv, ".")
        return sorted({item["path"].split(os.sep)[0] for item in json.loads(out)})

    assert linted() == ["generated", "src"]
    assert linted("--extend-exclude", "generated") == ["src"]
    assert linted("--exclude", "generated,src/*.py") == ["old"]  # replaces the config's exclude
    assert linted("--exclude", "") == ["generated", "old", "src"]


def test_command_line_exclude_is_relative_to_the_working_directory(project, run_cli, monkeypatch):
    pyproject(project, "[tool.lintorch]\n")
    write(project / "pkg" / "gen" / "sub" / "train.py", BUGGY)
    write(project / "pkg" / "src" / "train.py", BUGGY)
    monkeypatch.chdir(project / "pkg")
    code, out, _ = run_cli("--format", "json", "--exclude", "gen/sub", ".")
    assert [item["path"] for item in json.loads(out)] == [os.path.join("src", "train.py")]

"""The flake8 plugin, through the real flake8 executable."""

import subprocess
import sys

import pytest

from conftest import FIXTURES

pytest.importorskip("flake8")


def run(args, cwd):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd)


@pytest.fixture
def scripts(tmp_path):
    for name in ("LT102/bad_inline_softmax.py", "LT401/bad_grad_named_params.py", "LT501/bad_qualified_and_aliased.py"):
        target = tmp_path / name.replace("/", "_")
        target.write_bytes((FIXTURES / name).read_bytes())
    return tmp_path


def parse(output):
    rows = set()
    for line in output.splitlines():
        path, line_number, column, rest = line.split(":", 3)
        rows.add((path.lstrip("./"), int(line_number), int(column), rest.split()[0]))
    return rows


def test_flake8_reports_the_same_positions_as_the_cli(scripts):
    flake8 = run(["-m", "flake8", "--select", "LT", "."], scripts)
    assert flake8.returncode == 1, flake8.stderr
    cli = run(["-m", "lintorch", "--isolated", "."], scripts)
    cli_rows = parse("\n".join(line for line in cli.stdout.splitlines() if ": LT" in line))
    flake8_rows = parse(flake8.stdout)
    assert flake8_rows and flake8_rows == cli_rows


def test_plugin_is_registered_under_lt(scripts):
    result = run(["-m", "flake8", "--version"], scripts)
    assert "lintorch" in result.stdout


def test_flake8_noqa_and_extend_ignore(tmp_path):
    source = (FIXTURES / "LT102" / "bad_inline_softmax.py").read_text()
    (tmp_path / "a.py").write_text(source.replace("# expect: LT102:22", "# noqa: LT102"))
    (tmp_path / "b.py").write_text(source)
    result = run(["-m", "flake8", "--select", "LT", "."], tmp_path)
    assert [row[0] for row in parse(result.stdout)] == ["b.py"]
    result = run(["-m", "flake8", "--select", "LT", "--extend-ignore", "LT102", "."], tmp_path)
    assert result.returncode == 0 and result.stdout == ""


def test_flake8_default_selection_includes_lintorch(tmp_path):
    (tmp_path / "b.py").write_bytes((FIXTURES / "LT102" / "bad_inline_softmax.py").read_bytes())
    result = run(["-m", "flake8", "b.py"], tmp_path)
    assert "LT102" in result.stdout


def test_noqa_with_a_rule_name_means_the_same_to_flake8_and_the_cli(tmp_path):
    """flake8's `# noqa:` syntax takes codes only: a rule name after it makes
    a blanket `# noqa` (flake8 reads it so; the CLI uses flake8's pattern).
    The README says so; both tools must agree line for line."""
    lines = [
        "import torch",
        "import torch.nn as nn",
        "criterion = nn.CrossEntropyLoss()",
        "a = criterion(torch.softmax(x, dim=1), y)  # noqa: activation-before-cross-entropy",
        "b = criterion(torch.softmax(x, dim=1), y)  # noqa: missing-zero-grad",
        "c = criterion(torch.softmax(x, dim=1), y)  # noqa: LT201",
        "d = criterion(torch.softmax(x, dim=1), y)",
    ]
    (tmp_path / "n.py").write_text("\n".join(lines) + "\n")
    flake8 = parse(run(["-m", "flake8", "--select", "LT", "n.py"], tmp_path).stdout)
    cli = run(["-m", "lintorch", "--isolated", "--quiet", "n.py"], tmp_path)
    assert flake8 == parse(cli.stdout)
    assert sorted(row[1] for row in flake8) == [6, 7]

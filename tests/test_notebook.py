"""Jupyter notebooks: code cells linted as one program, IPython syntax
handled, findings located by cell. The notebooks under tests/data/notebooks
were written for these tests and are valid per nbformat (checked below)."""

import json
import os

import pytest

from conftest import REPO
from lintorch import engine, notebook, registry

DATA = REPO / "tests" / "data" / "notebooks"
nbformat = pytest.importorskip("nbformat")
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook  # noqa: E402


def all_rules():
    return registry.instantiate(registry.resolve_enabled(["ALL"], []))


def lint_path(path):
    return engine.lint_bytes(path.read_bytes(), str(path), all_rules())


def write_notebook(path, *cells, language="python"):
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "k", "language": language, "display_name": language}
    nb.cells = [new_markdown_cell(c[3:]) if c.startswith("md:") else new_code_cell(c) for c in cells]
    nbformat.validate(nb)
    nbformat.write(nb, str(path))
    return path


@pytest.mark.parametrize("name", sorted(p.name for p in DATA.glob("*.ipynb")))
def test_data_notebooks_are_valid_nbformat(name):
    nbformat.validate(nbformat.read(str(DATA / name), as_version=4))


def test_loss_defined_in_one_cell_and_used_in_another_is_one_program():
    findings = lint_path(DATA / "train_across_cells.ipynb")
    # criterion = nn.CrossEntropyLoss() is in cell 3; the softmax reaches it in cell 7.
    assert [(f.code, f.cell, f.line, f.column) for f in findings] == [("LT102", 7, 6, 26)]
    [finding] = findings
    cells = nbformat.read(str(DATA / "train_across_cells.ipynb"), as_version=4).cells
    line = cells[finding.cell - 1].source.splitlines()[finding.line - 1]
    assert line[finding.column - 1 : finding.end_column - 1] == "F.softmax(logits, dim=1)"


def test_magics_and_shell_escapes_are_not_syntax_errors(tmp_path):
    path = write_notebook(
        tmp_path / "magic.ipynb",
        "%matplotlib inline\n!pip install torch\n%load_ext autoreload\n%autoreload 2\nimport torch",
        "%%time\nx = torch.ones(3)\n%time y = x * 2",
        "%%bash\nfor f in *.csv; do echo \"$f (\"; done",
        "%%writefile helper.py\ndef f(:\n",
        "files = !ls -1\nresult = %timeit -o x.sum()\ntorch.ones?\n??torch.zeros\nprint('why?')  # really?",
        "for i in range(2):\n    !echo $i\n    %time x.sum()",
        "text = '''\n%not a magic inside a string\n!nor this\n'''\ntotal = (1 +\n    2)",
    )
    assert lint_path(path) == []
    lines = notebook.python_lines("for i in range(2):\n    !echo $i\n    y = x\n")
    assert lines == ["for i in range(2):", "    pass", "    y = x"]
    assert notebook.python_lines("s = '''\n%keep\n'''") == ["s = '''", "%keep", "'''"]
    assert notebook.python_lines("files = !ls") == ["files = ..."]
    assert notebook.python_lines("%%html\n<b>hi</b>") == ["", ""]
    assert notebook.python_lines("\n%%bash\nls") == ["", "", ""]
    assert notebook.python_lines("!pip install \\\n    torch\nx = 1") == ["pass", "", "x = 1"]


def test_a_cell_that_does_not_parse_is_reported_and_the_others_analysed():
    findings = lint_path(DATA / "syntax_error_cell.ipynb")
    summary = [(f.code, f.cell, f.line) for f in findings]
    # cell 2 has a syntax error; cell 4 is still analysed (criterion from cell 1);
    # cell 5's finding is silenced by its noqa comment.
    assert summary == [("LT000", 2, 1), ("LT102", 4, 2)]
    assert "cell" in findings[0].message and "other cells were analysed" in findings[0].message


def test_message_line_references_name_the_cell(tmp_path):
    path = write_notebook(
        tmp_path / "loop.ipynb",
        "import torch",
        "md:notes",
        "for x, y in loader:\n    loss = criterion(model(x), y)\n    loss.backward()\n    optimizer.step()",
    )
    [finding] = lint_path(path)
    assert (finding.code, finding.cell, finding.line) == ("LT201", 3, 4)
    assert "(line 1 of cell 3)" in finding.message


def test_non_python_notebook_is_skipped():
    assert lint_path(DATA / "r_kernel.ipynb") == []


def test_invalid_notebooks_are_lt000(tmp_path):
    bad_json = tmp_path / "bad.ipynb"
    bad_json.write_text('{"cells": [\n  {"cell_type": "code",,}\n]}', encoding="utf-8")
    [finding] = lint_path(bad_json)
    assert finding.code == "LT000" and finding.line == 2 and "invalid JSON" in finding.message
    no_cells = tmp_path / "empty.ipynb"
    no_cells.write_text("{}", encoding="utf-8")
    [finding] = lint_path(no_cells)
    assert finding.code == "LT000" and "no cells" in finding.message


def test_nbformat3_worksheets(tmp_path):
    document = {
        "nbformat": 3,
        "nbformat_minor": 0,
        "metadata": {},
        "worksheets": [
            {
                "cells": [
                    {"cell_type": "markdown", "source": ["# v3"]},
                    {"cell_type": "code", "language": "python", "input": ["import torch.nn as nn\n", "c = nn.CrossEntropyLoss()"]},
                    {"cell_type": "code", "language": "python", "input": "loss = c(out.softmax(1), y)"},
                ]
            }
        ],
    }
    path = tmp_path / "old.ipynb"
    path.write_text(json.dumps(document), encoding="utf-8")
    assert [(f.code, f.cell, f.line, f.column) for f in lint_path(path)] == [("LT102", 3, 1, 10)]


def test_cli_text_and_json_name_the_cell(tmp_path, run_cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_notebook(
        tmp_path / "nb.ipynb",
        "import torch\nimport torch.nn as nn\ncriterion = nn.CrossEntropyLoss()",
        "md:text",
        "loss = criterion(torch.softmax(out, dim=1), y)",
    )
    code, out, _ = run_cli("--isolated", "nb.ipynb")
    assert code == 1
    assert out.startswith("nb.ipynb:cell 3:1:18: LT102 ")
    code, out, _ = run_cli("--isolated", "--format", "json", "nb.ipynb")
    [item] = json.loads(out)
    assert (item["cell"], item["line"], item["column"], item["end_column"]) == (3, 1, 18, 43)


def test_directory_walk_includes_notebooks_but_not_checkpoints(tmp_path, run_cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cells = ("import torch.nn as nn\ncriterion = nn.CrossEntropyLoss()", "loss = criterion(out.softmax(1), y)")
    (tmp_path / "src" / ".ipynb_checkpoints").mkdir(parents=True)
    write_notebook(tmp_path / "src" / "nb.ipynb", *cells)
    write_notebook(tmp_path / "src" / ".ipynb_checkpoints" / "nb-checkpoint.ipynb", *cells)
    code, out, _ = run_cli("--isolated", "src")
    assert code == 1
    assert out.splitlines()[0].startswith(os.path.join("src", "nb.ipynb") + ":cell 2:1:")
    assert "checkpoint" not in out


def test_fix_edits_only_the_cells_it_fixes(tmp_path, run_cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    original = (DATA / "train_across_cells.ipynb").read_text(encoding="utf-8")
    path = tmp_path / "nb.ipynb"
    path.write_text(original, encoding="utf-8")

    code, out, err = run_cli("--isolated", "--diff", "--unsafe-fixes", "nb.ipynb")
    assert code == 1 and path.read_text(encoding="utf-8") == original
    assert out.startswith("--- a/nb.ipynb:cell 7\n+++ b/nb.ipynb:cell 7\n")
    assert "-        loss = criterion(F.softmax(logits, dim=1), y)\n+        loss = criterion(logits, y)\n" in out

    code, out, err = run_cli("--isolated", "--fix", "--unsafe-fixes", "nb.ipynb")
    assert code == 0 and "Fixed 1 finding in 1 file." in err
    fixed = path.read_text(encoding="utf-8")
    # the JSON is the same apart from that one source line
    assert fixed == original.replace(
        '"        loss = criterion(F.softmax(logits, dim=1), y)\\n"', '"        loss = criterion(logits, y)\\n"'
    )
    nbformat.validate(nbformat.reads(fixed, as_version=4))
    assert run_cli("--isolated", "--fix", "--unsafe-fixes", "nb.ipynb")[0] == 0
    assert path.read_text(encoding="utf-8") == fixed


def test_fix_inserting_a_line_keeps_magics_and_other_cells(tmp_path):
    from lintorch import fix

    path = write_notebook(
        tmp_path / "loop.ipynb",
        "%matplotlib inline\nimport torch",
        "%%time\nfor x, y in loader:\n    !echo batch\n    loss = criterion(model(x), y)\n    loss.backward()\n    optimizer.step()\n",
        "md:after",
        "print('done')",
    )
    outcome = fix.fix_file(str(path), "loop.ipynb", all_rules(), unsafe=True)
    assert [f.code for f in outcome.applied] == ["LT201"] and outcome.remaining == []
    cells = nbformat.read(str(path), as_version=4).cells
    assert cells[0].source == "%matplotlib inline\nimport torch"
    assert cells[1].source == (
        "%%time\nfor x, y in loader:\n    optimizer.zero_grad()\n    !echo batch\n"
        "    loss = criterion(model(x), y)\n    loss.backward()\n    optimizer.step()\n"
    )
    assert cells[3].source == "print('done')"


def test_notebook_in_an_unknown_json_layout_is_not_rewritten(tmp_path, run_cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    document = json.loads((DATA / "train_across_cells.ipynb").read_text(encoding="utf-8"))
    path = tmp_path / "compact.ipynb"
    path.write_text(json.dumps(document, separators=(",", ":")), encoding="utf-8")
    before = path.read_bytes()
    code, out, err = run_cli("--isolated", "--fix", "--unsafe-fixes", "compact.ipynb")
    assert code == 1 and "cell 7:6:26: LT102" in out
    assert "compact.ipynb: notebook not fixed: its JSON layout" in err
    assert path.read_bytes() == before


def test_precommit_hook_covers_notebooks():
    text = (REPO / ".pre-commit-hooks.yaml").read_text()
    assert "jupyter" in text.split("types_or:")[1].splitlines()[0]


def test_cached_notebook_findings_keep_their_cell(tmp_path, run_cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_notebook(
        tmp_path / "nb.ipynb", "import torch.nn as nn\ncriterion = nn.CrossEntropyLoss()", "loss = criterion(out.softmax(1), y)"
    )
    # the same bytes as a .py file are not a notebook: the cache must keep them apart
    (tmp_path / "same_bytes.py").write_bytes((tmp_path / "nb.ipynb").read_bytes())
    args = ("--isolated", "--cache-dir", str(tmp_path / "cache"), "nb.ipynb", "same_bytes.py")
    first = run_cli(*args)
    assert any((tmp_path / "cache").rglob("*"))
    second = run_cli(*args)
    assert first == second
    assert first[1].startswith("nb.ipynb:cell 2:1:18: LT102")
    assert "same_bytes.py" not in first[1]


@pytest.mark.skipif(__import__("shutil").which("git") is None, reason="git is required")
def test_precommit_hook_runs_on_a_notebook(tmp_path):
    """The real pre-commit picks the notebook (identify's `jupyter` type) and
    the hook reports the finding with its cell."""
    pytest.importorskip("pre_commit")
    import subprocess
    import sys

    repo = tmp_path / "user-repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    (repo / "train.ipynb").write_bytes((DATA / "train_across_cells.ipynb").read_bytes())
    subprocess.run(["git", "add", "."], cwd=repo, check=True)
    env = dict(os.environ, PRE_COMMIT_HOME=str(tmp_path / "pre-commit-home"))
    env.pop("PRE_COMMIT", None)
    result = subprocess.run(
        [sys.executable, "-m", "pre_commit", "try-repo", str(REPO), "lintorch", "--all-files"],
        cwd=repo, capture_output=True, text=True, env=env, timeout=600,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "train.ipynb:cell 7:6:26: LT102" in result.stdout


def test_file_positions_map_cell_positions_into_the_json(tmp_path):
    path = write_notebook(
        tmp_path / "pos.ipynb",
        "import torch.nn as nn\ncriterion = nn.CrossEntropyLoss()",
        'label = "caf\u00e9 \\t tab"; loss = criterion(out.softmax(1), y)',
    )
    data = path.read_bytes()
    [finding] = engine.lint_bytes(data, str(path), all_rules())
    positions = notebook.file_positions(data)
    source_line = notebook.cell_lines(data)[finding.cell][finding.line - 1]
    line, column = positions.position(finding.cell, finding.line, finding.column, source_line)
    _, end_column = positions.position(finding.cell, finding.end_line, finding.end_column, source_line)
    row = data.decode("utf-8").split("\n")[line - 1]
    assert row[column - 1 : end_column - 1] == "out.softmax(1)"
    # a notebook whose JSON is not in nbformat's layout has no file positions
    compact = json.dumps(json.loads(data), separators=(",", ":")).encode()
    assert notebook.file_positions(compact) is None


# -- a cell that does not parse, IPython's indentation, the module's place ------


def test_an_unfinished_cell_does_not_hide_the_cells_after_it(tmp_path):
    """Jupyter compiles each cell on its own. Joined first, a cell ending in
    `def forward(self, x):` and a comment used to move its error onto the
    next cell, and then the next, hiding every later finding."""
    path = write_notebook(
        tmp_path / "todo.ipynb",
        "import torch\nimport torch.nn as nn\ncriterion = nn.CrossEntropyLoss()",
        "class Net(nn.Module):\n    def forward(self, x):\n        # TODO",
        "model = nn.Linear(4, 3)\noptimizer = torch.optim.SGD(model.parameters(), lr=0.1)",
        "md:training",
        "for x, y in loader:\n    loss = criterion(torch.softmax(model(x), dim=1), y)\n"
        "    loss.backward()\n    optimizer.step()",
    )
    findings = lint_path(path)
    assert [(f.code, f.cell, f.line) for f in findings] == [
        ("LT000", 2, 3), ("LT102", 5, 2), ("LT201", 5, 4),
    ]
    assert "expected an indented block" in findings[0].message
    assert "other cells were analysed" in findings[0].message


def test_cells_that_only_parse_joined_are_each_reported(tmp_path):
    path = write_notebook(
        tmp_path / "split.ipynb",
        "import torch.nn as nn\ncriterion = nn.CrossEntropyLoss()",
        "sizes = (1,",
        "2)",
        "loss = criterion(out.softmax(1), y)",
    )
    assert [(f.code, f.cell) for f in lint_path(path)] == [("LT000", 2), ("LT000", 3), ("LT102", 4)]


def test_a_syntax_error_is_reported_in_a_notebook_no_rule_needs_parsed(tmp_path):
    path = write_notebook(tmp_path / "plain.ipynb", "x = 1", "def f(:\n    pass")
    [finding] = lint_path(path)
    assert (finding.code, finding.cell, finding.line, finding.column) == ("LT000", 2, 1, 7)


def test_common_indentation_is_removed_as_ipython_does(tmp_path):
    path = write_notebook(
        tmp_path / "indented.ipynb",
        "  import torch.nn as nn\n  criterion = nn.CrossEntropyLoss()",
        "\n    probs = out.softmax(1)\n\n    loss = criterion(out.softmax(1), y)  # the finding\n",
        "\tx = 1",
    )
    [finding] = lint_path(path)
    assert (finding.code, finding.cell, finding.line) == ("LT102", 2, 4)
    line = notebook.cell_lines(path.read_bytes())[2][3]
    assert line[finding.column - 1 : finding.end_column - 1] == "out.softmax(1)"
    code = notebook.cell_code(notebook.Cell(1, " if x:\n     y = 1\n z = '''\nkept\n '''"))
    assert code.lines == ["if x:", "    y = 1", "z = '''", "kept", "'''"]
    assert code.offsets == [1, 1, 1, 0, 1]


def test_fix_in_an_indented_cell_keeps_its_indentation(tmp_path):
    from lintorch import fix

    path = write_notebook(
        tmp_path / "indented.ipynb",
        "  import torch\n  y = torch.log(torch.softmax(x, dim=1))\n",
    )
    outcome = fix.fix_file(str(path), "indented.ipynb", all_rules())
    assert [f.code for f in outcome.applied] == ["LT105"]
    cell = nbformat.read(str(path), as_version=4).cells[0]
    assert cell.source == "  import torch\n  y = torch.log_softmax(x, dim=1)\n"


def test_no_fix_is_offered_for_a_notebook_lintorch_cannot_rewrite(tmp_path):
    nb = write_notebook(tmp_path / "nb.ipynb", "import torch\ny = torch.log(torch.softmax(x, dim=1))")
    [finding] = lint_path(nb)
    assert finding.fix is not None and finding.fix.safe
    compact = tmp_path / "compact.ipynb"
    compact.write_text(json.dumps(json.loads(nb.read_text()), separators=(",", ":")))
    [finding] = lint_path(compact)
    assert finding.code == "LT105" and finding.fix is None


def test_notebook_module_maps_and_does_not_lint():
    """notebook.py is the mapping between cells, program and file positions:
    it imports none of the modules that lint or fix (no import circle)."""
    import ast

    tree = ast.parse((REPO / "lintorch" / "notebook.py").read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lintorch"):
            imported.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names if alias.name.startswith("lintorch"))
    assert imported == {"lintorch.source"}

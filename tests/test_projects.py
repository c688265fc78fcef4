"""Multi-file projects (fixtures/projects/<name>/): facts flow between the
files of a project, findings land in the file to fix, and every entry point
(a directory, one file, flake8, the trigger-word prefilter) agrees.

Each project states its expected findings inline (`# expect: LT102`), in
notebooks inside the cell the finding is in."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import EXPECT_RE, FIXTURES, write

PROJECTS_DIR = FIXTURES / "projects"
PROJECTS = sorted(p for p in PROJECTS_DIR.iterdir() if p.is_dir())
ISOLATED = ["--isolated", "--no-cache", "--select", "ALL", "--format", "json", "--exit-zero"]


def project_files(root: Path):
    return sorted(p for p in root.rglob("*") if p.suffix in (".py", ".ipynb"))


def _expect_codes(line: str):
    match = EXPECT_RE.search(line)
    if not match:
        return []
    return [item.strip().partition("@")[0].partition(":")[0] for item in match.group("items").split(",")]


def expected(root: Path):
    """{(path, cell, line, code)} stated by `# expect:` comments."""
    out = set()
    for path in project_files(root):
        relative = path.relative_to(root).as_posix()
        if path.suffix == ".ipynb":
            cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
            for number, cell in enumerate(cells, start=1):
                text = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
                for line_number, line in enumerate(text.splitlines(), start=1):
                    out.update((relative, number, line_number, code) for code in _expect_codes(line))
        else:
            for line_number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
                out.update((relative, None, line_number, code) for code in _expect_codes(line))
    return out


def found(findings):
    return {(f["path"][2:] if f["path"].startswith("./") else f["path"], f.get("cell"), f["line"], f["code"]) for f in findings}


@pytest.fixture
def lint(run_cli, monkeypatch):
    """Run the CLI in-process from a project's root: its JSON findings."""

    def run(root: Path, *args) -> list:
        monkeypatch.chdir(root)
        code, out, err = run_cli(*ISOLATED, *args)
        assert code == 0, err
        return json.loads(out)

    return run


def test_projects_exist():
    assert len(PROJECTS) >= 12
    for root in PROJECTS:
        assert len(project_files(root)) >= 2, f"{root.name}: a project has several files"


@pytest.mark.parametrize("root", PROJECTS, ids=lambda p: p.name)
def test_project_findings_match_expectations(root, lint):
    findings = lint(root, ".")
    got = found(findings)
    want = expected(root)
    assert got == want, f"missing: {sorted(want - got)}\nextra: {sorted(got - want)}\n" + "\n".join(
        f"  {f['path']}:{f['line']} {f['code']} {f['message']}" for f in findings
    )


@pytest.mark.parametrize("root", PROJECTS, ids=lambda p: p.name)
def test_each_file_alone_gets_the_project_findings(root, lint):
    """`lintorch train.py` reads the other files for facts and reports only on train.py."""
    want = expected(root)
    for path in project_files(root):
        relative = path.relative_to(root).as_posix()
        got = found(lint(root, relative))
        assert got == {row for row in want if row[0] == relative}, relative


def test_flake8_plugin_reads_the_other_files():
    """flake8 hands the plugin one file at a time: the plugin still reads
    the files it imports and the files importing it."""
    pytest.importorskip("flake8")
    result = subprocess.run(
        [sys.executable, "-m", "flake8", "--isolated", "--select", "LT", "."], cwd=PROJECTS_DIR, capture_output=True, text=True
    )
    got = set()
    for line in result.stdout.splitlines():
        path, number, _, rest = line.split(":", 3)
        got.add((path[2:] if path.startswith("./") else path, int(number), rest.split()[0]))
    want = {
        (f"{root.name}/{path}", line, code)
        for root in PROJECTS
        for path, cell, line, code in expected(root)
        if cell is None and code != "LT000"  # flake8 reports syntax errors itself (E999)
    }
    assert {row for row in got if row[2] != "LT000"} == want, result.stdout + result.stderr


@pytest.mark.parametrize("root", PROJECTS, ids=lambda p: p.name)
def test_trigger_words_of_related_files_never_hide_a_finding(root, monkeypatch):
    """The prefilter looks at the files a module takes facts from: running
    every rule on every file regardless finds nothing more."""
    from lintorch import engine, registry
    from lintorch.project import Project

    rules = registry.instantiate(registry.known_codes(), registry.known_codes())
    monkeypatch.chdir(root)

    def run_all(unfiltered):
        project = Project(notebook_loader=engine.notebook_tree)
        out = set()
        if unfiltered:
            monkeypatch.setattr(engine, "could_trigger", lambda data, rules: list(rules))
            monkeypatch.setattr(Project, "could_trigger", lambda self, path, data, rules: list(rules))
        for path in project_files(root):
            relative = path.relative_to(root).as_posix()
            project.begin(relative)
            try:
                out |= {(f.path, f.cell, f.line, f.code) for f in engine.lint_bytes(path.read_bytes(), relative, rules, project=project)}
            finally:
                project.end()
        monkeypatch.undo()
        monkeypatch.chdir(root)
        return out

    assert run_all(False) == run_all(True)


# -- the findings cache follows the facts ------------------------------------


def _copy(name: str, tmp_path: Path) -> Path:
    root = tmp_path / name
    shutil.copytree(PROJECTS_DIR / name, root)
    return root


def _cached_lint(root: Path, *paths):
    result = subprocess.run(
        [sys.executable, "-m", "lintorch", "--isolated", "--format", "json", "--exit-zero", "--cache-dir", str(root / ".cache"), *paths],
        cwd=root, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    return {(f["path"], f["line"], f["code"]) for f in json.loads(result.stdout)}


def _relints(root: Path, *paths) -> set:
    """The files a cached run lints again (instead of serving from the cache)."""
    code = (
        "import sys, json; from lintorch import engine, cli\n"
        "seen = []\n"
        "original = engine.lint_bytes\n"
        "def spy(data, path, *a, **k):\n"
        "    seen.append(path); return original(data, path, *a, **k)\n"
        "engine.lint_bytes = spy\n"
        f"cli.main(['--isolated', '--exit-zero', '-j1', '--cache-dir', {str(root / '.cache')!r}, *sys.argv[1:]])\n"
        "print(json.dumps(seen), file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", code, *paths], cwd=root, capture_output=True, text=True)
    return set(json.loads(result.stderr.strip().splitlines()[-1]))


def test_editing_an_imported_model_invalidates_the_importer(tmp_path):
    root = _copy("softmax_model_package", tmp_path)
    assert _cached_lint(root, "train.py") == {("train.py", 16, "LT102")}
    classifier = root / "models" / "classifier.py"
    classifier.write_text(classifier.read_text().replace("return self.probabilities(self.head(self.body(x)))", "return self.head(self.body(x))"))
    assert _cached_lint(root, "train.py") == set()
    classifier.write_text((PROJECTS_DIR / "softmax_model_package" / "models" / "classifier.py").read_text())
    assert _cached_lint(root, "train.py") == {("train.py", 16, "LT102")}


def test_touching_an_unrelated_file_keeps_the_cache(tmp_path):
    root = _copy("softmax_model_package", tmp_path)
    _cached_lint(root, ".")
    assert _relints(root, ".") == set()
    write(root / "notes.py", "print('unrelated')\n")
    (root / "models" / "__init__.py").touch()  # same content: still valid
    assert _relints(root, ".") == {"notes.py"}


def test_a_caller_changing_invalidates_the_helper(tmp_path):
    """utils.py's findings depend on train.py, which calls its helper."""
    root = _copy("eval_helper_without_modes", tmp_path)
    assert ("utils.py", 9, "LT301") in _cached_lint(root, "utils.py")
    train = root / "train.py"
    train.write_text(train.read_text().replace("    print(epoch, evaluate(model, val_loader))", "    model.eval()\n    print(epoch, evaluate(model, val_loader))"))
    assert ("utils.py", 9, "LT301") not in _cached_lint(root, "utils.py")


def test_a_new_caller_invalidates_the_helper(tmp_path):
    """The importers a helper's findings were computed with are part of its cache entry."""
    root = _copy("eval_helper_without_modes", tmp_path)
    (root / "train.py").rename(tmp_path / "train.py")
    # nobody calls evaluate(): whether the model has dropout is unknown (LT302
    # needs no model: an uncalled helper's loop over data is a pass anyway)
    assert ("utils.py", 9, "LT301") not in _cached_lint(root, "utils.py")
    (tmp_path / "train.py").rename(root / "train.py")
    assert ("utils.py", 9, "LT301") in _cached_lint(root, "utils.py")


def test_a_tiny_module_memory_changes_nothing(lint):
    """Modules dropped to stay within --module-memory are parsed again when
    needed: the findings are the same, only slower."""
    for root in PROJECTS:
        assert found(lint(root, "--module-memory", "0", ".")) == expected(root), root.name


def test_a_run_served_from_the_cache_does_not_import_libcst(tmp_path):
    root = _copy("eval_helper_without_modes", tmp_path)
    cold = _cached_lint(root, ".")
    probe = (
        "import sys, json; from lintorch import cli\n"
        f"cli.main(['--isolated', '--exit-zero', '--format', 'json', '--cache-dir', {str(root / '.cache')!r}, '.'])\n"
        "print('libcst' in sys.modules, file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=root, capture_output=True, text=True)
    assert {(f["path"], f["line"], f["code"]) for f in json.loads(result.stdout)} == cold
    assert result.stderr.strip() == "False"


@pytest.mark.parametrize("root", PROJECTS, ids=lambda p: p.name)
def test_fix_reports_what_the_check_reports(root, lint, tmp_path):
    """`--fix` lints with the same cross-file facts: what it reports as left
    is what a check reports (no safe fix applies in these projects)."""
    copy = tmp_path / root.name
    shutil.copytree(root, copy)
    assert found(lint(copy, "--fix", ".")) == expected(root)


def test_a_trigger_word_appearing_in_a_helper_invalidates_the_caller(tmp_path):
    """main.py never says `backward`: whether LT201 runs on it depends on
    engine.py's words, so engine.py is part of main.py's cache entry."""
    root = _copy("step_helper_without_zero_grad", tmp_path)
    engine = root / "engine.py"
    engine.write_text(engine.read_text().replace("loss.backward()", "loss.retain_grad()"))
    assert _cached_lint(root, "main.py") == set()
    engine.write_text((PROJECTS_DIR / "step_helper_without_zero_grad" / "engine.py").read_text())
    assert _cached_lint(root, "main.py") == {("main.py", 14, "LT201")}


def test_modules_needed_again_stay_parsed_beyond_the_memory_budget(tmp_path):
    """Told which files it will lint (``expect``), a project over its budget
    drops the modules no later file reads before one it imports: the model
    module of the first and the last file is parsed once, where dropping the
    least recently used module parses it twice."""
    from lintorch import engine, registry
    from lintorch.project import Project

    model = (
        "import torch.nn as nn\nimport torch.nn.functional as F\n\n\n"
        "class Net(nn.Module):\n"
        "    def __init__(self):\n        super().__init__()\n        self.out = nn.Linear(64, 4)\n\n"
        "    def forward(self, x):\n        return F.softmax(self.out(x), dim=1)\n"
    )
    padding = "".join(f"\n\ndef unused_{i}(x):\n    return x + {i}\n" for i in range(60))
    train = (
        "import torch\nimport torch.nn as nn\nfrom shared import Net\n\n"
        "net = Net()\ncriterion = nn.NLLLoss()\noptimizer = torch.optim.Adam(net.parameters())\n"
        "for x, y in batches:\n    optimizer.zero_grad()\n    loss = criterion(net(x), y)\n"
        "    loss.backward()\n    optimizer.step()\n"
    )
    write(tmp_path / "pyproject.toml", "")
    shared = write(tmp_path / "shared.py", model + padding)
    write(tmp_path / "first.py", train)
    other = write(tmp_path / "other.py", model.replace("Net", "Other") + padding)
    write(tmp_path / "last.py", train)
    rules = registry.instantiate(registry.known_codes(), registry.known_codes())
    order = [str(tmp_path / name) for name in ("first.py", "other.py", "last.py")]
    # room for the model module and half of the unrelated one
    budget = len(shared.read_text()) + len(other.read_text()) // 2

    def parses(forecast: bool):
        project = Project(budget_chars=budget, notebook_loader=engine.notebook_tree)
        if forecast:
            project.expect(order)
        codes = []
        for path in order:
            project.begin(path)
            codes.append([f.code for f in engine.lint_bytes(Path(path).read_bytes(), path, rules, project=project)])
            project.end()
        return project.reparsed, codes

    reparsed, codes = parses(forecast=False)
    assert reparsed == 1 and codes[0] == codes[2] == ["LT103"]  # the budget is tight enough to matter
    assert parses(forecast=True) == (0, codes)

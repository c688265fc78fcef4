"""Where imports lead (lintorch.imports): search roots, resolution of
absolute and relative imports, re-exports, and the reverse scan for the
files importing a module."""

import os

import pytest

from conftest import write
from lintorch import imports


@pytest.fixture
def tree(tmp_path):
    write(tmp_path / "pyproject.toml", "[project]\nname = 'x'\n")
    write(tmp_path / "train.py", "from models import Net\nimport utils\nfrom pkg.sub import thing\n")
    write(tmp_path / "utils.py", "def evaluate(model, loader):\n    pass\n")
    write(tmp_path / "models" / "__init__.py", "from .net import Net\n")
    write(tmp_path / "models" / "net.py", "class Net:\n    pass\n")
    write(tmp_path / "pkg" / "__init__.py", "")
    write(tmp_path / "pkg" / "sub.py", "from . import helper\nfrom .. import utils\nthing = 1\n")
    write(tmp_path / "pkg" / "helper.py", "")
    write(tmp_path / "src" / "core" / "__init__.py", "")
    write(tmp_path / "scripts" / "run.py", "import sys\nsys.path.append('..')\nfrom utils import evaluate\n")
    return tmp_path


def test_module_names_and_roots(tree):
    graphs = imports.Graphs()
    sub = graphs.module(str(tree / "pkg" / "sub.py"))
    assert sub.name == "pkg.sub" and not sub.is_package
    assert sub.roots[:2] == (str(tree / "pkg"), str(tree))
    assert str(tree / "src") in sub.roots
    init = graphs.module(str(tree / "models" / "__init__.py"))
    assert init.name == "models" and init.is_package
    assert graphs.module(str(tree / "train.py")).project_root == str(tree)


def test_absolute_relative_and_package_imports(tree):
    graphs = imports.Graphs()
    train = graphs.module(str(tree / "train.py"))
    assert graphs.resolve(train, "models.Net") == (str(tree / "models" / "__init__.py"), ["Net"])
    assert graphs.resolve(train, "models.net.Net") == (str(tree / "models" / "net.py"), ["Net"])
    assert graphs.resolve(train, "utils.evaluate") == (str(tree / "utils.py"), ["evaluate"])
    assert graphs.resolve(train, "utils") == (str(tree / "utils.py"), [])
    assert graphs.resolve(train, "core") == (str(tree / "src" / "core" / "__init__.py"), [])
    sub = graphs.module(str(tree / "pkg" / "sub.py"))
    assert graphs.resolve(sub, ".helper") == (str(tree / "pkg" / "helper.py"), [])
    assert graphs.resolve(sub, "..utils") is None  # beyond the top-level package
    init = graphs.module(str(tree / "models" / "__init__.py"))
    assert graphs.resolve(init, ".net.Net") == (str(tree / "models" / "net.py"), ["Net"])


def test_third_party_torch_and_self_imports_stay_opaque(tree):
    write(tree / "torch.py", "")
    graphs = imports.Graphs()
    train = graphs.module(str(tree / "train.py"))
    assert graphs.resolve(train, "numpy.array") is None
    assert graphs.resolve(train, "torch.nn.Linear") is None
    utils = graphs.module(str(tree / "utils.py"))
    assert graphs.resolve(utils, "utils") is None  # `import utils` inside utils.py


def test_sys_path_append_adds_a_root(tree):
    graphs = imports.Graphs()
    run = graphs.module(str(tree / "scripts" / "run.py"))
    assert str(tree) in run.roots
    assert graphs.resolve(run, "utils.evaluate") == (str(tree / "utils.py"), ["evaluate"])


def test_imported_names_from_raw_bytes():
    data = b"import a.b as c, d\nfrom .x import (y,\n    z as w)\nfrom . import q\nfrom m import *\n  import late\n"
    assert set(imports.imported_names(data)) == {"a.b", "d", ".x", ".x.y", ".x.z", ".q", "m", "late"}


def test_importers_through_a_package_reexport_and_a_notebook(tree):
    write(tree / "nb.ipynb", '{"cells": [{"cell_type": "code", "source": ["from utils import evaluate\\n"]}], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}')
    graphs = imports.Graphs()
    net = graphs.importers(graphs.module(str(tree / "models" / "net.py")), 12)
    assert net == {str(tree / "models" / "__init__.py"), str(tree / "train.py")}
    utils = graphs.importers(graphs.module(str(tree / "utils.py")), 12)
    # pkg/sub.py's `from .. import utils` goes beyond its top-level package: not an import of utils.py
    assert utils == {str(tree / "train.py"), str(tree / "scripts" / "run.py"), str(tree / "nb.ipynb")}
    assert graphs.importers(graphs.module(str(tree / "utils.py")), 2) is None  # a library: too many
    assert graphs.importers(graphs.module(str(tree / "nb.ipynb")), 12) == frozenset()


def test_importers_are_resolved_not_just_spelled(tree):
    """Files spelling a module's name are candidates; only those whose
    import resolves to it are importers (one file may spell it twice)."""
    write(tree / "utils_extra.py", "thing = 1\n")
    write(tree / "extra_user.py", "import utils_extra\nfrom utils_extra import thing\n")
    write(tree / "both.py", "import utils\nfrom utils import evaluate as run_eval\nimport utils_extra\n")
    graphs = imports.Graphs()
    utils = graphs.importers(graphs.module(str(tree / "utils.py")), 12)
    assert str(tree / "both.py") in utils and str(tree / "extra_user.py") not in utils
    extra = graphs.importers(graphs.module(str(tree / "utils_extra.py")), 12)
    assert extra == {str(tree / "extra_user.py"), str(tree / "both.py")}


def test_a_project_too_large_is_not_scanned(tree, monkeypatch):
    monkeypatch.setattr(imports, "MAX_SCANNED_FILES", 3)
    graphs = imports.Graphs()
    assert graphs.importers(graphs.module(str(tree / "utils.py")), 12) is None


def test_related_files_are_imports_transitively_and_importers(tree):
    graphs = imports.Graphs()
    related = set(graphs.related(str(tree / "train.py")))
    assert related == {str(tree / p) for p in ("models/__init__.py", "models/net.py", "utils.py", "pkg/sub.py", "pkg/helper.py")}
    assert str(tree / "train.py") in graphs.related(str(tree / "utils.py"))


def test_fifo_is_never_read(tmp_path):
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs")
    os.mkfifo(tmp_path / "pipe.py")
    assert imports.read_bytes(str(tmp_path / "pipe.py")) is None


def test_dependency_check(tree):
    check = imports.DependencyCheck()
    path = str(tree / "utils.py")
    recorded = {"files": {path: check.digest_of(path)}, "importers": {}}
    assert check(recorded)
    assert not imports.DependencyCheck()({"files": {path: "0" * 32}, "importers": {}})
    importers = sorted(imports.Graphs().importers(imports.Graphs().module(path), 12))
    assert check({"files": {}, "importers": {path: importers}})
    assert not check({"files": {}, "importers": {path: importers[:1]}})
    assert not check({"files": "damaged"})

"""rules/ ships as lintorch.rules, in a wheel and in an editable install."""

import subprocess
import sys
import zipfile

from conftest import REPO
from lintorch import registry

RULE_MODULES = sorted(p.name for p in (REPO / "rules").glob("*.py"))


def test_editable_or_installed_package_finds_every_rule_module():
    import lintorch.rules

    found = {cls.__module__.rsplit(".", 1)[-1] + ".py" for cls in registry.all_rules()}
    assert found == {name for name in RULE_MODULES if name != "__init__.py"}
    assert lintorch.rules.__name__ == "lintorch.rules"


def test_wheel_ships_rules_inside_lintorch(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(REPO)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    [wheel] = tmp_path.glob("lintorch-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for module in RULE_MODULES:
        assert f"lintorch/rules/{module}" in names
    assert not any(name.startswith("rules/") for name in names), "a top-level rules package would clash"
    assert any(name.startswith("lintorch/probe/") for name in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "lintorch = lintorch.cli:main" in text
    assert "LT = lintorch.flake8_plugin:LintorchFlake8" in text


def test_the_version_lives_in_one_place_and_the_changelog_has_it():
    """pyproject.toml reads lintorch.__version__; no other file of the
    package states a version; CHANGELOG.md has a section for it."""
    import re

    from lintorch import __version__

    from lintorch.config import tomllib

    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert "version" not in pyproject["project"] and pyproject["project"]["dynamic"] == ["version"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "lintorch.__version__"}
    stated = [
        path for path in (REPO / "lintorch").rglob("*.py")
        if path.name != "__init__.py" and __version__ in path.read_text(encoding="utf-8")
    ]
    assert stated == []
    changelog = (REPO / "CHANGELOG.md").read_text(encoding="utf-8")
    assert re.search(rf"(?m)^## {re.escape(__version__)}\b", changelog)


def test_ci_builds_and_checks_the_release_before_the_tests():
    """.ci/run: sdist + wheel through `python -m build`, `twine check`, the
    wheel installed alone; pytest last (its summary closes the log) and a
    run that collects no test (exit 5) fails."""
    script = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    for step in ("-m build", "twine check --strict", "wheel-venv/bin/pip\" install", "lintorch $version"):
        assert step in script
    assert script.index("-m build") < script.index("-m pytest")
    assert '"$status" -eq 5' in script

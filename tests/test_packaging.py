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

"""Every shell command the README shows is run here, in a scratch directory
with the files it names, and the output the README shows is checked.

Blocks: ```sh (commands, no output shown: each must exit 0 or 1, never 2,
and print no traceback) and ```console (``$ command`` lines, each followed by
its output: stdout and stderr as a terminal shows them, line for line; ``...``
in a shown line stands for any text, so a long message can be shortened). A command that cannot
run here is listed in NOT_RUN with the reason; the list may not go stale.
The ```yaml pre-commit snippets are run with the real pre-commit.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional

import pytest

from conftest import FIXTURES, REPO

README = (REPO / "README.md").read_text(encoding="utf-8")
BLOCK_RE = re.compile(r"^```(?P<lang>[\w-]*)\n(?P<body>.*?)^```$", re.M | re.S)
BIN = str(Path(sys.executable).parent)

#: Commands not run by the tests, and why.
NOT_RUN = {
    "python3 -m venv .venv && .venv/bin/pip install . && .venv/bin/lintorch fixtures/LT102/bad_forward_returns_softmax.py":
        "installs from the package index; .ci/run installs a built wheel the same way and lints this example",
    "python3 -m venv .venv && .venv/bin/pip install build && .venv/bin/python -m build && .venv/bin/pip install dist/lintorch-*.whl":
        "installs from the package index; .ci/run builds, twine-checks and installs the wheel",
    "python3 -m venv .venv && .venv/bin/pip install torch==2.13.0 && .venv/bin/pip install -e '.[probe,test]' && .venv/bin/python -m pytest":
        "installs and runs this whole suite; it is what .ci/run does",
    "pip install 'lintorch[probe]'                    # torch is needed only by the probe":
        "lintorch is not on PyPI (the probe section is outside this README test's change; see Set up)",
}

# A small buggy training script (LT102 and LT201), written for these examples.
TRAIN = """\
import torch
import torch.nn as nn

model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 5))
criterion = nn.CrossEntropyLoss()
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

for x, y in loader:
    loss = criterion(torch.softmax(model(x), dim=1), y)
    loss.backward()
    optimizer.step()
"""
NOTEBOOK = REPO / "tests" / "data" / "notebooks" / "train_across_cells.ipynb"
#: The scratch directory's files (text, or a file to copy).
FILES: Dict[str, object] = {
    "train.py": TRAIN,
    "src/model.py": sorted((FIXTURES / "LT601").glob("bad_*.py"))[0],
    "nb.ipynb": NOTEBOOK,
    "train.ipynb": NOTEBOOK,
    # two multi-file projects for the Projects section
    **{
        f"{folder}/{path.relative_to(FIXTURES / 'projects' / project).as_posix()}": path
        for folder, project in (("mnist", "softmax_model_package"), ("textcls", "eval_helper_without_modes"))
        for path in sorted((FIXTURES / "projects" / project).rglob("*.py"))
    },
}
#: Per command: other contents for some files.
OVERRIDES: Dict[str, Dict[str, object]] = {
    # the README's opening example is the fixture its Set up section lints
    "lintorch train.py": {"train.py": FIXTURES / "LT102" / "bad_forward_returns_softmax.py"},
    "lintorch --output-format full train.py": {"train.py": FIXTURES / "LT102" / "bad_forward_returns_softmax.py"},
}
PROBE_SCRIPT = FIXTURES / "probe" / "lt201_bad.py"


class Command(NamedTuple):
    line: int
    text: str
    #: The shown output's lines (console blocks), or None (sh blocks).
    expected: Optional[List[str]]


def readme_commands() -> List[Command]:
    commands = []
    for block in BLOCK_RE.finditer(README):
        first_line = README.count("\n", 0, block.start()) + 2
        lines = block.group("body").splitlines()
        if block.group("lang") == "sh":
            commands += [Command(first_line + i, text, None) for i, text in enumerate(lines) if text.strip()]
        elif block.group("lang") == "console":
            for i, text in enumerate(lines):
                if text.startswith("$ "):
                    commands.append(Command(first_line + i, text[2:], []))
                else:
                    assert commands and commands[-1].expected is not None, f"README line {first_line + i}: output before a command"
                    commands[-1].expected.append(text)
    return commands


COMMANDS = readme_commands()


def test_the_readme_has_commands_and_the_skip_list_is_current():
    texts = {command.text for command in COMMANDS}
    assert len(COMMANDS) >= 20
    assert set(NOT_RUN) <= texts, f"NOT_RUN names commands the README no longer has: {set(NOT_RUN) - texts}"


def _scratch(tmp_path: Path, command: str) -> Path:
    files = dict(FILES)
    files.update(OVERRIDES.get(command, {}))
    if command.startswith("lintorch probe"):
        files["train.py"] = PROBE_SCRIPT  # a script that runs: the probe executes it
    for name, content in files.items():
        target = tmp_path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Path):
            shutil.copyfile(content, target)
        else:
            target.write_text(str(content), encoding="utf-8")
    return tmp_path


def _matches(expected: str, actual: str) -> bool:
    """Trailing blanks do not count (Markdown editors strip them)."""
    pattern = ".*".join(re.escape(part) for part in expected.rstrip().split("..."))
    return re.fullmatch(pattern, actual.rstrip()) is not None


@pytest.mark.parametrize(
    "command", [c for c in COMMANDS if c.text not in NOT_RUN], ids=lambda c: f"README:{c.line}"
)
def test_readme_command(tmp_path, command):
    cwd = _scratch(tmp_path, command.text)
    env = dict(os.environ, PATH=BIN + os.pathsep + os.environ.get("PATH", ""), CI="true", PYTHONUNBUFFERED="1")
    env.pop("NO_COLOR", None)
    result = subprocess.run(
        ["bash", "-c", command.text], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, timeout=300,
    )
    output = result.stdout
    assert "Traceback" not in output, output
    if command.expected is None:
        assert result.returncode in (0, 1), f"README line {command.line}: exit {result.returncode}\n{output[-3000:]}"
        return
    actual = output.splitlines()
    assert len(actual) == len(command.expected) and all(
        _matches(e, a) for e, a in zip(command.expected, actual)
    ), f"README line {command.line}: `{command.text}` prints\n{output}"


# -- the pre-commit snippets ----------------------------------------------------

YAML_BLOCKS = [b.group("body") for b in BLOCK_RE.finditer(README) if b.group("lang") == "yaml" and "repos:" in b.group("body")]


def _precommit(tmp_path: Path, config: str) -> subprocess.CompletedProcess:
    pytest.importorskip("pre_commit")
    if shutil.which("git") is None:
        pytest.skip("git is required")
    repo = tmp_path / "user-repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    (repo / "train.py").write_text(TRAIN, encoding="utf-8")
    (repo / "ok.py").write_text("import torch\n", encoding="utf-8")
    (repo / ".pre-commit-config.yaml").write_text(config, encoding="utf-8")
    subprocess.run(["git", "add", "."], cwd=repo, check=True)
    env = dict(os.environ, PRE_COMMIT_HOME=str(tmp_path / "pre-commit-home"), PATH=BIN + os.pathsep + os.environ["PATH"])
    env.pop("PRE_COMMIT", None)
    return subprocess.run(
        [sys.executable, "-m", "pre_commit", "run", "--all-files"], cwd=repo, capture_output=True, text=True,
        env=env, timeout=600,
    )


def test_readme_has_both_precommit_snippets():
    assert [("repo: local" in b) for b in YAML_BLOCKS] == [False, True]


def test_readme_precommit_local_hook_works_as_written(tmp_path):
    result = _precommit(tmp_path, YAML_BLOCKS[1])
    assert result.returncode == 1, result.stdout + result.stderr
    assert "train.py:9:22: LT102" in result.stdout and "train.py:11:5: LT201" in result.stdout


@pytest.mark.skipif(shutil.which("git") is None, reason="git is required")
def test_readme_precommit_hook_with_a_rev_works_once_repo_and_rev_are_filled_in(tmp_path):
    """The snippet with its two placeholders filled in as the README says:
    this repository's address (here its path) and a commit SHA."""
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True)
    if head.returncode != 0:
        pytest.skip("not a git checkout")
    config = re.sub(r"repo: https://github.com/<owner>/lintorch", f"repo: {REPO}", YAML_BLOCKS[0])
    config = re.sub(r"rev: \S+", f"rev: {head.stdout.strip()}", config)
    assert config != YAML_BLOCKS[0]
    result = _precommit(tmp_path, config)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "train.py:9:22: LT102" in result.stdout

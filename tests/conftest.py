import re
import sys
import textwrap
from pathlib import Path
from typing import Dict, List, Set, Tuple

import pytest

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "fixtures"
SEEDS = REPO.parent / "shared" / "seeds"

# `# expect: LT102` or `# expect: LT102:17, LT201@info` (code, optional 1-based
# column, optional severity the finding must have)
_ITEM = r"[A-Z]+[0-9]+(?::\d+)?(?:@(?:error|warning|info))?"
EXPECT_RE = re.compile(rf"#\s*expect:\s*(?P<items>{_ITEM}(?:\s*,\s*{_ITEM})*)")


def expectations(text: str) -> Set[Tuple[int, str, int]]:
    """(line, code, column or 0) for every `# expect:` comment."""
    out = set()
    for number, line in enumerate(text.splitlines(), start=1):
        match = EXPECT_RE.search(line)
        if not match:
            continue
        for item in match.group("items").split(","):
            code, _, column = item.strip().partition("@")[0].partition(":")
            out.add((number, code, int(column) if column else 0))
    return out


def expected_severities(text: str) -> Dict[Tuple[int, str], str]:
    """(line, code) -> severity, for the expectations that state one."""
    out = {}
    for number, line in enumerate(text.splitlines(), start=1):
        match = EXPECT_RE.search(line)
        for item in match.group("items").split(",") if match else ():
            item, _, severity = item.strip().partition("@")
            if severity:
                out[(number, item.partition(":")[0])] = severity
    return out


def analysis_of(code: str):
    """The Analysis of a dedented snippet, for tests of domain facts."""
    import libcst as cst

    from lintorch.analysis import Analysis
    from lintorch.index import ModuleIndex

    text = textwrap.dedent(code)
    return Analysis(ModuleIndex(cst.parse_module(text), "t.py", text))


def lint_text(text: str, path: str = "example.py", select: List[str] = None):
    from lintorch import engine, registry

    codes = registry.resolve_enabled(select or ["ALL"], [])
    # Fixtures state info findings too: lint as if every code were selected explicitly.
    return engine.lint_bytes(text.encode("utf-8"), path, registry.instantiate(codes, codes))


@pytest.fixture
def run_cli(capsys):
    """Run the CLI in-process: (exit code, stdout, stderr)."""
    from lintorch.cli import main

    def run(*argv):
        code = main(list(argv))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def python() -> str:
    return sys.executable


# A buggy and a clean script for CLI-level tests.
BUGGY = textwrap.dedent(
    """\
    import torch
    import torch.nn as nn

    criterion = nn.CrossEntropyLoss()
    loss = criterion(torch.softmax(logits, dim=1), y)
    """
)
CLEAN = "import torch\nx = torch.zeros(3)\n"


@pytest.fixture
def project(tmp_path, monkeypatch):
    """An empty project directory as the working directory."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path

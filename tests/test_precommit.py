"""The pre-commit hook, with the real pre-commit against a throwaway repo."""

import os
import shutil
import subprocess
import sys

import pytest

from conftest import FIXTURES, REPO

pytest.importorskip("pre_commit")
pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is required")


def git(*args, cwd):
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def user_repo(tmp_path_factory):
    root = tmp_path_factory.mktemp("user-repo")
    git("init", "-q", cwd=root)
    (root / "bad.py").write_bytes((FIXTURES / "LT501" / "bad_from_import.py").read_bytes())
    (root / "good.py").write_bytes((FIXTURES / "LT501" / "good_pyg_loader.py").read_bytes())
    shutil.copytree(FIXTURES / "projects" / "softmax_model_package", root / "project")
    git("add", ".", cwd=root)
    return root


def try_repo(user_repo, tmp_path_factory, *files):
    env = dict(os.environ, PRE_COMMIT_HOME=str(tmp_path_factory.getbasetemp() / "pre-commit-home"))
    env.pop("PRE_COMMIT", None)
    return subprocess.run(
        [sys.executable, "-m", "pre_commit", "try-repo", str(REPO), "lintorch", "--files", *files],
        cwd=user_repo,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def test_hook_fails_on_buggy_file(user_repo, tmp_path_factory):
    result = try_repo(user_repo, tmp_path_factory, "bad.py")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "bad.py:6:71: LT501" in result.stdout


def test_hook_passes_on_clean_file(user_repo, tmp_path_factory):
    result = try_repo(user_repo, tmp_path_factory, "good.py")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Passed" in result.stdout


def test_hook_on_a_changed_script_reads_the_unchanged_model(user_repo, tmp_path_factory):
    """pre-commit passes only the changed file; the model it imports is
    still read for facts, so the hook finds what a full run finds."""
    result = try_repo(user_repo, tmp_path_factory, "project/train.py")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "project/train.py:16:26: LT102" in result.stdout
    assert "(Classifier.forward, line 9 of project/models/classifier.py)" in result.stdout

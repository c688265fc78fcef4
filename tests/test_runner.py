"""Cache and parallel runs give the same answers as a plain serial run."""

import json
import os
import subprocess
import sys

from conftest import BUGGY, CLEAN, write


def make_tree(root, count=40):
    for i in range(count):
        write(root / "pkg" / f"m{i:02d}.py", BUGGY if i % 3 == 0 else CLEAN)


def json_findings(run_cli, *args):
    code, out, err = run_cli("--format", "json", *args)
    assert err == ""
    return code, json.loads(out)


def test_parallel_equals_serial(project, run_cli):
    make_tree(project)
    serial = json_findings(run_cli, "-j", "1", "--no-cache", "pkg")
    parallel = json_findings(run_cli, "-j", "2", "--no-cache", "pkg")
    assert serial == parallel
    assert serial[0] == 1 and len(serial[1]) == 14


def test_warm_cache_serves_results_without_relinting(project, run_cli, monkeypatch):
    make_tree(project, 6)
    cold = json_findings(run_cli, "-j", "1", "pkg")
    assert list((project / ".lintorch_cache").rglob("*"))

    from lintorch import engine

    def fail(*args, **kwargs):
        raise AssertionError("a cached file was linted again")

    monkeypatch.setattr(engine, "lint_bytes", fail)
    assert json_findings(run_cli, "-j", "1", "pkg") == cold


def test_cache_misses_on_edit_and_on_config_change(project, run_cli):
    make_tree(project, 3)
    assert json_findings(run_cli, "pkg")[0] == 1
    write(project / "pkg" / "m00.py", CLEAN)
    assert json_findings(run_cli, "pkg") == (0, [])
    write(project / "pkg" / "m00.py", BUGGY)
    assert json_findings(run_cli, "pkg")[0] == 1
    assert json_findings(run_cli, "--ignore", "LT102", "pkg") == (0, [])


def test_corrupt_cache_entries_are_ignored(project, run_cli):
    make_tree(project, 3)
    cold = json_findings(run_cli, "pkg")
    entries = [p for p in (project / ".lintorch_cache").rglob("*") if p.is_file() and p.parent.name != ".lintorch_cache"]
    assert entries
    for entry in entries:
        entry.write_bytes(b"\x00not json")
    assert json_findings(run_cli, "pkg") == cold


def test_no_cache_and_cache_dir(project, run_cli, tmp_path_factory):
    make_tree(project, 3)
    json_findings(run_cli, "--no-cache", "pkg")
    assert not (project / ".lintorch_cache").exists()
    elsewhere = tmp_path_factory.mktemp("cache")
    json_findings(run_cli, "--cache-dir", str(elsewhere), "pkg")
    assert (elsewhere / "CACHEDIR.TAG").is_file()


def test_concurrent_runs_share_a_cache(project):
    make_tree(project, 40)
    command = [sys.executable, "-m", "lintorch", "--format", "json", "-j", "2", "pkg"]
    runs = [subprocess.Popen(command, cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(3)]
    outputs = [run.communicate(timeout=300) for run in runs]
    assert all(run.returncode == 1 for run in runs), [err for _, err in outputs]
    results = [json.loads(out) for out, _ in outputs]
    assert results[0] == results[1] == results[2] and len(results[0]) == 14


def test_cache_misses_when_a_rule_module_changes(project, run_cli, monkeypatch):
    """Editing a rule (editable installs, rule development) must not serve
    stale findings: the key includes lintorch's own modules."""
    from lintorch import cache

    make_tree(project, 3)
    assert json_findings(run_cli, "pkg")[0] == 1
    monkeypatch.setattr(cache, "_code_fingerprint", lambda: b"edited rules")

    from lintorch import engine

    calls = []
    real = engine.lint_bytes
    monkeypatch.setattr(engine, "lint_bytes", lambda *a, **k: calls.append(1) or real(*a, **k))
    assert json_findings(run_cli, "pkg")[0] == 1
    assert calls, "the edited rules were not run: stale cache entry served"


def test_lanes_keep_directories_together_and_share_the_bytes(tmp_path):
    from lintorch.runner import plan_lanes

    sizes = {"a/1.py": 100, "a/2.py": 100, "a/3.py": 100, "b/big.py": 400, "c/1.py": 250, "c/2.py": 250}
    paths = []
    for name, size in sizes.items():
        paths.append(str(write(tmp_path / name, "#" * size)))
    lanes = plan_lanes(paths, workers=2)
    assert len(lanes) == 2
    order = [i for lane in lanes for chunk in lane for i in chunk]
    assert order == list(range(len(paths)))  # consecutive runs of the files, in order
    for lane in lanes:
        for chunk in lane:
            assert len({os.path.dirname(paths[i]) for i in chunk}) == 1
    totals = [sum(sizes[paths[i][len(str(tmp_path)) + 1 :]] for chunk in lane for i in chunk) for lane in lanes]
    assert totals == [700, 500]  # a/ and b/big.py, then c/: the nearest split to half of 1,200
    assert plan_lanes(paths[:1], workers=4)[0] == [[0]]


def test_parallel_results_come_in_input_order(project):
    """Each worker lints its own run of files, taking others' when it runs
    out; results still stream in the order the files were given."""
    from lintorch import config, runner

    paths = [str(write(project / f"d{i % 5}" / f"m{i:02d}.py", BUGGY if i % 4 == 0 else CLEAN * (1 + i % 7))) for i in range(40)]
    results = list(runner.lint_paths(paths, config.Config(), jobs=2))
    assert [path for path, _ in results] == paths
    assert [bool(findings) for _, findings in results] == [i % 4 == 0 for i in range(40)]

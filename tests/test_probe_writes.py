"""The probe never creates, changes, renames or deletes a user's file.

Each test fills a folder with the user's files, probes a script that writes,
deletes and renames there (as trainer libraries do), and compares the whole
folder byte for byte (SHA-256 of every file, the set of folders) afterwards.
The overlay's semantics (what the script itself sees) are tested without
torch in a plain child interpreter.
"""

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import REPO

from lintorch.probe import report as report_mod, sandbox

FIXTURES = REPO / "fixtures" / "probe"
LANDLOCK = sandbox.landlock_abi()[0]
needs_torch = pytest.mark.skipif(
    __import__("importlib").util.find_spec("torch") is None, reason="the probe's runs need torch")
needs_landlock = pytest.mark.skipif(not LANDLOCK, reason="this kernel has no Landlock: %s" % sandbox.landlock_abi()[1])


def snapshot(root):
    """{relative path: sha256 or 'dir'} of everything under root."""
    out = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            out[os.path.relpath(os.path.join(folder, name), root)] = "dir"
        for name in files:
            with open(os.path.join(folder, name), "rb") as handle:
                out[os.path.relpath(os.path.join(folder, name), root)] = hashlib.sha256(handle.read()).hexdigest()
    return out


def make_files(root, files):
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)


def probe_in(folder, script, *args, enforce=None, steps=5):
    """Run the probe with ``folder`` as the working directory (a child cwd,
    so that tests may run two probes at once)."""
    from lintorch.probe.cli import probe

    code = (
        "import json, sys; sys.path.insert(0, %r)\n"
        "from lintorch.probe.cli import probe\n"
        "r = probe(%r, %r, steps=%d, timeout=120.0, enforce_writes=%r)\n"
        "r['_run'] = None; json.dump(r, sys.stdout, default=str)\n"
    ) % (str(REPO), str(FIXTURES / script), list(args), steps, enforce)
    assert probe  # imported above so a broken import fails here, not in the child
    out = subprocess.run([sys.executable, "-c", code], cwd=str(folder), capture_output=True, text=True,
                         timeout=300, check=False)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def events(report, **match):
    return [e for e in report["writes"]["events"] if all(e.get(k) == v for k, v in match.items())]


CASES = {
    # Trainer-style rotation deletes the user's oldest checkpoint folders first;
    # Lightning-style version folders; atomic save through a temporary file
    "writes_rotating_checkpoints.py": {
        "out/checkpoint-100/model.pt": b"user checkpoint 100",
        "out/checkpoint-200/model.pt": b"user checkpoint 200",
        "out/checkpoint-200/trainer_state.json": b'{"global_step": 200}',
        "lightning_logs/version_0/checkpoints/epoch=9.ckpt": b"user lightning checkpoint",
        "last.pt": b"the user's last model\x00\x01",
    },
    "writes_logs_and_native.py": {
        "metrics.csv": b"step,loss\n1,0.9\n",
        "summary.json": b'{"user": true}',
        "notes.txt": b"my notes",
        "weights.npy": b"\x93NUMPY user array",
        "model.safetensors": b"user safetensors bytes",
    },
    "writes_rmtree_and_subprocess.py": {
        "outputs/result.txt": b"results of last week's run",
        "outputs/nested/plot.png": b"\x89PNG user plot",
        "report.txt": b"the user's report",
    },
}


@pytest.fixture(scope="module")
def guarded_runs(tmp_path_factory):
    """Each case probed once (two at a time): (before, after, report)."""
    def one(name):
        folder = tmp_path_factory.mktemp(name.replace(".py", ""))
        make_files(folder, CASES[name])
        before = snapshot(folder)
        result = probe_in(folder, name)
        return name, (before, snapshot(folder), result)

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(pool.map(one, CASES))


@needs_torch
@needs_landlock
@pytest.mark.parametrize("name", sorted(CASES))
def test_user_files_identical_after_the_run(guarded_runs, name):
    before, after, result = guarded_runs[name]
    assert after == before  # same files, same bytes, same folders, nothing added
    assert result["outcome"]["status"] == "stopped", result["outcome"]
    assert result["steps"] == 5
    assert result["writes"]["enforcement"]["kernel"] == "landlock"
    assert report_mod.exit_status(result) == 0


@needs_torch
@needs_landlock
def test_rotation_and_atomic_saves_work_and_are_reported(guarded_runs):
    result = guarded_runs["writes_rotating_checkpoints.py"][2]
    # the script's own asserts (it reads back last.pt, sees the rotated folders) passed
    deleted = events(result, op="delete tree", result="hidden (your copy kept)")
    assert [e["path"] for e in deleted][:2] == ["out/checkpoint-100", "out/checkpoint-200"]
    assert all(e["where"] == "line 46" for e in deleted)
    assert events(result, op="rename", path="last.pt", via="os.replace from last.pt.tmp", where="line 64")
    assert events(result, op="write", path="last.pt.tmp", via="torch.save", where="line 63")
    assert events(result, op="rename", path="out/checkpoint-1001", where="line 42")
    assert events(result, op="mkdir", path="lightning_logs/version_1", where="line 33")
    assert any(e["path"].startswith("lightning_logs/version_1/checkpoints/epoch=0-step=1.ckpt")
               for e in events(result, op="rename"))
    assert all(e["result"] != "blocked" for e in result["writes"]["events"])


@needs_torch
@needs_landlock
def test_logs_arrays_and_native_writers_are_redirected(guarded_runs):
    result = guarded_runs["writes_logs_and_native.py"][2]
    assert events(result, op="append", path="metrics.csv", where="line 29", count=4)
    assert events(result, op="write", path="weights.npy", where="line 31")
    assert events(result, op="write", path="notes.txt", where="line 36")
    assert events(result, op="write", path="summary.json", where="line 38")  # in the finally: block
    if __import__("importlib").util.find_spec("safetensors") is not None:
        assert events(result, op="write", path="model.safetensors", via="safetensors", where="line 34")


@needs_torch
@needs_landlock
def test_rmtree_and_subprocess(guarded_runs):
    result = guarded_runs["writes_rmtree_and_subprocess.py"][2]
    assert events(result, op="delete tree", path="outputs", result="hidden (your copy kept)", where="line 13")
    assert events(result, op="mkdir", path="outputs", where="line 14")
    started = events(result, op="start process", where="line 16")
    assert started and "report.txt" in started[0]["path"]
    assert "shell exit status 0" not in "\n".join(result["outcome"].get("output_tail", []))


@needs_torch
@needs_landlock
def test_a_crash_the_sandbox_causes_exits_2_never_0(tmp_path):
    make_files(tmp_path, {"report.txt": b"keep me", "results.bin": b"keep me too"})
    before = snapshot(tmp_path)
    # the shell's write is denied by the kernel, and check=True turns that into a crash
    failed = probe_in(tmp_path, "writes_rmtree_and_subprocess.py", "--check")
    # a write through an API the probe does not redirect is blocked by the audit hook
    escaped = probe_in(tmp_path, "writes_escape.py")
    assert snapshot(tmp_path) == before
    assert failed["outcome"]["status"] == "crashed"
    assert "kernel write restriction" in failed["outcome"]["probe_caused"]
    assert report_mod.exit_status(failed) == 2
    assert escaped["outcome"]["status"] == "crashed" and escaped["steps"] == 1
    assert "blocked a write outside its scratch area (results.bin)" in escaped["outcome"]["probe_caused"]
    assert events(escaped, op="open", path="results.bin", result="blocked", where="line 16")
    assert report_mod.exit_status(escaped) == 2


@needs_torch
def test_without_kernel_support_the_probe_refuses_unless_allowed(tmp_path, monkeypatch, run_cli):
    monkeypatch.setattr(sandbox, "landlock_abi", lambda: (0, "no Landlock in this test"))
    status, out, err = run_cli("probe", str(FIXTURES / "writes_logs_and_native.py"))
    assert status == 2 and out == ""
    assert "cannot stop the script from changing your files (no Landlock in this test)" in err
    assert "--allow-writes" in err
    # with --allow-writes it runs; Python-level writes are still redirected
    make_files(tmp_path, CASES["writes_logs_and_native.py"])
    before = snapshot(tmp_path)
    result = probe_in(tmp_path, "writes_logs_and_native.py", enforce=False)
    assert snapshot(tmp_path) == before
    assert result["writes"]["enforcement"] == {"kernel": None, "python": True}
    import io

    text = io.StringIO()
    report_mod.write_text(result, text)
    assert "NOT kernel-enforced (--allow-writes)" in text.getvalue()


@needs_landlock
def test_kernel_denies_native_writes_outside_the_scratch_area(tmp_path):
    """Landlock alone, without torch or the Python layer: a write by libc
    (ctypes) and by a subprocess is denied outside, allowed inside."""
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    (tmp_path / "user.txt").write_bytes(b"user")
    code = textwrap.dedent("""
        import ctypes, os, subprocess, sys
        sys.path.insert(0, %r)
        from lintorch.probe import sandbox
        sandbox.restrict_writes([%r, "/dev"])
        libc = ctypes.CDLL(None, use_errno=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        print("libc outside", libc.open(b"user.txt", flags, 0o644), ctypes.get_errno())
        print("libc inside", libc.open(os.path.join(%r, "x").encode(), flags, 0o644) >= 0)
        print("shell", subprocess.run(["sh", "-c", "echo x > user.txt"], stderr=subprocess.DEVNULL).returncode)
        print("unlink", subprocess.run(["rm", "-f", "user.txt"], stderr=subprocess.DEVNULL).returncode)
        print("devnull", open("/dev/null", "w").write("ok"))
    """) % (str(REPO), str(scratch), str(scratch))
    out = subprocess.run([sys.executable, "-c", code], cwd=str(tmp_path), capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "libc outside -1 13"  # EACCES
    assert lines[1:] == ["libc inside True", "shell 2", "unlink 1", "devnull 2"]
    assert (tmp_path / "user.txt").read_bytes() == b"user"


OVERLAY_SCRIPT = r"""
import glob, json, os, pathlib, shutil, sys, tempfile
sys.path.insert(0, REPO)
from lintorch.probe import sandbox
ov = sandbox.Overlay(SHADOW, [SHADOW, os.path.dirname(SHADOW) + "/tmp", "/dev"], lambda: "here")
sandbox.install(ov)
seen = {}
# a real file replaced, read back, appended
open("data.txt", "w").write("new")
seen["read"] = open("data.txt").read()
with open("log.txt", "a") as f:
    f.write(" more")
seen["appended"] = pathlib.Path("log.txt").read_text()
# listing merges real and shadow entries and hides deletions
os.remove("old.txt")
seen["exists_old"] = os.path.exists("old.txt")
seen["listing"] = sorted(os.listdir("."))
seen["glob"] = sorted(glob.glob("*.txt"))
seen["scandir_dirs"] = sorted(e.name for e in os.scandir(".") if e.is_dir())
# a deleted tree recreated is empty (opaque), its old files stay hidden
shutil.rmtree("runs")
os.makedirs("runs/a")
seen["runs"] = sorted(os.listdir("runs"))
seen["walk"] = sorted(p for p, _, _ in os.walk("runs"))
try:
    open("runs/old.log").read()
    seen["hidden_read"] = "readable"
except FileNotFoundError:
    seen["hidden_read"] = "missing"
# rename of a user file copies it and hides the source
os.rename("keep.txt", "moved.txt")
seen["moved"] = open("moved.txt").read()
seen["keep_exists"] = os.path.exists("keep.txt")
# tempfile in a user folder, then os.replace onto a user file
fd, tmp = tempfile.mkstemp(dir=".")
os.write(fd, b"atomic"); os.close(fd)
os.replace(tmp, "data.txt")
seen["atomic"] = open("data.txt").read()
# semantics kept: missing parent, existing target with 'x', rmdir of a non-empty folder
for name, action in [("missing_parent", lambda: open("nope/x.txt", "w")),
                     ("exclusive", lambda: open("moved.txt", "x")),
                     ("rmdir_full", lambda: os.rmdir("runs"))]:
    try:
        action()
        seen[name] = "no error"
    except OSError as exc:
        seen[name] = type(exc).__name__
seen["pathlib_mkdir"] = (pathlib.Path("p/q").mkdir(parents=True), pathlib.Path("p/q").is_dir())[1]
os.chmod("moved.txt", 0o600)
os.truncate("log.txt", 3)
seen["truncated"] = open("log.txt").read()
seen["events"] = len(ov.events)
print(json.dumps(seen))
"""


def test_overlay_gives_the_script_a_consistent_view(tmp_path):
    user = tmp_path / "user"
    make_files(user, {"data.txt": b"old", "log.txt": b"log", "old.txt": b"x", "keep.txt": b"keep",
                      "runs/old.log": b"run log"})
    shadow = tmp_path / "scratch" / "files"
    shadow.mkdir(parents=True)
    (tmp_path / "scratch" / "tmp").mkdir()
    before = snapshot(user)
    code = OVERLAY_SCRIPT.replace("REPO", repr(str(REPO))).replace("SHADOW", repr(str(shadow)))
    env = dict(os.environ, TMPDIR=str(tmp_path / "scratch" / "tmp"))
    out = subprocess.run([sys.executable, "-c", code], cwd=str(user), capture_output=True, text=True, env=env,
                         check=False)
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout)
    assert snapshot(user) == before
    assert seen["read"] == "new" and seen["appended"] == "log more"
    assert seen["exists_old"] is False
    assert seen["listing"] == ["data.txt", "keep.txt", "log.txt", "runs"]
    assert seen["glob"] == ["data.txt", "keep.txt", "log.txt"]
    assert seen["scandir_dirs"] == ["runs"]
    assert seen["runs"] == ["a"] and seen["walk"] == ["runs", "runs/a"]
    assert seen["hidden_read"] == "missing"
    assert seen["moved"] == "keep" and seen["keep_exists"] is False
    assert seen["atomic"] == "atomic"
    assert seen["missing_parent"] == "FileNotFoundError"
    assert seen["exclusive"] == "FileExistsError"
    assert seen["rmdir_full"] == "OSError"
    assert seen["pathlib_mkdir"] is True
    assert seen["truncated"] == "log"
    assert seen["events"] >= 10


def test_an_error_in_the_probes_own_path_logic_is_reported_as_a_probe_bug():
    from lintorch.probe import child

    overlay = sandbox.Overlay("/nonexistent-shadow", ["/dev"], lambda: None)
    try:
        overlay.physical(None)  # a bug of this kind: the probe's logic fed a wrong value
    except TypeError as exc:
        cause = child._probe_cause(exc, overlay, {"kernel": "landlock"})
    assert cause.startswith("an internal error of the probe (sandbox.py, line ")
    assert "please report it" in cause
    # the same exception type raised by the script's own code is the script's
    assert child._probe_cause(TypeError("script bug"), overlay, {"kernel": "landlock"}) == ""

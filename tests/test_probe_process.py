"""Process and output hygiene of the probe: SIGTERM cleans up like Ctrl-C,
the script's output is kept in a bounded buffer, --show-output never mixes
into the JSON, a script that needs CUDA gets a hint."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO

from lintorch.probe import runner

pytest.importorskip("torch")

FIXTURES = REPO / "fixtures" / "probe"


def test_ring_keeps_only_the_tail():
    ring = runner._Ring(limit=1000)
    for i in range(10000):
        ring.add(b"line %d\n" % i)
    assert len(ring.data) <= 2000 and ring.total > 60000
    assert ring.tail(2) == ["line 9998", "line 9999"]


def test_a_script_printing_a_lot_costs_a_bounded_buffer():
    from lintorch.probe.cli import probe

    result = probe(str(FIXTURES / "noisy_output.py"), ["64"], steps=3, timeout=120.0)
    run = result["_run"]
    assert result["outcome"]["status"] == "stopped" and result["steps"] == 3
    assert run.output_bytes >= 64 * 1024 * 1024
    assert len(run.output_tail) <= runner.OUTPUT_TAIL_LINES


def test_show_output_with_json_keeps_stdout_pure_json(run_cli):
    status, out, err = run_cli("probe", str(FIXTURES / "noisy_output.py"), "--format", "json", "--show-output",
                               "--steps", "2", "--", "0")
    assert status == 0
    assert json.loads(out)["steps"] == 2
    assert "last line before training" in err


def test_needs_cuda_hint(run_cli):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    status, out, _ = run_cli("probe", str(FIXTURES / "needs_cuda.py"))
    assert status == 2
    assert "this script calls CUDA" in out and "make the device configurable" in out


def test_sigterm_kills_the_script_and_removes_the_scratch_area(tmp_path):
    env = dict(os.environ, TMPDIR=str(tmp_path))
    proc = subprocess.Popen([sys.executable, "-m", "lintorch", "probe", str(FIXTURES / "hang_with_workers.py"),
                             "--timeout", "100"], cwd=str(REPO), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    deadline = time.time() + 60
    group = None
    while time.time() < deadline and group is None:  # wait for the script and its workers
        table = runner._processes()
        for pid in runner._descendants(proc.pid, table):
            if table[pid][1] == pid and len(runner._descendants(pid, table)) >= 2:
                group = pid
        time.sleep(0.2)
    assert group is not None, "the probed script did not start"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("lintorch-probe-")]
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM
    assert not runner._group_alive(group)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("lintorch-probe-")] == []

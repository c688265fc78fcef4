"""Real probe runs on CPU of the small scripts in fixtures/probe/.

Each confirmable rule has a buggy script that the probe must confirm and a
fixed twin that it must refute; crash, sys.exit, timeout, DataLoader workers,
checkpoint overwrite and offline downloads are covered too. Every run spawns
a Python that imports torch, so twin runs go two at a time and each script
is probed once per session.
"""

import io
import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("torch")

from conftest import REPO  # noqa: E402

from lintorch.probe import checks, report as report_mod, runner  # noqa: E402
from lintorch.probe.cli import probe  # noqa: E402

FIXTURES = REPO / "fixtures" / "probe"
# The fixtures put themselves on CUDA when the script can see it; on a GPU
# machine run the suite once with LINTORCH_PROBE_DEVICE=cuda.
DEVICE = os.environ.get("LINTORCH_PROBE_DEVICE", "auto")
TIMEOUT = 120.0  # generous: CI machines may be loaded; no test waits for it
_cache = {}
_lock = threading.Lock()


def run_probe(name, *args, steps=5, device=DEVICE, timeout=TIMEOUT):
    key = (name, args, steps, device, timeout)
    with _lock:
        if key in _cache:
            return _cache[key]
    result = probe(str(FIXTURES / name), list(args), steps=steps, device=device, timeout=timeout)
    with _lock:
        _cache[key] = result
    return result


def run_pair(first, second):
    with ThreadPoolExecutor(max_workers=2) as pool:
        a = pool.submit(run_probe, first)
        b = pool.submit(run_probe, second)
        return a.result(), b.result()


def check_of(report, code):
    return next(c for c in report["checks"] if c["code"] == code)


TWINS = ["LT101", "LT102", "LT103", "LT104", "LT106", "LT201", "LT202", "LT206", "LT207", "LT208", "LT301", "LT401",
         "LT501", "LT601"]

# The numbers each confirmation must quote.
EVIDENCE = {
    "LT101": ["one-hot over 4 columns", "[16, 4]"],
    "LT102": ["every row sums to 1 (max |sum - 1| = ", "SoftmaxBackward0"],
    "LT103": ["every row sums to 1 (max |sum - 1| = ", "NLLLoss"],
    "LT104": ["produced by SigmoidBackward0", "every value in ["],
    "LT106": ["produced by SigmoidBackward0", "only take values in [0, 1]", "targets span [4.2e+04, 3.7e+05]"],
    "LT208": ["SGD built at line 12 over 4 parameter tensor(s) (163 values), none of them trainable",
              "still none at its 5 step(s)"],
    "LT201": ["never cleared", "equals the step-1 gradient plus the step-2 batch gradient", "max abs diff"],
    "LT202": ["every gradient was zero or None", "total norm"],
    "LT206": ["has no grad_fn", "requires_grad=True"],
    "LT207": ["0 of 4 trainable parameters received a gradient"],
    "LT301": ["Dropout '3'", "BatchNorm1d '1'", "no-grad"],
    "LT401": ["grad_hook", "while no backward pass was running", "[32, 16]"],
    "LT501": ["TypeError", "unexpected keyword argument 'transform'", "line 12"],
    "LT601": ["all 10 rows are still identical after 5 step(s)", "every unit of this layer computes the same"],
}


@pytest.mark.parametrize("code", TWINS)
def test_buggy_script_confirmed_and_fixed_twin_refuted(code):
    bad, good = run_pair("%s_bad.py" % code.lower(), "%s_good.py" % code.lower())
    confirmed = check_of(bad, code)
    # "confirmed" needs a static finding of the code; without one it was only observed
    has_finding = any(f["code"] == code for f in bad["findings"])
    assert confirmed["status"] == ("confirmed" if has_finding else "observed"), confirmed
    assert confirmed["static_finding"] is has_finding
    for needle in EVIDENCE[code]:
        assert needle in confirmed["evidence"], (needle, confirmed["evidence"])
    refuted = check_of(good, code)
    assert refuted["status"] == "refuted", refuted
    # a static finding of this code in the buggy script (when the rule is
    # registered on this branch) is confirmed with the same evidence
    for finding in bad["findings"]:
        if finding["code"] == code:
            assert finding["status"] == "confirmed", finding
    assert not any(f["status"] == "confirmed" for f in good["findings"]), good["findings"]
    # no measurement of any code confirms anything in a fixed twin
    assert [c["code"] for c in good["checks"] if c["status"] in ("confirmed", "observed")] == []
    if checks.TABLE[code].standalone or has_finding:
        assert report_mod.exit_status(bad) == 1
    assert report_mod.exit_status(good) == 0
    for result in (bad, good):
        assert result["device"].startswith("cuda" if DEVICE == "cuda" else "cpu") and result["torch"]
        assert not result["_run"].leftover_processes


def test_eval_mode_codes_lt302_lt303():
    # validation with model.eval() but no no_grad, and no model.train() afterwards
    bad, good = run_pair("lt302_lt303_bad.py", "lt301_good.py")
    lt302, lt303 = check_of(bad, "LT302"), check_of(bad, "LT303")
    for check in (lt302, lt303):  # confirmed with a static finding, observed without
        assert check["status"] == ("confirmed" if check["static_finding"] else "observed"), check
    assert "ran with grad enabled" in lt302["evidence"], lt302
    assert "optimizer step 3 ran while" in lt303["evidence"], lt303
    assert check_of(bad, "LT301")["status"] == "not_reached"  # no no-grad pass ran
    assert check_of(good, "LT302")["status"] == "refuted"
    assert check_of(good, "LT303")["status"] == "refuted"


def test_default_run_reaches_the_validation_pass_after_the_first_epoch():
    # validation runs after 12 batches: 5 steps never see it, the default does
    short = run_probe("validation_after_epoch_bad.py", steps=5)
    assert check_of(short, "LT301")["status"] == "not_reached"
    assert "validation never ran within 5 step(s); rerun with --steps 14" in check_of(short, "LT301")["evidence"]
    bad, good = run_probe("validation_after_epoch_bad.py", steps=None), run_probe("validation_after_epoch_good.py",
                                                                                   steps=None)
    assert bad["stop_reason"] == "validation" and bad["steps"] == 13 and bad["steps_requested"] is None
    lt301 = check_of(bad, "LT301")
    assert lt301["status"] in ("observed", "confirmed") and "BatchNorm1d '1'" in lt301["evidence"]
    assert "first after step 12" in lt301["evidence"]
    assert report_mod.exit_status(bad) == 1  # batch-norm in training mode under no_grad: a bug, static or not
    for code in ("LT301", "LT302", "LT303"):
        assert check_of(good, code)["status"] == "refuted", check_of(good, code)
    assert report_mod.exit_status(good) == 0
    text = io.StringIO()
    report_mod.write_text(bad, text)
    assert "13 optimizer steps" in text.getvalue() and "after its first validation pass" in text.getvalue()


def test_update_bn_is_not_an_evaluation_pass_in_training_mode():
    result = run_probe("lt301_update_bn.py", steps=12)
    assert check_of(result, "LT301")["status"] != "observed", check_of(result, "LT301")
    assert result["symptoms"]["validation"]["train_mode"] == 0
    assert report_mod.exit_status(result) == 0


def test_step_with_closure_measured_after_the_closure_runs():
    bad, good = run_pair("closure_lt201_bad.py", "closure_lt201_good.py")
    lt201 = check_of(bad, "LT201")
    assert lt201["status"] in ("confirmed", "observed") and "were never cleared" in lt201["evidence"]
    assert check_of(good, "LT201")["status"] == "refuted"
    # LBFGS: the norms at step 1 are those the closure produced, not the None before it
    for result in (bad, good):
        norms = result["symptoms"]["gradients"]["per_parameter"]["0.weight"]["norms"]
        assert norms[0] is not None and norms[0] > 0
    assert report_mod.exit_status(bad) == 1 and report_mod.exit_status(good) == 0


def test_large_regression_loss_is_not_exploding_gradients():
    good = run_probe("lt106_good.py")
    assert good["symptoms"]["gradients"]["problems"] == {}, good["symptoms"]["gradients"]["problems"]


def test_lt208_symptoms_do_not_vanish():
    text = io.StringIO()
    report_mod.write_text(run_probe("lt208_bad.py"), text)
    assert "parameters never changed: all 4 held by the optimizer (none of them is trainable)" in text.getvalue()
    assert "gradient norms at step(): none (no trainable parameter)" in text.getvalue()


def test_lt201_accumulated_gradient_equals_sum_of_batch_gradients():
    bad = run_probe("lt201_bad.py")
    data_steps = [c for c in bad["checks"] if c["code"] == "LT201"][0]["evidence"]
    diff = float(data_steps.rsplit("max abs diff ", 1)[1].rstrip(")"))
    assert diff < 1e-5


def test_seed_like_script_text_report(run_cli):
    status, out, _ = run_cli("probe", str(FIXTURES / "seed_like_bad.py"))
    assert status == 1
    assert "LT102 activation-before-cross-entropy: CONFIRMED" in out
    assert "LT201 missing-zero-grad: CONFIRMED" in out
    assert "LT301 eval-without-eval-mode: CONFIRMED" in out
    assert "validation passes: 1 (1 with the model in training mode" in out
    for line in ("loss:", "outputs across a batch of 16", "gradient norms at step():", "learning rate Adam[0]"):
        assert line in out


def test_fixed_twin_json_report_on_cpu(run_cli):
    status, out, _ = run_cli("probe", str(FIXTURES / "seed_like_fixed.py"), "--format", "json", "--device", "cpu")
    assert status == 0
    data = json.loads(out)
    assert {"script", "device", "torch", "steps", "findings", "symptoms"} <= set(data)
    assert data["device"] == "cpu" and data["steps"] == 5
    assert data["findings"] == []
    symptoms = data["symptoms"]
    assert len(symptoms["loss"]["trace"]) == 5 and symptoms["loss"]["flat"] is False
    assert symptoms["outputs"]["identical"] is False
    assert symptoms["parameters"]["never_changed"] == []
    assert symptoms["learning_rate"] == {"Adam[0]": [0.01] * 5}
    assert symptoms["validation"] == {"passes": 1, "train_mode": 0, "grad_enabled": 0, "train_mode_layers": []}
    assert set(symptoms["gradients"]["per_parameter"]) == {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}
    assert all(c["status"] != "confirmed" for c in data["checks"])


def test_crash_before_first_step():
    result = run_probe("crash_before_step.py")
    outcome = result["outcome"]
    assert outcome["status"] == "crashed" and outcome["before_first_step"]
    assert "mat1 and mat2 shapes cannot be multiplied" in outcome["message"]
    assert 'crash_before_step.py", line 12' in outcome["traceback"]
    # the probe's own frames are hidden (the checkout's folder may itself be
    # called lintorch, so look for the package's files, not the word)
    probe_package = os.path.dirname(runner.__file__)
    assert probe_package not in outcome["traceback"] and "lintorch/probe/" not in outcome["traceback"]
    assert report_mod.exit_status(result) == 2


def test_sys_exit_and_script_arguments():
    exited = run_probe("exit_without_flag.py", device="cpu")
    assert exited["outcome"]["status"] == "exited" and exited["outcome"]["exit_code"] == 3
    assert "usage: exit_without_flag.py --go" in exited["outcome"]["output_tail"]
    # --device cpu hides accelerators from the script
    assert "visible devices: '', cuda available: False" in exited["outcome"]["output_tail"]
    assert report_mod.exit_status(exited) == 2
    ran = run_probe("exit_without_flag.py", "--go")
    assert ran["outcome"]["status"] == "stopped" and ran["steps"] == 5


def _group_alive(pid):
    return runner._group_alive(pid)


def test_timeout_kills_the_script_its_workers_and_children():
    result = run_probe("hang_with_workers.py", timeout=25.0)
    outcome = result["outcome"]
    assert outcome["status"] == "timeout" and outcome["before_first_step"]
    assert result["_run"].timed_out
    assert "hang_with_workers.py" in outcome["traceback"]
    assert not result["_run"].leftover_processes
    assert not _group_alive(result["_run"].pid)


def test_stop_gets_through_except_exception_and_workers_are_reaped():
    result = run_probe("train_with_workers.py")
    assert result["outcome"]["status"] == "stopped" and result["steps"] == 5
    assert not result["_run"].leftover_processes
    assert not _group_alive(result["_run"].pid)


def test_checkpoints_never_touch_user_files(tmp_path, monkeypatch):
    precious = {"model.pt": b"the user's trained model\x00\x01", "optimizer.ckpt": b"optimizer state"}
    for name, content in precious.items():
        (tmp_path / name).write_bytes(content)
    monkeypatch.chdir(tmp_path)
    result = probe(str(FIXTURES / "save_checkpoint.py"), [], steps=5, timeout=TIMEOUT)
    assert result["outcome"]["status"] == "stopped" and result["steps"] == 5
    for name, content in precious.items():
        assert (tmp_path / name).read_bytes() == content
    assert sorted(os.listdir(tmp_path)) == sorted(precious)
    assert set(result["symptoms"]["checkpoints"]) == {"model.pt"}  # torch.save to a path
    written = {(e["path"], e["via"]) for e in result["writes"]["events"] if e["result"] == "redirected"}
    assert written == {("model.pt", "torch.save"), ("optimizer.ckpt", "open('wb')"), ("model.pt", "open('wb')")}


def test_offline_download_is_reported_plainly():
    result = run_probe("download_data.py")
    outcome = result["outcome"]
    assert outcome["status"] == "crashed" and outcome["network"] is True
    import io

    text = io.StringIO()
    report_mod.write_text(result, text)
    assert "there is no network" in text.getvalue()


def test_script_that_never_trains():
    result = run_probe("no_training_step.py")
    assert result["outcome"]["status"] == "finished" and result["steps"] == 0
    assert report_mod.exit_status(result) == 2
    import io

    text = io.StringIO()
    report_mod.write_text(result, text)
    assert "without reaching a training step" in text.getvalue()


def test_device_cuda_on_a_gpu_machine():
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    result = run_probe("lt201_bad.py", device="cuda")
    assert result["device"].startswith("cuda:0")
    assert check_of(result, "LT201")["status"] == "confirmed"


def test_device_cuda_requires_a_gpu(run_cli):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    status, _, err = run_cli("probe", str(FIXTURES / "lt202_good.py"), "--device", "cuda")
    assert status == 2
    assert "--device cuda: no CUDA device is available" in err


def test_symptoms_of_a_model_that_never_learns():
    # zero_grad between backward and step: Adam sees zero gradients, so nothing moves
    bad = run_probe("lt202_bad.py")
    symptoms = bad["symptoms"]
    assert symptoms["loss"]["flat"] is True
    assert sorted(symptoms["parameters"]["never_changed"]) == ["0.bias", "0.weight", "2.bias", "2.weight"]
    assert set(symptoms["gradients"]["problems"].values()) == {"none"}  # zero_grad() sets them to None


def test_symptom_identical_rows_reported():
    bad = run_probe("lt601_bad.py")
    assert bad["symptoms"]["parameters"]["identical_rows"] == ["0.weight", "2.weight"]


def test_torch_compile_fullgraph_is_not_broken_by_the_probe():
    # fullgraph=True raises on any graph break, so a hook that broke the graph would crash the script
    result = run_probe("compiled_model.py", steps=3)
    assert result["outcome"]["status"] == "stopped" and result["steps"] == 3, result["outcome"]
    assert result["symptoms"]["outputs"]["module"] == "OptimizedModule"
    assert check_of(result, "LT102")["status"] == "refuted"

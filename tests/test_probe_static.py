"""The probe's torch-free half: the static CLI never imports torch, a missing
torch is a clear error, and the code -> measurement table evaluates recorded
data correctly (synthetic records, no child process)."""

import subprocess
import sys

import pytest

from conftest import REPO

from lintorch.probe import checks, report


def test_static_cli_and_probe_parent_never_import_torch():
    code = (
        "import sys\n"
        "import lintorch.cli, lintorch.probe, lintorch.probe.cli, lintorch.probe.runner\n"
        "import lintorch.probe.checks, lintorch.probe.report\n"
        "lintorch.cli.main(['--isolated', %r])\n"
        "print('torch' in sys.modules)\n" % str(REPO / "fixtures" / "LT201" / "bad_top_level_loop.py")
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.stdout.strip().splitlines()[-1] == "False", out.stdout + out.stderr


def test_probe_without_torch_says_so_and_exits_2(monkeypatch, run_cli):
    from lintorch.probe import cli

    monkeypatch.setattr(cli, "torch_available", lambda: False)
    status, out, err = run_cli("probe", str(REPO / "fixtures" / "probe" / "lt201_bad.py"))
    assert status == 2
    assert "pip install 'lintorch[probe]'" in err
    assert out == ""


def test_probe_usage_errors(run_cli):
    status, _, err = run_cli("probe", "does/not/exist.py")
    assert status == 2 and "no such file" in err
    status, _, err = run_cli("probe", str(REPO / "fixtures" / "probe" / "lt201_bad.py"), "--steps", "0")
    assert status == 2 and "--steps" in err


def test_table_covers_the_required_codes():
    required = {"LT101", "LT102", "LT103", "LT104", "LT201", "LT202", "LT206", "LT207", "LT301", "LT401",
                "LT501", "LT601"}
    assert required <= set(checks.CONFIRMABLE)


def test_every_check_on_an_empty_run_is_not_reached():
    for code in checks.CONFIRMABLE:
        result = checks.run_check(code, {})
        assert result.status == checks.NOT_REACHED, (code, result)
        assert result.evidence


def test_code_without_runtime_check():
    result = checks.run_check("LT602", {"total_steps": 3})
    assert result.status == checks.NOT_REACHED
    assert result.evidence == "no runtime check for this rule"


def _rows(identical, start=None):
    return {"param": "fc1.weight", "rows": 8, "max_row_diff": 0.0 if identical else 0.3, "scale": 0.05,
            "identical": identical, "identical_at_start": start}


def test_lt601_identical_rows_confirmed_and_diverged_refuted():
    bad = checks.run_check("LT601", {"total_steps": 5, "weight_rows": [_rows(True, True)]})
    assert bad.status == checks.CONFIRMED and "all 8 rows are still identical after 5 step(s)" in bad.evidence
    good = checks.run_check("LT601", {"total_steps": 5, "weight_rows": [_rows(False, True)]})
    assert good.status == checks.REFUTED and "diverged" in good.evidence


def _loss(fn, lo, hi, sums=None, grad_fn=None):
    record = {"fn": fn, "input_shape": [4, 3], "input_min": lo, "input_max": hi, "input_grad_fn": grad_fn}
    if sums:
        record["row_sum_min"], record["row_sum_max"] = sums
    return record


def test_probability_inputs():
    soft = {"losses": [_loss("cross_entropy", 0.01, 0.9, (1.0, 1.0), "SoftmaxBackward0")]}
    assert checks.run_check("LT102", soft).status == checks.CONFIRMED
    logits = {"losses": [_loss("cross_entropy", -2.0, 3.0, (-1.0, 2.5), "AddmmBackward0")]}
    assert checks.run_check("LT102", logits).status == checks.REFUTED
    # in [0, 1] by chance but rows do not sum to 1 and no softmax made them: not confirmed
    relu = {"losses": [_loss("cross_entropy", 0.0, 0.8, (0.4, 1.9), "ReluBackward0")]}
    assert checks.run_check("LT102", relu).status == checks.REFUTED
    log_probs = {"losses": [_loss("nll_loss", -3.0, -0.1, (-5.0, -2.0), "LogSoftmaxBackward0")]}
    result = checks.run_check("LT103", log_probs)
    assert result.status == checks.REFUTED and "log-probabilities" in result.evidence


def test_lt201_needs_two_steps():
    one = {"total_steps": 1, "steps": [{"step": 1, "uncleared": [], "params": 2}]}
    assert checks.run_check("LT201", one).status == checks.NOT_REACHED


def test_lt401_line_matching_prefers_the_findings_hook():
    hooks = [
        {"kind": "register_forward_hook", "hook": "capture", "target": "Linear", "line": 5, "fired": 3,
         "fired_in_backward": 0, "first_args": [[2, 3], [2, 4]]},
        {"kind": "register_forward_hook", "hook": "grad_hook", "target": "Conv2d", "line": 9, "fired": 2,
         "fired_in_backward": 0, "first_args": [[2, 3], [2, 4]]},
    ]
    result = checks.run_check("LT401", {"hooks": hooks}, line=9)
    assert result.status == checks.CONFIRMED and "grad_hook" in result.evidence


class _FakeFinding:
    def __init__(self, code, line):
        self.code, self.name, self.line, self.column, self.message = code, "x", line, 1, "m"


class _FakeResult:
    def __init__(self, child, timed_out=False):
        self.report, self.returncode, self.timed_out, self.seconds = child, 0, timed_out, 1.0
        self.output_tail = ["last line"]


def test_report_shape_and_exit_status():
    child = {"torch": "2.x", "outcome": {"status": "stopped"},
             "data": {"total_steps": 2, "devices": ["cpu"],
                      "dataloaders": [{"line": 7, "kwargs": ["transform"], "class": "DataLoader",
                                       "error": "TypeError: unexpected keyword argument 'transform'"}]}}
    built = report.build("train.py", [_FakeFinding("LT501", 7), _FakeFinding("LT602", 3)], _FakeResult(child), 2)
    assert set(built) >= {"script", "device", "torch", "steps", "findings", "symptoms"}
    assert [(f["code"], f["status"]) for f in built["findings"]] == [("LT501", "confirmed"), ("LT602", "not_reached")]
    assert built["findings"][1]["evidence"] == "no runtime check for this rule"
    assert report.exit_status(built) == 1


def test_report_without_child_report_is_a_clear_failure():
    built = report.build("train.py", [], _FakeResult(None, timed_out=True), 5)
    assert built["outcome"]["status"] == "timeout"
    assert built["outcome"]["before_first_step"] is True
    assert report.exit_status(built) == 2


def test_flat_loss_symptom():
    flat = report.loss_symptom({"backwards": [{"loss": 0.6931}] * 4})
    assert flat["flat"] is True
    moving = report.loss_symptom({"backwards": [{"loss": 1.0}, {"loss": 0.9}]})
    assert moving["flat"] is False


@pytest.mark.parametrize("status", ["crashed", "exited", "timeout"])
def test_failure_before_first_step_text(status):
    child = {"torch": "2.x", "outcome": {"status": status, "message": "boom", "traceback": "  File x\n"},
             "data": {"total_steps": 0}}
    built = report.build("train.py", [], _FakeResult(child), 5)
    import io

    buffer = io.StringIO()
    report.write_text(built, buffer)
    assert "before the first step" in buffer.getvalue()


def test_identical_outputs_symptom():
    same = {"forwards": [{"training": True, "grad_enabled": True, "module": "Net", "batch": 8, "shape": [8, 3],
                          "spread": 0.0, "scale": 0.7, "step": 2, "distinct_argmax": 1, "classes": 3}]}
    out = report.output_symptom(same)
    assert out["identical"] is True and out["distinct_predictions"] == 1


def test_json_output_is_strict_even_when_the_loss_diverges():
    import io
    import json

    built = report.build("train.py", [], _FakeResult({"torch": "2.x", "outcome": {"status": "stopped"},
                                                      "data": {"total_steps": 2, "backwards": [
                                                          {"loss": 1.0}, {"loss": float("inf")},
                                                          {"loss": float("nan")}]}}), 2)
    buffer = io.StringIO()
    report.write_json(built, buffer)
    data = json.loads(buffer.getvalue(), parse_constant=lambda name: pytest.fail("non-standard JSON: " + name))
    assert data["symptoms"]["loss"]["trace"] == [1.0, "inf", "nan"]
    assert data["symptoms"]["loss"]["non_finite"] is True


def _hook(**extra):
    record = {"kind": "register_forward_hook", "hook": "save_features", "target": "Conv2d", "line": 9, "fired": 4,
              "fired_in_backward": 0, "first_args": [[2, 3], [2, 8]]}
    record.update(extra)
    return record


def test_a_runtime_only_observation_is_not_a_confirmation():
    # a feature-capturing forward hook (Grad-CAM, feature extraction) without a static LT401
    child = {"torch": "2.x", "outcome": {"status": "stopped"}, "data": {"total_steps": 3, "hooks": [_hook()]}}
    built = report.build("train.py", [], _FakeResult(child), 3)
    lt401 = next(c for c in built["checks"] if c["code"] == "LT401")
    assert lt401["status"] == "observed" and lt401["problem"] is False
    assert report.exit_status(built) == 0
    import io

    text = io.StringIO()
    report.write_text(built, text)
    assert "LT401 forward-hook-for-gradients: observed, not necessarily a bug" in text.getvalue()
    assert "CONFIRMED" not in text.getvalue()
    # with the static finding (the hook treats its arguments as gradients) it is confirmed
    built = report.build("train.py", [_FakeFinding("LT401", 9)], _FakeResult(child), 3)
    assert built["findings"][0]["status"] == "confirmed" and report.exit_status(built) == 1


def test_an_observed_bug_without_a_static_finding_fails_the_run():
    child = {"torch": "2.x", "outcome": {"status": "stopped"},
             "data": {"total_steps": 3, "nograd_train_mode": [{"module": "1", "type": "BatchNorm1d", "step": 2}]}}
    built = report.build("train.py", [], _FakeResult(child), 3)
    assert next(c for c in built["checks"] if c["code"] == "LT301")["problem"] is True
    assert report.exit_status(built) == 1
    # dropout alone under no_grad can be MC dropout: an observation only
    child["data"]["nograd_train_mode"] = [{"module": "3", "type": "Dropout", "step": 2}]
    assert report.exit_status(report.build("train.py", [], _FakeResult(child), 3)) == 0


def test_exploding_gradients_are_judged_against_weights_and_loss():
    def steps(norm, weight, loss):
        return {"steps": [{"grad_norms": {"w": norm}, "weight_norms": {"w": weight}}],
                "backwards": [{"loss": loss}]}

    assert report.gradient_symptom(steps(5e3, 1.0, 1e6))["problems"] == {}  # a large MSE, correct gradients
    assert report.gradient_symptom(steps(1e6, 1.0, 1.0))["problems"] == {"w": "exploding"}
    assert report.gradient_symptom(steps(2e3, 100.0, 0.5))["problems"] == {}  # large weights, large gradients


def test_lt201_never_says_fewer_than_two_steps_when_more_ran():
    result = checks.run_check("LT201", {"total_steps": 5, "steps": []})
    assert result.status == checks.NOT_REACHED and "fewer than two" not in result.evidence
    assert "5 optimizer steps ran" in result.evidence


def test_lt208_and_lt106_checks():
    frozen = {"total_steps": 2, "optimizer_params": [{"type": "SGD", "line": 4, "index": 0, "params": 2,
                                                      "trainable": 0, "elements": 10}],
              "steps": [{"optimizer": 0, "params": 0, "step": 1}]}
    assert checks.run_check("LT208", frozen).status == checks.CONFIRMED
    frozen["steps"][0]["params"] = 2  # unfrozen before the first step
    assert checks.run_check("LT208", frozen).status == checks.REFUTED
    empty = {"optimizer_params": [{"type": "Adam", "line": 3, "error": "optimizer got an empty parameter list"}]}
    assert "empty parameter list" in checks.run_check("LT208", empty).evidence
    tanh = {"losses": [{"fn": "l1_loss", "input_shape": [4, 1], "input_producer": "TanhBackward0",
                        "target_min": -0.5, "target_max": 0.9}]}
    assert checks.run_check("LT106", tanh).status == checks.REFUTED
    tanh["losses"][0]["target_max"] = 3.0
    assert checks.run_check("LT106", tanh).status == checks.CONFIRMED

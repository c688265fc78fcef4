"""lintorch diagnose: the symptom vocabulary, the static-only path (no torch),
and the ranking on real runs of the buggy/fixed twins in fixtures/diagnose/."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from conftest import REPO
from lintorch.diagnose import causes as causes_mod
from lintorch.diagnose import symptoms

# -- the vocabulary ------------------------------------------------------------------


@pytest.mark.parametrize("text, name", [
    ("flat-loss", "flat-loss"), ("Flat Loss", "flat-loss"), ("flat_loss", "flat-loss"), ("FlatLoss", "flat-loss"),
    ("loss flat", "flat-loss"), ("flat-los", "flat-loss"), ("my loss is flat", "flat-loss"),
    ("loss not decreasing", "flat-loss"), ("nan", "nan-loss"), ("NaN loss", "nan-loss"), ("nan-lose", "nan-loss"),
    ("inf loss", "nan-loss"), ("identical outputs", "identical-outputs"), ("same-predictions", "identical-outputs"),
    ("identical", "identical-outputs"), ("chance", "chance-accuracy"), ("chance_accuracy", "chance-accuracy"),
    ("noisy validation", "noisy-validation"), ("noisy-validaton", "noisy-validation"),
    ("slow", "slow-convergence"), ("slow-convergance", "slow-convergence"), ("overfit", "overfitting"),
    ("Over-fitting", "overfitting"),
])
def test_symptom_spelling_slack(text, name):
    assert symptoms.parse(text).name == name


@pytest.mark.parametrize("text, suggestions", [("loss", ["flat-loss", "nan-loss"]), ("blah", []),
                                               ("over", ["overfitting"])])
def test_unknown_or_ambiguous_symptom_names_the_candidates(text, suggestions):
    with pytest.raises(symptoms.UnknownSymptom) as info:
        symptoms.parse(text)
    assert info.value.suggestions == suggestions
    assert "known symptoms: flat-loss, identical-outputs" in str(info.value)


def test_cli_rejects_an_unknown_symptom_and_a_missing_script(run_cli, tmp_path):
    script = tmp_path / "train.py"
    script.write_text("print(1)\n")
    code, out, err = run_cli("diagnose", str(script), "--symptom", "loss")
    assert code == 2 and "did you mean flat-loss or nan-loss?" in err and out == ""
    code, _, err = run_cli("diagnose", str(tmp_path / "missing.py"), "--symptom", "flat-loss")
    assert code == 2 and "no such file" in err


# -- ranking rules, on their own -------------------------------------------------------


def test_score_is_relevance_times_strength_so_the_symptom_reweighs_the_same_evidence():
    cause = causes_mod.Cause("LT201", "t", "w", "f", causes_mod.relevance_of_rule("LT201"), 1.0)
    assert cause.score("flat-loss") == pytest.approx(2 / 3, abs=1e-3)
    assert cause.score("overfitting") == 0
    ranked = causes_mod.rank([cause], "overfitting")
    assert ranked == []


def test_rule_missing_from_the_table_is_matched_on_its_symptom_words():
    assert causes_mod.relevance_of_rule("LT999", "loss becomes nan after a few steps") == {"nan-loss": 2}


def test_a_measurement_merges_into_the_static_finding_of_the_same_bug():
    static = causes_mod.Cause("LT204", "s", "w", "f", {"flat-loss": 2}, 0.5,
                              [{"kind": "static", "text": "x", "probe": "not_reached"}])
    measured = causes_mod.Cause("lr-decays-too-fast", "m", "w", "f", {"flat-loss": 3, "slow-convergence": 3}, 0.9,
                                [{"kind": "measurement", "text": "y"}], ("LT204",))
    merged = causes_mod.merge([static], [measured])
    assert merged == [static]
    assert static.strength == 1.0 and static.relevance["flat-loss"] == 3
    assert static.sources() == "static finding + probe measurement"


# -- without torch: static causes only --------------------------------------------------

_NO_TORCH = """
import sys, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "matplotlib"):
            raise ImportError("blocked for the test: " + name)
sys.meta_path.insert(0, Block())
import importlib.util
real = importlib.util.find_spec
importlib.util.find_spec = lambda name, *a: None if name.split(".")[0] in ("torch", "matplotlib") else real(name, *a)
from lintorch.cli import main
code = main(sys.argv[1:])
assert not [m for m in sys.modules if m.split(".")[0] in ("torch", "matplotlib")]
sys.exit(code)
"""


def _no_torch(*args):
    return subprocess.run([sys.executable, "-c", _NO_TORCH, *args], capture_output=True, text=True, cwd=REPO,
                          timeout=120)


def test_without_torch_the_static_causes_are_ranked_and_the_probe_extra_named():
    done = _no_torch("diagnose", "fixtures/diagnose/flat_softmax_tiny_lr.py", "--symptom", "flat loss")
    assert done.returncode == 1, done.stderr
    assert "PyTorch is not installed" in done.stdout and "pip install 'lintorch[probe]'" in done.stdout
    assert "1. softmax/sigmoid output fed to CrossEntropyLoss" in done.stdout
    assert "LT102, static finding;" in done.stdout


def test_without_torch_json_and_the_lint_run_import_neither_torch_nor_matplotlib():
    done = _no_torch("diagnose", "fixtures/diagnose/flat_zero_grad_before_step.py", "--symptom", "nan-loss",
                     "--format", "json")
    report = json.loads(done.stdout)
    assert report["runtime"]["status"] == "skipped" and report["symptom"]["name"] == "nan-loss"
    assert [c["id"] for c in report["causes"]] == []  # zero_grad before step never makes a loss NaN
    assert report["next_experiments"][0].startswith("Overfit one batch")
    lint = _no_torch("--isolated", "--no-cache", "fixtures/diagnose/flat_zero_grad_before_step.py")
    assert lint.returncode == 1 and "LT202" in lint.stdout


def test_html_without_matplotlib_says_which_extra(tmp_path):
    done = _no_torch("diagnose", "fixtures/diagnose/classifier_fixed.py", "--symptom", "flat-loss",
                     "--html", str(tmp_path / "r.html"))
    assert done.returncode == 2 and "pip install 'lintorch[report]'" in done.stderr
    assert not (tmp_path / "r.html").exists()


def test_no_run_ranks_static_findings_only(run_cli):
    code, out, _ = run_cli("diagnose", "fixtures/diagnose/flat_scheduler_per_batch.py", "--symptom", "slow",
                           "--no-run")
    assert code == 1
    assert "not run (--no-run)" in out and "1. epoch-based scheduler" in out


# -- real runs of the twins -----------------------------------------------------------------

torch = pytest.importorskip("torch")

import diagnose_runs  # noqa: E402

EXPECTATIONS = diagnose_runs.expectations()


def test_every_symptom_has_two_buggy_twins_and_a_fixed_one():
    for name in symptoms.VOCABULARY:
        buggy = [e for e in EXPECTATIONS if name in e.symptoms and e.causes]
        fixed = [e for e in EXPECTATIONS if name in e.symptoms and not e.causes]
        assert len(buggy) >= 2 and fixed, name
    assert any(len(e.causes) == 2 for e in EXPECTATIONS)


@pytest.mark.parametrize("expectation", EXPECTATIONS, ids=[e.script for e in EXPECTATIONS])
def test_planted_causes_rank_first_and_fixed_twins_get_no_likely_cause(expectation):
    run = diagnose_runs.run_all()[expectation.script]
    assert run["runtime"]["status"] == "ran", run["runtime"]
    for symptom in expectation.symptoms:
        diagnosis = diagnose_runs.rerank(run, symptom)
        likely = [c for c in diagnosis["causes"] if c["likelihood"] == "likely"]
        if not expectation.causes:
            assert likely == [], (symptom, [(c["id"], c["score"]) for c in likely])
            assert diagnosis["next_experiments"], "nothing explains it: the next experiments are listed"
            continue
        top = diagnosis["causes"][:len(expectation.causes)]
        assert len(top) == len(expectation.causes) and all(c["likelihood"] == "likely" for c in top), top
        found = [diagnose_runs.cause_names(c) for c in top]
        for planted in expectation.causes:
            assert any(planted in names for names in found), (planted, [c["id"] for c in diagnosis["causes"]])


def test_same_script_ranks_differently_for_flat_loss_and_nan_loss():
    run = diagnose_runs.run_all()["nan_log_softmax_raw_inputs.py"]
    nan = [c["id"] for c in diagnose_runs.rerank(run, "nan-loss")["causes"]]
    flat = [c["id"] for c in diagnose_runs.rerank(run, "flat-loss")["causes"]]
    assert nan[0] == "LT105" and flat[0] == "inputs-not-normalised", (nan, flat)
    assert nan != flat


def test_evidence_is_a_static_finding_with_its_line_and_a_measurement():
    run = diagnose_runs.run_all()["flat_softmax_tiny_lr.py"]
    first = run["causes"][0]
    static = [e for e in first["evidence"] if e["kind"] == "static"]
    measured = [e for e in first["evidence"] if e["kind"] == "measurement"]
    assert first["id"] == "LT102" and static and measured
    assert static[0]["line"] == 29 and static[0]["probe"] == "confirmed"
    assert "every row sums to 1" in measured[0]["text"]
    assert first["why"] and first["fix"].startswith("Return raw logits")


def test_measurements_reproduce_the_symptom_and_report_normal_facts():
    runs = diagnose_runs.run_all()
    nan = runs["nan_sgd_lr_huge.py"]
    assert nan["reproduced"]["status"] == "reproduced" and "became nan" in nan["reproduced"]["text"] or \
        "became inf" in nan["reproduced"]["text"]
    fixed = runs["classifier_fixed.py"]
    topics = {f["topic"] for f in fixed["facts"]}
    assert {"loss", "gradients", "updates", "relu", "labels", "inputs", "lr", "parameters", "outputs"} <= topics
    text = " ".join(f["text"] for f in fixed["facts"])
    assert "vs ln(3) = 1.099" in text and "constant over" in text and "dead ReLU units" in text


def test_json_output_of_a_real_run(run_cli):
    code, out, _ = run_cli("diagnose", "fixtures/diagnose/identical_dead_relu.py", "--symptom", "same outputs",
                           "--format", "json", "--steps", "12")
    report = json.loads(out)
    assert code == 1
    assert report["symptom"] == {"name": "identical-outputs", "asked": "same outputs",
                                 "description": "the model gives the same prediction for every input"}
    assert report["causes"][0]["id"] == "dead-relu" and report["causes"][0]["likelihood"] == "likely"
    assert report["runtime"]["steps"] == 12 and report["writes"]["enforcement"]
    assert set(report) == {"script", "symptom", "runtime", "reproduced", "explained", "causes", "facts",
                           "next_experiments", "writes"}


def test_text_output_of_a_fixed_twin_says_nothing_explains_it(run_cli, tmp_path):
    script = tmp_path / "ok.py"
    script.write_text(textwrap.dedent((REPO / "fixtures/diagnose/classifier_fixed.py").read_text()))
    code, out, _ = run_cli("diagnose", str(script), "--symptom", "flat-loss", "--steps", "8")
    assert code == 0
    assert "Nothing found explains this symptom" in out and "Next experiments:" in out
    assert "1. Overfit one batch" in out and "Lower the learning rate 10x" in out and "Check the labels" in out


def test_diagnose_runs_keep_the_probes_write_guarantee(tmp_path, monkeypatch):
    precious = {"model.pt": b"the user's trained model\x00\x01", "optimizer.ckpt": b"optimizer state"}
    for name, content in precious.items():
        (tmp_path / name).write_bytes(content)
    monkeypatch.chdir(tmp_path)
    from lintorch.diagnose.cli import diagnose

    result = diagnose(str(REPO / "fixtures" / "probe" / "save_checkpoint.py"), symptoms.parse("flat-loss"),
                      steps=5, timeout=240, allow_writes=True)  # kernel enforcement wherever the kernel can
    assert result["runtime"]["status"] == "ran" and result["runtime"]["steps"] == 5
    for name, content in precious.items():
        assert (tmp_path / name).read_bytes() == content
    assert sorted(os.listdir(tmp_path)) == sorted(precious)
    from lintorch.probe import sandbox

    if sandbox.landlock_abi()[0]:
        assert result["writes"]["enforcement"]["kernel"] == "landlock"
    written = {(e["path"], e["via"]) for e in result["writes"]["events"] if e["result"] == "redirected"}
    assert ("model.pt", "torch.save") in written and ("optimizer.ckpt", "open('wb')") in written


def test_a_script_that_crashes_before_training_still_gets_its_static_causes(run_cli):
    code, out, _ = run_cli("diagnose", "fixtures/probe/crash_before_step.py", "--symptom", "flat-loss",
                           "--format", "json")
    report = json.loads(out)
    assert report["runtime"]["status"] == "failed"
    assert report["runtime"]["message"].startswith("the run measured nothing: script failed before the first step")
    assert report["reproduced"]["status"] == "not_measured" and report["facts"] == []
    assert code in (0, 1) and code == (1 if report["explained"] else 0)

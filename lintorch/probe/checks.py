"""The table: rule code -> runtime measurement (RULES.md "Runtime confirmation").

Each check reads the child's recorded data (plain JSON) and answers
``Check(observed, evidence)``: ``True`` the rule's runtime condition was
measured (a static finding is *confirmed*), ``False`` the run measured the
opposite (*refuted*), ``None`` the run never got there (*not reached*).
Evidence is always numbers and names from the run.

Pure Python: runs in the parent, which never imports torch.
"""

from dataclasses import dataclass
from typing import Callable, Dict, List, NamedTuple, Optional

CONFIRMED, REFUTED, NOT_REACHED = "confirmed", "refuted", "not_reached"
# a measurement made without a static finding: reported as seen, never as a
# confirmation (standalone measurements still fail the run)
OBSERVED = "observed"


class Check(NamedTuple):
    observed: Optional[bool]
    evidence: str
    # overrides Measurement.standalone for this observation (None: keep it)
    problem: Optional[bool] = None

    @property
    def status(self) -> str:
        return {True: CONFIRMED, False: REFUTED, None: NOT_REACHED}[self.observed]


@dataclass(frozen=True)
class Measurement:
    code: str
    name: str
    measures: str  # what the probe measures, for docs and the text report
    check: Callable[[dict, Optional[int]], Check]
    # An observation without a static finding still fails the run (exit 1):
    # only for measurements that cannot be a legitimate pattern. The others
    # (MC dropout, frozen batch-norm, feature-capturing forward hooks) are
    # shown as observations and only confirm a static finding.
    standalone: bool = True


def _g(value) -> str:
    """Compact number formatting for evidence."""
    if value is None:
        return "None"
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 1e4 or abs(value) < 1e-3:
            return "%.2g" % value
        return "%.4g" % value
    return str(value)


def _at_line(records: List[dict], line: Optional[int]) -> List[dict]:
    """Records made at the finding's line, or all of them when none was."""
    if line is not None:
        matching = [r for r in records if r.get("line") == line]
        if matching:
            return matching
    return records


def _steps(data: dict) -> int:
    return int(data.get("total_steps") or 0)


# -- LT1xx: loss inputs --------------------------------------------------------


def _loss_name(fn: str) -> str:
    return {
        "cross_entropy": "CrossEntropyLoss / F.cross_entropy",
        "nll_loss": "NLLLoss / F.nll_loss",
        "binary_cross_entropy": "BCELoss / F.binary_cross_entropy",
        "binary_cross_entropy_with_logits": "BCEWithLogitsLoss / F.binary_cross_entropy_with_logits",
    }[fn]


def _in_unit_interval(r: dict) -> bool:
    return r["input_min"] >= 0.0 and r["input_max"] <= 1.0


def _rows_sum_to_one(r: dict) -> bool:
    return "row_sum_min" in r and abs(r["row_sum_min"] - 1) <= 1e-4 and abs(r["row_sum_max"] - 1) <= 1e-4


def _probability_input(fn: str, data: dict, line: Optional[int], activation: str) -> Check:
    records = _at_line([r for r in data.get("losses", []) if r["fn"] == fn], line)
    label = _loss_name(fn)
    if not records:
        return Check(None, "no %s call was reached" % label)
    for r in records:
        producer = r.get("input_producer", r.get("input_grad_fn"))
        made_by = " (input produced by %s)" % producer if producer else ""
        if fn in ("cross_entropy", "nll_loss") and _in_unit_interval(r) and (
            _rows_sum_to_one(r) or producer in ("SoftmaxBackward0", "SigmoidBackward0")
        ):
            deviation = r.get("row_sum_deviation", max(abs(r["row_sum_min"] - 1), abs(r["row_sum_max"] - 1)))
            sums = ("every row sums to 1 (max |sum - 1| = %s)" % _g(deviation) if _rows_sum_to_one(r)
                    else "row sums %s..%s" % (_g(r["row_sum_min"]), _g(r["row_sum_max"])))
            return Check(True, "%s input %s: every value in [%s, %s], %s%s: the loss is fed "
                         "probabilities, not %s; gradients shrink and the model stops learning" % (
                             label, r["input_shape"], _g(r["input_min"]), _g(r["input_max"]), sums, made_by,
                             "log-probabilities" if fn == "nll_loss" else "logits"))
        # logits may all fall in [0, 1] by chance (a fresh discriminator):
        # only a sigmoid node in the graph is evidence
        if fn == "binary_cross_entropy_with_logits" and _in_unit_interval(r) and producer == "SigmoidBackward0":
            return Check(True, "%s input %s: every value in [%s, %s]%s: sigmoid is applied twice, "
                         "the loss cannot go below log(1+e^-1) and learning stalls" % (
                             label, r["input_shape"], _g(r["input_min"]), _g(r["input_max"]), made_by))
    r = records[-1]
    if fn == "binary_cross_entropy_with_logits" and all(x.get("input_grad_fn") is None for x in records):
        return Check(None, "%s ran only without autograd (no graph to tell a sigmoid from raw logits)" % label)
    rows = ""
    if "row_sum_min" in r:
        rows = ", row sums %s..%s" % (_g(r["row_sum_min"]), _g(r["row_sum_max"]))
    producer = r.get("input_producer")
    return Check(False, "%s input %s over %d call(s): values in [%s, %s]%s%s: %s, not %s output" % (
        label, r["input_shape"], len(records), _g(r["input_min"]), _g(r["input_max"]), rows,
        ", produced by %s" % producer if producer else "",
        "log-probabilities" if fn == "nll_loss" and r["input_max"] <= 0 else "raw scores", activation))


def check_lt101(data: dict, line: Optional[int]) -> Check:
    records = _at_line([r for r in data.get("losses", []) if r["fn"].startswith("binary") and "target_shape" in r],
                       line)
    if not records:
        return Check(None, "no BCELoss / BCEWithLogitsLoss call was reached")
    for r in records:
        if (r.get("target_columns", 0) > 2 and r.get("target_binary")
                and r["target_row_sum_min"] == 1 and r["target_row_sum_max"] == 1):
            return Check(True, "%s target %s: every one of the %d rows is one-hot over %d columns (row sums all "
                         "exactly 1, values in {0, 1}): a single-label %d-class task trained as %d independent "
                         "yes/no problems" % (_loss_name(r["fn"]), r["target_shape"], r["target_rows"],
                                               r["target_columns"], r["target_columns"], r["target_columns"]))
    r = records[-1]
    if "target_columns" not in r:
        why = "one output per sample (binary task)"
    elif r["target_columns"] <= 2:
        why = "%d columns (binary task)" % r["target_columns"]
    elif not r.get("target_binary"):
        why = "soft targets (values other than 0/1)"
    else:
        why = "multi-hot rows (row sums %s..%s: multi-label task)" % (
            _g(r["target_row_sum_min"]), _g(r["target_row_sum_max"]))
    return Check(False, "%s target %s over %d call(s): %s, not one-hot multi-class labels" % (
        _loss_name(r["fn"]), r["target_shape"], len(records), why))


# output range of the autograd node that produced a regression input
_BOUNDED = {"SigmoidBackward0": (0.0, 1.0), "SoftmaxBackward0": (0.0, 1.0), "TanhBackward0": (-1.0, 1.0),
            "HardsigmoidBackward0": (0.0, 1.0), "HardtanhBackward0": (-1.0, 1.0)}
_REGRESSION = ("mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss")


def check_lt106(data: dict, line: Optional[int]) -> Check:
    records = _at_line([r for r in data.get("losses", []) if r["fn"] in _REGRESSION and "target_min" in r], line)
    if not records:
        return Check(None, "no regression loss (mse/l1/smooth_l1/huber) on floating-point targets was reached")
    for r in records:
        bounds = _BOUNDED.get(r.get("input_producer"))
        if bounds and (r["target_min"] < bounds[0] - 1e-6 or r["target_max"] > bounds[1] + 1e-6):
            return Check(True, "F.%s input %s produced by %s, so it can only take values in [%s, %s], but the targets "
                         "span [%s, %s]: the output saturates and cannot fit them" % (
                             r["fn"], r["input_shape"], r["input_producer"], _g(bounds[0]), _g(bounds[1]),
                             _g(r["target_min"]), _g(r["target_max"])))
    r = records[-1]
    bounds = _BOUNDED.get(r.get("input_producer"))
    if bounds:
        return Check(False, "F.%s input bounded by %s to [%s, %s], and the targets [%s, %s] lie inside that range" % (
            r["fn"], r["input_producer"], _g(bounds[0]), _g(bounds[1]), _g(r["target_min"]), _g(r["target_max"])))
    return Check(False, "F.%s input %s is not produced by a bounded activation (%s); targets [%s, %s]" % (
        r["fn"], r["input_shape"], r.get("input_producer") or "no autograd node", _g(r["target_min"]),
        _g(r["target_max"])))


def check_lt208(data: dict, line: Optional[int]) -> Check:
    built = data.get("optimizer_params", [])
    if not built:
        return Check(None, "no optimizer was built")
    steps = data.get("steps", [])
    for r in built:
        where = " at line %s" % r["line"] if r.get("line") else ""
        if r.get("error"):
            return Check(True, "%s(...)%s raised: %s" % (r["type"], where, r["error"]))
        stepped = [s for s in steps if s["optimizer"] == r.get("index")]
        if r["trainable"] == 0 and all(s["params"] == 0 for s in stepped):
            after = (", and still none at its %d step(s)" % len(stepped)) if stepped else ""
            return Check(True, "%s built%s over %d parameter tensor(s) (%s values), none of them trainable "
                         "(requires_grad=False)%s: step() has nothing to update, the model never changes" % (
                             r["type"], where, r["params"], _g(r["elements"]), after))
    return Check(False, "; ".join("%s: %d of %d parameter tensor(s) trainable" % (
        r["type"], r["trainable"], r["params"]) for r in built[:3]))


def check_lt102(data, line):
    return _probability_input("cross_entropy", data, line, "softmax/sigmoid")


def check_lt103(data, line):
    return _probability_input("nll_loss", data, line, "softmax")


def check_lt104(data, line):
    return _probability_input("binary_cross_entropy_with_logits", data, line, "sigmoid")


# -- LT2xx: the optimisation loop ---------------------------------------------


def check_lt201(data: dict, line: Optional[int]) -> Check:
    steps = data.get("steps", [])
    later = [s for s in steps if s["step"] >= 2]
    if not later:
        if _steps(data) >= 2:  # steps ran but were not measured (e.g. all after the record cap)
            return Check(None, "%d optimizer steps ran but gradient clearing between them was not measured" % (
                _steps(data)))
        return Check(None, "fewer than two optimizer steps ran (%d), so gradient clearing between steps was "
                     "not measured" % _steps(data))
    for s in later:
        if s["uncleared"]:
            names = ", ".join(s["uncleared"][:3]) + (", ..." if len(s["uncleared"]) > 3 else "")
            text = ("between optimizer steps %d and %d the gradients of %d of %d parameters (%s) were never "
                    "cleared: .grad keeps summing every batch" % (
                        s["step"] - 1, s["step"], len(s["uncleared"]), s["params"], names))
            acc = s.get("accumulation") or (data.get("accumulation") or [None])[0]
            if acc:
                text += ("; grad of %s at step %d equals the step-%d gradient plus the step-%d batch gradient "
                         "(norms %s + %s, max abs diff %s)" % (
                             acc["param"], acc["step"], acc["step"] - 1, acc["step"],
                             _g(acc["previous_norm"]), _g(acc["batch_norm"]), _g(acc["max_abs_diff"])))
            return Check(True, text)
    return Check(False, "the gradients were cleared between every pair of consecutive optimizer steps "
                 "(%d step(s) checked)" % len(later))


def check_lt202(data: dict, line: Optional[int]) -> Check:
    steps = data.get("steps", [])
    if not steps:
        return Check(None, "no optimizer step ran")
    for s in steps:
        if s["all_zero_or_none"] and s["backwards_since"] and s.get("post_backward_norm"):
            return Check(True, "at optimizer step %d every gradient was zero or None (%d parameters) although "
                         "backward() had produced gradients of total norm %s: they were erased between "
                         "backward() and step(), so the weights never change" % (
                             s["step"], s["params"], _g(s["post_backward_norm"])))
    with_grad = [s for s in steps if s.get("grad_total_norm")]
    if not with_grad:
        return Check(None, "the gradients were zero at step() but backward() produced none either (see LT207)")
    norms = [s["grad_total_norm"] for s in with_grad]
    return Check(False, "the gradients were non-zero at %d of %d optimizer step(s) (total norm %s..%s)" % (
        len(with_grad), len(steps), _g(min(norms)), _g(max(norms))))


def check_lt206(data: dict, line: Optional[int]) -> Check:
    backwards = _at_line(data.get("backwards", []), line)
    if not backwards:
        return Check(None, "no backward() call was reached")
    for b in backwards:
        if b["grad_fn"] is None:
            why = ("grad mode was disabled at backward()" if not b["grad_enabled"]
                   else "it was computed without autograd: under torch.no_grad() or from detached tensors")
            if b.get("error"):
                tail = "backward() raised %s" % b["error"]
            else:
                tail = "requires_grad=%s was set by hand on a leaf, so backward() runs and reaches no " \
                       "parameter" % b["requires_grad"]
            return Check(True, "the loss passed to backward() (before step %d) has no grad_fn (%s): %s" % (
                b["step"], why, tail))
    fns = sorted({b["grad_fn"] for b in backwards})
    return Check(False, "each of %d backward() call(s) ran on a loss with a grad_fn (%s) with grad mode on" % (
        len(backwards), ", ".join(fns)))


def check_lt207(data: dict, line: Optional[int]) -> Check:
    backwards = [b for b in data.get("backwards", []) if b.get("params") and "params_got_grad" in b]
    if not backwards:
        return Check(None, "no backward() over trainable parameters was reached")
    for b in backwards:
        if b["params_got_grad"] == 0:
            how = " (backward() raised %s)" % b["error"] if b.get("error") else " (loss grad_fn %s)" % b["grad_fn"]
            return Check(True, "after backward() before step %d, 0 of %d trainable parameters received a gradient"
                         "%s: the graph between the model output and the loss is broken" % (
                             b["step"], b["params"], how))
    got = [b["params_got_grad"] for b in backwards]
    total = backwards[0]["params"]
    return Check(False, "every backward() (%d) reached the model: %s..%s of %d trainable parameters received a "
                 "gradient" % (len(backwards), min(got), max(got), total))


# -- LT3xx: train/eval mode ------------------------------------------------------


def validation_hint(data: dict) -> str:
    """Why no validation pass was seen, and the --steps that would reach one."""
    steps = _steps(data)
    batches = data.get("epoch_batches")
    suggest = batches + 2 if batches else max(40, steps * 8)
    reason = data.get("stop_reason")
    if data.get("max_steps"):
        return "validation never ran within %d step(s); rerun with --steps %d" % (steps, suggest)
    if reason == "budget":
        return ("validation never ran within %d step(s): neither it nor the end of the first epoch came within the "
                "time budget; rerun with --steps %d and a larger --timeout" % (steps, suggest))
    return "validation never ran within %d step(s) before the script stopped" % steps


def _nograd_forwards(data: dict) -> List[dict]:
    return [f for f in data.get("forwards", []) if not f["grad_enabled"]]


def check_lt301(data: dict, line: Optional[int]) -> Check:
    bad = data.get("nograd_train_mode", [])
    if bad:
        names = sorted({"%s '%s'" % (r["type"], r["module"]) for r in bad})
        effects = []
        if any("Dropout" in r["type"] for r in bad):
            effects.append("dropout zeroes random units, so predictions are randomised")
        if any("Norm" in r["type"] for r in bad):
            effects.append("batch-norm normalises with the validation batch's statistics")
        count = data.get("nograd_train_mode_count", len(bad))
        # dropout left on under no_grad can be deliberate (MC dropout); batch-norm
        # in training mode there overwrites its running statistics with
        # evaluation batches (update_bn, which does it on purpose, is excluded)
        return Check(True, "%s ran in training mode inside a no-grad (validation) pass %d time(s), first after "
                     "step %d: %s" % (", ".join(names[:3]), count, bad[0]["step"], "; ".join(effects)),
                     problem=any("Norm" in r["type"] for r in bad) or None)
    passes = _nograd_forwards(data)
    if not passes:
        return Check(None, "no forward pass ran under torch.no_grad(): " + validation_hint(data))
    with_layers = [f for f in passes if f.get("has_norm_dropout")]
    if not with_layers:
        return Check(False, "%d no-grad forward pass(es) ran; the model has no dropout or batch-norm layers" % (
            len(passes)))
    return Check(False, "%d no-grad forward pass(es) of a model with dropout/batch-norm ran in eval mode" % (
        len(with_layers)))


def check_lt302(data: dict, line: Optional[int]) -> Check:
    # eval-mode passes whose output was backpropagated are training steps (LT303), not evaluation
    evals = [f for f in data.get("forwards", []) if not f["training"] and not f.get("backpropagated")]
    if not evals:
        return Check(None, "no evaluation forward pass (model in eval mode) ran: " + validation_hint(data))
    graded = [f for f in evals if f["grad_enabled"]]
    if graded:
        return Check(True, "%d of %d evaluation forward pass(es) (model in eval mode, output never "
                     "backpropagated) ran with grad enabled: the autograd graph is built for nothing "
                     "(memory and time)" % (len(graded), len(evals)))
    return Check(False, "all %d eval-mode forward pass(es) ran under no_grad/inference_mode" % len(evals))


def check_lt303(data: dict, line: Optional[int]) -> Check:
    steps = data.get("steps", [])
    if not steps:
        return Check(None, "no optimizer step ran")
    for s in steps:
        if s.get("eval_mode_modules"):
            return Check(True, "optimizer step %d ran while %s was in eval mode (dropout/batch-norm off during "
                         "training): model.train() was not called after evaluation" % (
                             s["step"], ", ".join(s["eval_mode_modules"][:3])))
    if not any(s.get("has_norm_dropout") for s in steps):
        return Check(None, "the trained model has no dropout or batch-norm layers, so train/eval mode has no effect")
    last = max(s["step"] for s in steps)
    if not any(not f["training"] and f["step"] < last for f in data.get("forwards", [])):
        return Check(None, "no optimizer step followed an evaluation pass: " + validation_hint(data))
    return Check(False, "every one of %d optimizer step(s) ran with the model's dropout/batch-norm layers in "
                 "training mode" % len(steps))


# -- LT4xx, LT5xx, LT6xx -----------------------------------------------------------


def check_lt401(data: dict, line: Optional[int]) -> Check:
    hooks = data.get("hooks", [])
    forward = _at_line([h for h in hooks if h["kind"] == "register_forward_hook"], line)
    fired = [h for h in forward if h["fired"]]
    groups: Dict[tuple, List[dict]] = {}
    for h in fired:
        groups.setdefault((h["hook"], h["line"]), []).append(h)
    for (hook, hook_line), group in groups.items():
        total = sum(h["fired"] for h in group)
        outside = total - sum(h["fired_in_backward"] for h in group)
        if outside:
            shapes = group[0].get("first_args") or []
            arrow = ""
            if len(shapes) >= 2:
                arrow = "; it receives the layer's input and output (shapes %s -> %s), not gradients" % (
                    shapes[0], shapes[-1])
            targets = sorted({h["target"] for h in group})
            return Check(True, "forward hook '%s' (registered on %d module(s): %s%s) fired %d time(s), %d of them "
                         "while no backward pass was running%s" % (
                             hook, len(group), ", ".join(targets), ", line %s" % hook_line if hook_line else "",
                             total, outside, arrow))
    if forward and not fired:
        return Check(None, "the forward hook(s) were registered but never fired")
    gradient_hooks = [h for h in hooks if h["kind"] != "register_forward_hook" and h["fired"]]
    if gradient_hooks:
        inside = sum(h["fired_in_backward"] for h in gradient_hooks)
        total = sum(h["fired"] for h in gradient_hooks)
        kinds = sorted({h["kind"] for h in gradient_hooks})
        return Check(False, "no forward hook ran; the gradient hook(s) (%s) fired %d time(s), %d inside "
                     "backward()" % (", ".join(kinds), total, inside))
    return Check(None, "no hook registered by the script fired")


def check_lt501(data: dict, line: Optional[int]) -> Check:
    loaders = _at_line(data.get("dataloaders", []), line)
    if not loaders:
        return Check(None, "no torch DataLoader was constructed")
    for r in loaders:
        if r["error"] and "transform" in r["error"]:
            return Check(True, "DataLoader(...)%s raised %s" % (
                " at line %s" % r["line"] if r["line"] else "", r["error"]))
    ok = [r for r in loaders if not r["error"]]
    if not ok:
        return Check(None, "DataLoader construction failed for another reason: %s" % loaders[0]["error"])
    keywords = sorted({k for r in ok for k in r["kwargs"]})
    return Check(False, "%d DataLoader(s) constructed without error (keyword arguments: %s)" % (
        len(ok), ", ".join(keywords) or "none"))


def check_lt601(data: dict, line: Optional[int]) -> Check:
    rows = data.get("weight_rows", [])
    steps = _steps(data)
    if not steps:
        return Check(None, "no optimizer step ran, so weight symmetry after training was not measured")
    if not rows:
        return Check(None, "no weight matrix with two or more rows among the trained parameters")
    # embedding rows are per-token lookups, not units that share inputs
    rows = [r for r in rows if "Embedding" not in (r.get("module") or "")]
    if not rows:
        return Check(None, "no weight matrix of a layer with units (Linear, Conv, ...) among the trained parameters")
    identical = [r for r in rows if r["identical"]]
    if identical:
        r = identical[0]
        more = " (and %d more)" % (len(identical) - 1) if len(identical) > 1 else ""
        return Check(True, "%s: all %d rows are still identical after %d step(s) (max difference between rows "
                     "%s, weights up to %s)%s: every unit of this layer computes the same function of its input (symmetry never broken)" % (
                         r["param"], r["rows"], steps, _g(r["max_row_diff"]), _g(r["scale"]), more))
    diverged = [r["param"] for r in rows if r.get("identical_at_start")]
    text = "none of %d weight matrices has identical rows after %d step(s)" % (len(rows), steps)
    if diverged:
        text += " (%s started with identical rows and diverged)" % ", ".join(diverged[:3])
    return Check(False, text)


TABLE: Dict[str, Measurement] = {
    m.code: m
    for m in (
        Measurement("LT101", "bce-on-multiclass", "BCE target rows one-hot with more than two columns", check_lt101),
        Measurement("LT102", "activation-before-cross-entropy",
                    "CrossEntropyLoss input rows are probabilities (in [0,1], rows summing to 1)", check_lt102),
        Measurement("LT103", "softmax-before-nll", "NLLLoss input rows are probabilities", check_lt103),
        Measurement("LT104", "sigmoid-before-bce-with-logits",
                    "BCEWithLogitsLoss input produced by sigmoid (values in [0,1])",
                    check_lt104),
        Measurement("LT106", "bounded-output-regression",
                    "regression loss input produced by sigmoid/tanh while the targets lie outside its range",
                    check_lt106),
        Measurement("LT208", "nothing-to-optimise", "the optimizer holds no trainable parameter", check_lt208),
        Measurement("LT201", "missing-zero-grad", "parameter .grad not cleared between two optimizer.step() calls",
                    check_lt201),
        Measurement("LT202", "zero-grad-before-step", ".grad is zero or None at step() after backward() produced one",
                    check_lt202),
        Measurement("LT206", "backward-without-grad", "the loss passed to backward() has no grad_fn", check_lt206),
        Measurement("LT207", "graph-broken-before-loss", "no trainable parameter gets a gradient from backward()",
                    check_lt207),
        Measurement("LT301", "eval-without-eval-mode", "dropout/batch-norm in training mode inside a no-grad pass",
                    check_lt301, standalone=False),
        Measurement("LT302", "eval-without-no-grad",
                    "eval-mode forward passes, never backpropagated, run with grad enabled", check_lt302,
                    standalone=False),
        Measurement("LT303", "train-mode-not-restored", "an optimizer step runs with dropout/batch-norm in eval mode",
                    check_lt303, standalone=False),
        Measurement("LT401", "forward-hook-for-gradients", "a forward hook fired while no backward pass was running",
                    check_lt401, standalone=False),
        Measurement("LT501", "dataloader-transform", "the DataLoader constructor raised TypeError for transform",
                    check_lt501),
        Measurement("LT601", "constant-weight-init", "a layer's rows of weights are identical after the probed steps",
                    check_lt601),
    )
}

CONFIRMABLE = tuple(sorted(TABLE))


def run_check(code: str, data: dict, line: Optional[int] = None) -> Check:
    measurement = TABLE.get(code)
    if measurement is None:
        return Check(None, "no runtime check for this rule")
    try:
        return measurement.check(data, line)
    except (KeyError, TypeError, ValueError, IndexError) as exc:  # malformed data: say so, do not crash
        return Check(None, "the measurement could not be evaluated (%s: %s)" % (type(exc).__name__, exc))

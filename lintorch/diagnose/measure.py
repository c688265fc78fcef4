"""Runtime measurements -> causes (when abnormal) and facts (always).

Reads the probe child's recorded data (``data["diagnostics"]``, written by
``lintorch.probe.diagnostics``) and the probe report (its checks and
symptoms). Each detector below looks at one measurement, the ones
practitioners check by hand, and says what it saw as a :class:`Fact`; when
the measurement is abnormal it also returns a :class:`Cause` whose strength
grows with how abnormal it is. Thresholds are stated where they are used.

Pure Python: the parent never imports torch.
"""

import math
import statistics
from typing import Dict, List, NamedTuple, Optional, Tuple

from lintorch.diagnose.causes import Cause, Fact, relevance_of_rule
from lintorch.diagnose.symptoms import VOCABULARY
from lintorch.probe.checks import _g as g

HEALTHY_UPDATE = 1e-3  # ||dw||/||w|| per step that practitioners aim for
TINY_UPDATE, SMALL_UPDATE, LARGE_UPDATE, HUGE_UPDATE = 1e-5, 1e-4, 0.1, 1.0


class Measured(NamedTuple):
    causes: List[Cause]
    facts: List[Fact]
    reproduced: Dict[str, dict]  # symptom -> {"status": reproduced|not_reproduced|not_measured, "text"}
    series: dict  # what the HTML report plots


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _median(values):
    values = [v for v in values if _finite(v)]
    return statistics.median(values) if values else None


def _cause(id, title, why, fix, relevance, strength, text, related=()) -> Cause:
    return Cause(id, title, why, fix, dict(relevance), round(min(1.0, strength), 3),
                 [{"kind": "measurement", "id": id, "text": text}], tuple(related))


def layer_of(param: str) -> str:
    """'features.0.weight' -> 'features.0'; a bare parameter names itself."""
    return param.rsplit(".", 1)[0] if "." in param else param


def _layers(names) -> List[str]:
    out = []
    for name in names:
        layer = layer_of(name)
        if layer not in out:
            out.append(layer)
    return out


# -- the loss -----------------------------------------------------------------------


def loss_trace(diag: dict) -> Tuple[List[int], List[float]]:
    rows = diag.get("loss", {}).get("rows", [])
    return [r[0] for r in rows], [r[1] for r in rows]


def _ends(values: List[float]) -> Tuple[float, float]:
    k = max(1, min(5, len(values) // 4))
    return sum(values[:k]) / k, sum(values[-k:]) / k


def loss_facts(diag: dict, reproduced: dict) -> List[Fact]:
    steps, values = loss_trace(diag)
    if not values:
        for name in ("flat-loss", "nan-loss", "slow-convergence"):
            reproduced[name] = {"status": "not_measured", "text": "no loss reached backward()"}
        return [Fact("loss", "no loss was seen: backward() was never called", normal=False)]
    bad = [(s, v) for s, v in zip(steps, values) if not _finite(v)]
    finite = [v for v in values if _finite(v)]
    if bad:
        before = [v for s, v in zip(steps, values) if s < bad[0][0] and _finite(v)]
        text = "the loss became %s at step %d (%d of %d values not finite)" % (
            g(bad[0][1]), bad[0][0], len(bad), len(values))
        if before:
            text += "; before that it went %s -> %s" % (g(before[0]), g(before[-1]))
        reproduced["nan-loss"] = {"status": "reproduced", "text": text}
        reproduced["flat-loss"] = reproduced["slow-convergence"] = {
            "status": "not_measured", "text": "the loss was not finite"}
        return [Fact("loss", text, normal=False)]
    reproduced["nan-loss"] = {"status": "not_reproduced",
                              "text": "the loss stayed finite over %d step(s) (%s .. %s)" % (
                                  steps[-1], g(min(finite)), g(max(finite)))}
    first, last = _ends(finite)
    change = (last - first) / max(abs(first), 1e-12)
    text = "loss %s -> %s over %d step(s) (%+.1f%%)" % (g(first), g(last), steps[-1], 100 * change)
    if len(finite) < 4:
        reproduced["flat-loss"] = reproduced["slow-convergence"] = {
            "status": "not_measured", "text": "only %d loss value(s)" % len(finite)}
    else:
        flat = abs(change) < 0.02
        reproduced["flat-loss"] = {"status": "reproduced" if flat else "not_reproduced", "text": text}
        slow = -0.25 < change < 0.02 and not flat
        reproduced["slow-convergence"] = {"status": "reproduced" if (slow or flat) else "not_reproduced",
                                          "text": text}
    return [Fact("loss", text, normal=abs(change) >= 0.02 and change < 0)]


def initial_loss(diag: dict) -> Tuple[List[Cause], List[Fact]]:
    init = diag.get("initial_loss") or {}
    classes = init.get("classes")
    value = init.get("value")
    if (init.get("fn") not in ("cross_entropy", "nll_loss") or not classes or classes < 2 or not _finite(value)
            or init.get("reduction") != "mean" or init.get("weighted")):
        return [], []
    expected = math.log(classes)
    text = "initial loss %s vs ln(%d) = %s expected from an untrained %d-class model" % (
        g(value), classes, g(expected), classes)
    if value > 3 * expected and value - expected > 2:
        strength = 0.9 if value > 10 * expected else 0.7
        cause = _cause(
            "initial-loss-high", "the first loss is far above ln(C): the untrained model is confidently wrong",
            "An untrained classifier should spread its probability over the classes (loss ~ ln C). A loss of %s "
            "means its logits are already huge: the softmax saturates, most gradients vanish and the few "
            "large ones make steps erratic." % g(value),
            "Scale the inputs (normalise them), initialise the weights with the default (Kaiming/Xavier) scale "
            "instead of a large std, and check for a temperature or scale factor applied to the logits.",
            {"slow-convergence": 3, "flat-loss": 2, "nan-loss": 2, "chance-accuracy": 1}, strength, text,
            related=("inputs-not-normalised", "targets-not-scaled"))
        return [cause], [Fact("loss", text, normal=False)]
    return [], [Fact("loss", text + " (as expected)")]


# -- gradients and updates -------------------------------------------------------------


def _per_layer(rows: List[dict]) -> Dict[str, List[Optional[float]]]:
    """Per-parameter rows -> per-layer combined norms (sqrt of the sum of squares)."""
    names = []
    for row in rows:
        for name in row:
            if name not in names:
                names.append(name)
    out: Dict[str, List[Optional[float]]] = {layer: [] for layer in _layers(names)}
    for row in rows:
        sums: Dict[str, float] = {}
        for name, value in row.items():
            if value is None:
                continue
            layer = layer_of(name)
            sums[layer] = sums.get(layer, 0.0) + (value * value if _finite(value) else float("inf"))
        for layer in out:
            out[layer].append(math.sqrt(sums[layer]) if layer in sums else None)
    return out


def gradient_measurements(diag: dict, report: dict) -> Tuple[List[Cause], List[Fact]]:
    grads = diag.get("grad_norms", {})
    weights = diag.get("weight_norms", {})
    grad_layers = _per_layer(grads.get("rows", []))
    weight_layers = _per_layer(weights.get("rows", []))
    causes, facts = [], []
    if not grad_layers:
        return causes, [Fact("gradients", "no optimizer step was measured")]
    present = {k: [v for v in vs if v is not None] for k, vs in grad_layers.items()}
    all_missing = all(not v or all(x == 0 for x in v) for v in present.values())
    non_finite = [k for k, v in present.items() if any(not _finite(x) for x in v)]
    summary = "; ".join("%s %s..%s" % (k, g(min(v)), g(max(v))) if v and all(_finite(x) for x in v) else "%s %s" % (
        k, "none" if not v else "non-finite") for k, v in list(present.items())[:8])
    facts.append(Fact("gradients", "gradient norm per layer at step(): " + summary,
                      normal=not all_missing and not non_finite))
    if all_missing:
        causes.append(_cause(
            "no-gradient", "no gradient reaches the weights",
            "Every gradient was None or zero at optimizer.step(), so the step changes nothing and the loss "
            "stays where it started.",
            "Check that the loss is computed from the model's output without .detach(), .item(), .numpy() or "
            "torch.tensor(...), under grad mode, and that zero_grad() is not called between backward() and "
            "step().",
            {"flat-loss": 3, "identical-outputs": 2, "chance-accuracy": 2, "slow-convergence": 1}, 0.9,
            "at every one of %d step(s) all gradients were None or zero" % len(grads.get("rows", [])),
            related=("LT202", "LT206", "LT207", "LT208")))
        return causes, facts
    exploding = [k for k, v in (report.get("symptoms", {}).get("gradients", {}).get("problems", {}) or {}).items()
                 if v in ("exploding", "non_finite")]
    totals = [math.sqrt(sum(x * x for x in row.values() if _finite(x))) for row in grads.get("rows", [])]
    totals = [t for t in totals if t > 0]
    growth = totals[-1] / totals[0] if len(totals) >= 3 and totals[0] > 0 else 1.0
    if non_finite or exploding or growth > 1e3:
        parts = []
        if non_finite:
            parts.append("non-finite gradients in %s" % ", ".join(non_finite[:3]))
        if exploding:
            parts.append("gradient norms over 1,000x the weights' in %s" % ", ".join(exploding[:3]))
        if growth > 1e3:
            parts.append("the total gradient norm grew %sx from %s to %s" % (g(growth), g(totals[0]), g(totals[-1])))
        causes.append(_cause(
            "exploding-gradients", "exploding gradients",
            "Gradients that grow step after step make the updates overshoot; the loss jumps, then overflows "
            "to inf/NaN.",
            "Lower the learning rate, clip gradients (torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)), "
            "normalise the inputs and targets, and make sure gradients are cleared every step.",
            {"nan-loss": 3, "noisy-validation": 1, "flat-loss": 1, "slow-convergence": 1},
            1.0 if non_finite else 0.8, "; ".join(parts),
            related=("lr-too-large", "LT201", "LT209", "LT105", "log-of-zero", "inputs-not-normalised")))
    # vanishing: the first layer's gradient, relative to its weights, is tiny next to the last layer's
    relative = {}
    for layer, norms in grad_layers.items():
        ws = weight_layers.get(layer) or []
        ratios = [n / w for n, w in zip(norms, ws) if _finite(n) and _finite(w) and w and w > 0 and n is not None]
        if ratios:
            relative[layer] = _median(ratios)
    ordered = [layer for layer in grad_layers if layer in relative]
    if len(ordered) >= 3 and relative[ordered[-1]] > 0:
        ratio = relative[ordered[0]] / relative[ordered[-1]]
        text = "gradient/weight norm of the first layer (%s) %s vs the last (%s) %s: %s times smaller" % (
            ordered[0], g(relative[ordered[0]]), ordered[-1], g(relative[ordered[-1]]), g(1 / ratio) if ratio else "inf")
        if ratio < 1e-3:
            causes.append(_cause(
                "vanishing-gradients", "vanishing gradients in the early layers",
                "Each saturating activation (sigmoid/tanh) or badly scaled layer shrinks the gradient on its "
                "way back; the first layers get almost none, barely move, and the network learns slowly from "
                "the top down.",
                "Use ReLU-family activations, Kaiming/Xavier initialisation, normalisation layers "
                "(BatchNorm/LayerNorm) or residual connections; a deep stack of sigmoids needs them.",
                {"slow-convergence": 3, "flat-loss": 2, "identical-outputs": 1, "chance-accuracy": 1},
                0.9 if ratio < 1e-4 else 0.6, text))
            facts.append(Fact("gradients", text, normal=False))
        else:
            facts.append(Fact("gradients", text + " (no vanishing)"))
    return causes, facts


def update_measurements(diag: dict) -> Tuple[List[Cause], List[Fact], Dict[str, List]]:
    updates = diag.get("updates", {})
    steps, rows = updates.get("steps", []), updates.get("rows", [])
    deltas = _per_layer([{name: pair[0] for name, pair in row.items()} for row in rows])
    sizes = _per_layer([{name: pair[1] for name, pair in row.items()} for row in rows])
    per_layer: Dict[str, List[Optional[float]]] = {
        layer: [d / w if d is not None and w and _finite(w) else None for d, w in zip(deltas[layer], sizes[layer])]
        for layer in deltas}
    if not per_layer:
        return [], [Fact("updates", "no update was measured")], {}
    # the first step of Adam-like optimisers is lr-sized whatever the gradient: judge from the second on
    judged = {layer: [v for s, v in zip(steps, vs) if s > 1 and v is not None] or [v for v in vs if v is not None]
              for layer, vs in per_layer.items()}
    medians = {layer: _median(vs) for layer, vs in judged.items() if _median(vs) is not None}
    series = {"steps": steps, "layers": per_layer}
    if not medians:
        return [], [Fact("updates", "update/weight ratios could not be computed (weights of norm 0?)")], series
    overall = _median(list(medians.values()))
    peak = max(medians.values())
    text = "update/weight ratio ||dw||/||w|| per step, median per layer: %s (healthy ~%s)" % (
        ", ".join("%s %s" % (k, g(v)) for k, v in list(medians.items())[:6]), g(HEALTHY_UPDATE))
    causes = []
    if overall == 0:
        return [], [Fact("updates", text + ": the weights did not move", normal=False)], series
    if overall < SMALL_UPDATE:
        tiny = overall < TINY_UPDATE
        causes.append(_cause(
            "lr-too-small", "the learning rate is too small: the weights barely move",
            "Each step changes the weights by a median %s of their size (healthy ~%s), so after thousands of "
            "steps they are still close to their initial values and the loss hardly moves." % (
                g(overall), g(HEALTHY_UPDATE)),
            "Raise the learning rate until the update/weight ratio is near 1e-3 (an lr range test helps): "
            "typically 1e-3 for Adam, 1e-2..1e-1 for SGD with momentum.",
            {"flat-loss": 3 if tiny else 1, "slow-convergence": 3, "chance-accuracy": 2 if tiny else 1,
             "identical-outputs": 1},
            1.0 if overall < TINY_UPDATE / 10 else 0.85 if tiny else 0.6, text, related=("LT204",)))
    elif overall > LARGE_UPDATE or peak > HUGE_UPDATE:
        causes.append(_cause(
            "lr-too-large", "the learning rate is too large: each step rewrites the weights",
            "Each step changes the weights by a median %s of their size (largest layer %s; healthy ~%s): the "
            "optimizer overshoots, the loss oscillates or blows up, and units saturate or die." % (
                g(overall), g(peak), g(HEALTHY_UPDATE)),
            "Lower the learning rate 10x (Adam: 1e-3 or less), add warm-up, or clip gradients.",
            {"nan-loss": 3, "noisy-validation": 2, "flat-loss": 2, "identical-outputs": 2, "chance-accuracy": 2,
             "slow-convergence": 1},
            1.0 if peak > HUGE_UPDATE else 0.8, text, related=("LT201", "LT209", "log-of-zero")))
    return causes, [Fact("updates", text, normal=not causes)], series


def lr_measurements(diag: dict) -> Tuple[List[Cause], List[Fact]]:
    lr = diag.get("lr", {})
    traces: Dict[str, List] = {}
    for row in lr.get("rows", []):
        for key, value in row.items():
            traces.setdefault(key, []).append(value)
    causes, facts = [], []
    for key, trace in traces.items():
        values = [v for v in trace if _finite(v)]
        if not values:
            continue
        first, last = values[0], values[-1]
        if len(set(values)) == 1:
            facts.append(Fact("lr", "learning rate %s: %s, constant over %d step(s)" % (key, g(first), len(values)),
                              normal=first > 0))
        else:
            facts.append(Fact("lr", "learning rate %s: %s -> %s (min %s) over %d step(s)" % (
                key, g(first), g(last), g(min(values)), len(values)), normal=not (first > 0 and last < first * 0.01)))
        if first == 0 or max(values) == 0:
            causes.append(_cause(
                "lr-zero", "the learning rate is 0", "With lr = 0 every step leaves the weights unchanged.",
                "Set a positive learning rate; check the scheduler's first value and any warm-up factor.",
                {"flat-loss": 3, "identical-outputs": 2, "chance-accuracy": 2, "slow-convergence": 2}, 1.0,
                "learning rate of %s is 0" % key, related=("LT203", "LT204")))
        elif last < first * 0.01:
            at = next(i for i, v in enumerate(values) if v < first * 0.01) + 1
            causes.append(_cause(
                "lr-decays-too-fast", "the learning rate decays to almost nothing within the run",
                "The schedule shrank the learning rate from %s to %s within %d steps; after that the weights "
                "stop moving. An epoch-based scheduler stepped every batch does this." % (g(first), g(last), at),
                "Step epoch-based schedulers (StepLR, ExponentialLR, CosineAnnealingLR) once per epoch, or size "
                "them in steps (T_max = epochs * batches per epoch).",
                {"slow-convergence": 3, "flat-loss": 3, "chance-accuracy": 1}, 0.9,
                "learning rate %s fell below 1%% of its initial %s by step %d (now %s)" % (key, g(first), at, g(last)),
                related=("LT204", "LT203", "LT210")))
    return causes, facts


def parameter_measurements(report: dict, steps: int) -> Tuple[List[Cause], List[Fact]]:
    params = report.get("symptoms", {}).get("parameters", {}) or {}
    never, compared = params.get("never_changed") or [], params.get("compared") or 0
    if params.get("optimizer_parameters") and not params.get("trainable"):
        return [], [Fact("parameters", "none of the %d parameters in the optimizer is trainable" % (
            params["optimizer_parameters"]), normal=False)]
    if not compared:
        return [], []
    if not never:
        return [], [Fact("parameters", "every one of %d trained parameter tensors changed" % compared)]
    text = "%d of %d parameter tensors never changed in %d step(s): %s" % (
        len(never), compared, steps, ", ".join(never[:5]) + (" ..." if len(never) > 5 else ""))
    if len(never) == compared:
        cause = _cause(
            "weights-never-change", "the weights never change",
            "No trained weight changed during the run, so the model's predictions and the loss stay as they "
            "were at initialisation.",
            "Find what stops the update: gradients erased before step(), a detached loss, a frozen model, "
            "or a learning rate of 0.",
            {"flat-loss": 3, "identical-outputs": 2, "chance-accuracy": 2, "slow-convergence": 1}, 0.9, text,
            related=("LT202", "LT206", "LT207", "LT208", "no-gradient", "lr-zero"))
    else:
        cause = _cause(
            "some-weights-never-change", "some layers never train",
            "These parameters are in the optimizer but never changed: no gradient reaches them (an unused "
            "branch, a detach inside the model) or they were frozen after the optimizer was built; the model "
            "learns with less capacity than intended.",
            "Check that these layers are used in forward() and reachable from the loss without detach(), or "
            "remove them from the optimizer if freezing them is intended.",
            {"slow-convergence": 2, "flat-loss": 1, "chance-accuracy": 1}, 0.6, text, related=("LT207",))
    return [cause], [Fact("parameters", text, normal=False)]


# -- activations and outputs -------------------------------------------------------------


def relu_measurements(diag: dict) -> Tuple[List[Cause], List[Fact]]:
    sites = diag.get("relu") or {}
    if not sites:
        return [], [Fact("relu", "no ReLU activation was seen (none in the model, or none in a training pass)")]
    dead = {}
    for site, entry in sites.items():
        values = [v for v in entry.get("dead", []) if _finite(v)]
        if values:
            tail = values[len(values) // 2:]
            dead[site] = (sum(tail) / len(tail), entry.get("units"))
    if not dead:
        return [], []
    worst_site, (worst, units) = max(dead.items(), key=lambda item: item[1][0])
    text = "dead ReLU units (zero for every input of a batch), latest half of the run: %s" % ", ".join(
        "%s %.0f%% of %s" % (site, 100 * frac, n) for site, (frac, n) in list(dead.items())[:6])
    if worst >= 0.5:
        all_dead = worst >= 0.99
        cause = _cause(
            "dead-relu", "dead ReLU units" if not all_dead else "a whole ReLU layer is dead",
            "%.0f%% of the units of %s output 0 for every input, so no gradient flows through them and they "
            "never recover%s." % (100 * worst, worst_site,
                                  "; the layers after it see a constant and the model outputs the same thing for "
                                  "every input" if all_dead else ""),
            "Check the initialisation (a large negative bias or weights kills ReLUs), lower the learning rate "
            "(a big step can push units into the dead zone), or use LeakyReLU/GELU.",
            {"flat-loss": 3 if all_dead else 2, "identical-outputs": 3 if all_dead else 1,
             "chance-accuracy": 2, "slow-convergence": 2},
            0.95 if all_dead else 0.7 if worst >= 0.8 else 0.5, text, related=("lr-too-large", "LT209"))
        return [cause], [Fact("relu", text, normal=False)]
    return [], [Fact("relu", text)]


def output_facts(report: dict, diag: dict, reproduced: dict) -> List[Fact]:
    out = report.get("symptoms", {}).get("outputs", {}) or {}
    if out.get("identical") is None:
        reproduced["identical-outputs"] = {"status": "not_measured",
                                           "text": "no training forward pass over a batch of 2 or more"}
        return []
    text = "outputs across a batch of %d: max spread %s (scale %s)" % (out["batch"], g(out["max_spread"]),
                                                                         g(out["scale"]))
    collapsed = bool(out["identical"])
    if "distinct_predictions" in out:
        text += "; %d distinct predicted class(es) of %d" % (out["distinct_predictions"], out["classes"])
        collapsed = collapsed or (out["distinct_predictions"] == 1 and out["classes"] > 1 and out["batch"] >= 8)
    reproduced["identical-outputs"] = {"status": "reproduced" if collapsed else "not_reproduced", "text": text}
    return [Fact("outputs", text, normal=not collapsed)]


def accuracy_facts(diag: dict, reproduced: dict) -> List[Fact]:
    acc = diag.get("train_accuracy") or {}
    labels = diag.get("labels") or {}
    values = [v for v in acc.get("values", []) if _finite(v)]
    val = [v for v in diag.get("validation", []) if v.get("labelled")]
    classes = len(labels.get("counts") or [])
    if not values or classes < 2:
        reproduced["chance-accuracy"] = {"status": "not_measured",
                                         "text": "accuracy is measured for cross-entropy/NLL classification only"}
        return []
    counts = labels["counts"]
    majority = max(counts) / max(sum(counts), 1)
    chance = max(1.0 / classes, majority)
    tail = values[len(values) // 2:]
    train = sum(tail) / len(tail)
    text = "training-batch accuracy %.0f%% over the latest half of the run (chance %.0f%%)" % (100 * train, 100 * chance)
    at_chance = train <= chance + 0.1
    if val:
        last = val[-1]
        va = last["correct"] / last["labelled"]
        text += "; validation accuracy %.0f%% at step %d" % (100 * va, last["step"])
        at_chance = at_chance or va <= chance + 0.05
    reproduced["chance-accuracy"] = {"status": "reproduced" if at_chance else "not_reproduced", "text": text}
    return [Fact("outputs", text, normal=not at_chance)]


# -- data ---------------------------------------------------------------------------------


def label_measurements(diag: dict) -> Tuple[List[Cause], List[Fact]]:
    labels = diag.get("labels")
    if not labels:
        return [], []
    if labels["kind"] == "classes":
        counts = labels["counts"]
        total = sum(counts)
        if total == 0:
            return [], []
        classes = len(counts)
        top = max(range(classes), key=lambda i: counts[i])
        share = counts[top] / total
        seen = sum(1 for c in counts if c)
        shown = ", ".join("%d: %d" % (i, c) for i, c in enumerate(counts[:10])) + (" ..." if classes > 10 else "")
        text = "labels of the %d training targets in the sampled batches (%d classes in the output): %s" % (
            total, classes, shown)
        sampled, single = labels.get("batches_sampled", 0), labels.get("single_class_batches", 0)
        if classes >= 2 and sampled >= 4 and single >= 0.75 * sampled:
            text += "; %d of %d sampled training batches hold a single class" % (single, sampled)
            return [_cause(
                "batches-one-class", "every training batch holds a single class",
                "%d of %d training batches held one class only: each step pulls the model towards that class, so "
                "at any moment it predicts the class of the last few batches for every input, and the loss and "
                "accuracy swing from batch to batch. Data sorted by label and read without shuffling do this."
                % (single, sampled),
                "Shuffle the training data (DataLoader(..., shuffle=True) or a RandomSampler).",
                {"identical-outputs": 3, "chance-accuracy": 3, "noisy-validation": 2, "slow-convergence": 2,
                 "flat-loss": 1},
                1.0 if single == sampled else 0.8, text, related=("LT503",))], [Fact("labels", text, normal=False)]
        if classes >= 2 and share >= 0.95 and total >= 8:
            return [_cause(
                "labels-one-class", "the batches seen hold a single class",
                "%.0f%% of the labels seen are class %d: the cheapest way to lower the loss is to predict class "
                "%d for everything, so the model collapses to one output and accuracy sits at chance on balanced "
                "data. Data sorted by label and read without shuffling produce exactly this." % (100 * share, top, top),
                "Shuffle the training data (DataLoader(..., shuffle=True)); check the label column and the "
                "dataset split; for real imbalance, weight the loss or resample.",
                {"identical-outputs": 3, "chance-accuracy": 3, "flat-loss": 1, "slow-convergence": 1,
                 "noisy-validation": 1},
                1.0 if share == 1 else 0.85, text, related=("LT503",))], [Fact("labels", text, normal=False)]
        if classes >= 2 and (share >= 0.7 or seen < classes) and total >= 4 * classes:
            why = ("only %d of the %d classes appear" % (seen, classes)) if seen < classes else (
                "class %d makes up %.0f%%" % (top, 100 * share))
            return [_cause(
                "labels-imbalanced", "the labels seen are heavily imbalanced",
                "In the batches seen %s: predicting the majority class already gives a low loss, which the model "
                "finds first." % why,
                "Shuffle the data; check the labels and the split; weight the loss (CrossEntropyLoss(weight=...)) "
                "or resample (WeightedRandomSampler) for a genuinely imbalanced task.",
                {"chance-accuracy": 2, "identical-outputs": 2, "slow-convergence": 1}, 0.6, text,
                related=("LT503",))], [Fact("labels", text, normal=False)]
        return [], [Fact("labels", text + " (balanced enough)")]
    text = "%s targets of %s: mean %s, std %s, range [%s, %s] over %d values" % (
        labels["kind"], labels["fn"], g(labels["mean"]), g(labels["std"]), g(labels["min"]), g(labels["max"]),
        labels["count"])
    if labels["kind"] == "values" and labels["std"] == 0:
        return [_cause("targets-constant", "every regression target is the same value",
                       "All targets seen equal %s: the best the model can do is output that constant." % g(
                           labels["mean"]),
                       "Check how the targets are built and indexed (a broadcast, a wrong column, a .mean()).",
                       {"identical-outputs": 3, "flat-loss": 1}, 0.9, text)], [Fact("labels", text, normal=False)]
    if labels["kind"] == "values" and (abs(labels["mean"]) > 100 or labels["std"] > 100):
        return [_cause("targets-not-scaled", "the regression targets are not scaled",
                       "Targets of size %s make the loss and its gradients huge: small learning rates are needed to "
                       "stay stable, and then the output layer needs a very long time to reach that scale." % g(
                           max(abs(labels["mean"]), labels["std"])),
                       "Standardise the targets (subtract the mean, divide by the std) and undo it at prediction "
                       "time.",
                       {"slow-convergence": 3, "nan-loss": 2, "flat-loss": 1}, 0.7, text)], [
            Fact("labels", text, normal=False)]
    if labels["kind"] == "binary" and labels["count"] >= 16 and (labels["mean"] < 0.02 or labels["mean"] > 0.98):
        return [_cause("labels-one-class", "the binary targets seen are almost all one value",
                       "%.1f%% of the binary targets seen are positive: predicting the majority everywhere already "
                       "gives a low loss." % (100 * labels["mean"]),
                       "Shuffle the data, check the labels, or weight the positives (pos_weight=).",
                       {"identical-outputs": 3, "chance-accuracy": 3, "flat-loss": 1}, 0.8, text,
                       related=("LT503",))], [Fact("labels", text, normal=False)]
    return [], [Fact("labels", text)]


def input_measurements(diag: dict) -> Tuple[List[Cause], List[Fact]]:
    x = diag.get("inputs")
    if not x:
        return [], [Fact("inputs", "the model's input was not seen in a training pass")]
    if "mean" not in x:
        return [], [Fact("inputs", "model input %s %s (not floating point: ids or indices, no statistics)" % (
            x.get("dtype"), x.get("shape")))]
    per, channels = x["per"], x["channels"]
    text = "model input %s %s: %s means %s..%s, stds %s..%s, values in [%s, %s], %d constant %s(s) of %d" % (
        x["dtype"], x["shape"], per, g(x["mean_range"][0]), g(x["mean_range"][1]), g(x["std_range"][0]),
        g(x["std_range"][1]), g(x["min"]), g(x["max"]), x["constant"], per, channels)
    causes = []
    if x["nonfinite"]:
        causes.append(_cause(
            "inputs-not-finite", "the inputs contain NaN or inf",
            "%d input values were NaN or inf: every output and loss computed from them is NaN." % x["nonfinite"],
            "Find where they come from: division by a zero std when normalising a constant column, log of 0, "
            "missing values in the data file; replace or drop them before training (torch.nan_to_num, "
            "a std floor).",
            {"nan-loss": 3, "flat-loss": 1, "identical-outputs": 1}, 1.0,
            text + "; %d non-finite value(s)" % x["nonfinite"]))
    constant = x["constant"] / max(channels, 1)
    scale = max(abs(x["mean_range"][0]), abs(x["mean_range"][1]), x["std_range"][1])
    if constant >= 0.5 or (x["std_range"][1] == 0 and channels):
        causes.append(_cause(
            "inputs-constant", "the inputs carry no information" if constant == 1 else "most input features are constant",
            "%d of %d input %ss never vary within a batch: the model cannot tell the samples apart, so it "
            "learns to output one prediction for all of them." % (x["constant"], channels, per),
            "Check the preprocessing (a scaling that rounds everything to one value, a wrong column, an "
            "overwritten tensor) and that each sample gets its own features.",
            {"identical-outputs": 3, "chance-accuracy": 3, "flat-loss": 3, "slow-convergence": 1},
            1.0 if constant == 1 else 0.7, text))
    elif x["std_range"][1] > 0 and scale < 1e-3:
        causes.append(_cause(
            "inputs-too-small", "the inputs are scaled down to almost nothing",
            "Every input is within %s of zero: the first layer sees nearly the same tiny vector for every sample, "
            "so the outputs barely depend on the input." % g(scale),
            "Normalise the inputs to zero mean and unit variance; check a double division (x / 255 / 255).",
            {"identical-outputs": 2, "slow-convergence": 3, "flat-loss": 2, "chance-accuracy": 2}, 0.8, text))
    else:
        spread = x["std_range"][1] / max(x["std_range"][0], 1e-12) if x["std_range"][0] > 0 else 1.0
        if scale > 10 or spread > 1e3:
            why = ("values up to %s (means up to %s, stds up to %s)" % (
                g(max(abs(x["min"]), abs(x["max"]))), g(max(abs(v) for v in x["mean_range"])), g(x["std_range"][1]))
                if scale > 10 else "the %ss' scales differ %sx" % (per, g(spread)))
            causes.append(_cause(
                "inputs-not-normalised", "the inputs are not normalised",
                "The inputs have %s: the first layer's pre-activations and its gradients are that large too, so a "
                "learning rate that is stable for them is far too small for the other layers (or the loss "
                "diverges), and saturating units stay saturated." % why,
                "Normalise each %s to zero mean and unit variance (compute the statistics on the training set; "
                "for images: ToTensor() to [0, 1], then Normalize(mean, std))." % per,
                {"slow-convergence": 3, "flat-loss": 2, "nan-loss": 2, "identical-outputs": 2, "chance-accuracy": 2,
                 "noisy-validation": 1},
                0.9 if scale > 100 or spread > 1e4 else 0.7, text, related=("LT502",)))
    return causes, [Fact("inputs", text, normal=not causes)]


def data_measurements(diag: dict, reproduced: dict) -> Tuple[List[Cause], List[Fact]]:
    """Training-set size and duplicates, validation size and randomness, and
    whether validation diverges from training (overfitting)."""
    causes, facts = [], []
    distinct = diag.get("distinct_inputs") or {}
    if distinct.get("seen", 0) >= 32:
        text = "%d distinct inputs among %d training rows sampled in the first epoch" % (
            distinct["distinct"], distinct["seen"])
        if distinct["distinct"] <= distinct["seen"] / 2:
            causes.append(_cause(
                "duplicated-training-data", "the training set is a few samples repeated",
                "Only %d of %d training inputs are distinct: the model sees the same few samples over and over and "
                "memorises them instead of learning the task." % (distinct["distinct"], distinct["seen"]),
                "Check how the training set is built (a slice repeated or tiled, an index that does not advance, "
                "a dataset __getitem__ that ignores its index).",
                {"overfitting": 3, "noisy-validation": 1, "slow-convergence": 1},
                0.95 if distinct["distinct"] <= distinct["seen"] / 4 else 0.7, text))
            facts.append(Fact("data", text, normal=False))
        else:
            facts.append(Fact("data", text))
    model = diag.get("model") or {}
    train_loader = next((l for l in diag.get("loaders", []) if l.get("first_step") == 0), None)
    samples = train_loader.get("samples") if train_loader else None
    val = [v for v in diag.get("validation", []) if v.get("loss_samples") or v.get("samples")]
    overfit = _overfitting(diag, val, reproduced)
    if overfit:
        facts.append(Fact("validation", reproduced["overfitting"]["text"], normal=False))
    if samples and model.get("trainable"):
        ratio = model["trainable"] / samples
        text = "%d training samples for %d trainable parameters (%s per sample)" % (samples, model["trainable"], g(ratio))
        if ratio > 50 and samples < 5000:
            causes.append(_cause(
                "small-training-set", "the training set is small for the model",
                "%d samples for %d parameters: the model can memorise the training set (%s parameters per sample) "
                "before it has to learn anything that generalises." % (samples, model["trainable"], g(ratio)),
                "Get more data or augment it, use a smaller model, add weight decay and dropout, and stop early on "
                "the validation loss.",
                {"overfitting": 3, "noisy-validation": 1}, 0.9 if overfit else 0.4, text))
            facts.append(Fact("data", text, normal=False))
        else:
            facts.append(Fact("data", text))
    decay = [w for o in diag.get("optimizers", []) for w in o.get("weight_decay", [])]
    regularised = any(w > 0 for w in decay) or model.get("dropout") or model.get("norm")
    if decay and not regularised:
        text = "no regularisation: weight_decay 0 in every parameter group, no dropout or normalisation layer"
        causes.append(_cause(
            "no-regularisation", "nothing regularises the model",
            "Without weight decay, dropout or normalisation, nothing stops the weights from fitting the noise of "
            "the training set once the signal is learned.",
            "Add weight decay (AdamW(..., weight_decay=1e-2)), dropout, data augmentation, and early stopping.",
            {"overfitting": 2}, 0.7 if overfit else 0.3, text))
        facts.append(Fact("data", text, normal=not overfit))
    causes += _validation_measurements(diag, val, reproduced)
    if val:
        sizes = [max(v["samples"], v["loss_samples"]) for v in val]
        facts.append(Fact("validation", "%d validation pass(es), %s sample(s) each" % (
            len(val), g(_median(sizes)) if len(set(sizes)) > 1 else sizes[0])))
    return causes, facts


def _overfitting(diag: dict, val: List[dict], reproduced: dict) -> bool:
    losses = [(v["step"], v["loss_sum"] / v["loss_samples"]) for v in val if v.get("loss_samples")]
    if len(losses) < 3:
        reproduced["overfitting"] = {"status": "not_measured", "text": "fewer than 3 validation passes computed a "
                                     "loss (%d): rerun with more --steps" % len(losses)}
        return False
    steps, values = loss_trace(diag)
    train_at = []
    for step, _ in losses:
        window = [v for s, v in zip(steps, values) if step - 5 < s <= step and _finite(v)]
        train_at.append(sum(window) / len(window) if window else None)
    best = min(range(len(losses)), key=lambda i: losses[i][1])
    last_val, best_val = losses[-1][1], losses[best][1]
    rising = best < len(losses) - 1 and last_val > best_val * 1.1 and last_val - best_val > 0.02
    falling = train_at[-1] is not None and train_at[best] is not None and train_at[-1] < train_at[best]
    gap = (last_val / train_at[-1]) if train_at[-1] else None
    text = "validation loss %s at step %d (its lowest) -> %s at step %d while the training loss went %s -> %s" % (
        g(best_val), losses[best][0], g(last_val), losses[-1][0], g(train_at[best]), g(train_at[-1]))
    if gap:
        text += " (validation/training ratio %s)" % g(gap)
    reproduced["overfitting"] = {"status": "reproduced" if rising and falling else "not_reproduced", "text": text}
    return rising and falling


def _validation_measurements(diag: dict, val: List[dict], reproduced: dict) -> List[Cause]:
    causes = []
    dropout = diag.get("dropout_in_eval") or {}
    if dropout:
        where = ", ".join("%s (%d calls)" % item for item in list(dropout.items())[:3])
        causes.append(_cause(
            "dropout-in-eval", "dropout stays active after model.eval()",
            "F.dropout ran with training=True while the model was in eval mode (%s): every evaluation drops a "
            "different random set of units, so validation predictions and metrics change from run to run." % where,
            "Pass training=self.training to F.dropout, or use an nn.Dropout module.",
            {"noisy-validation": 3, "chance-accuracy": 1}, 1.0,
            "F.dropout with training=True inside a forward pass of a model in eval mode: %s" % where,
            related=("LT304",)))
    sizes = [max(v["samples"], v["loss_samples"]) for v in val]
    if val and sizes:
        size = min(sizes)
        accuracy = [v["correct"] / v["labelled"] for v in val if v.get("labelled")]
        losses = [v["loss_sum"] / v["loss_samples"] for v in val if v.get("loss_samples")]
        if len(losses) >= 3 or len(accuracy) >= 3:
            series = accuracy if len(accuracy) >= 3 else losses
            # noise is going back and forth, not improving: the smaller of two opposite consecutive moves
            moves = [b - a for a, b in zip(series, series[1:])]
            zigzag = max([min(abs(a), abs(b)) for a, b in zip(moves, moves[1:]) if a * b < 0] or [0.0])
            level = max(abs(sum(series) / len(series)), 1e-12)
            noisy = zigzag > 0.05 if series is accuracy else zigzag / level > 0.1
            reproduced["noisy-validation"] = {
                "status": "reproduced" if noisy else "not_reproduced",
                "text": "validation %s over %d passes: %s (largest reversal %s)" % (
                    "accuracy" if series is accuracy else "loss", len(series),
                    " ".join(g(v) for v in series[:10]), g(zigzag))}
        else:
            reproduced["noisy-validation"] = {"status": "not_measured",
                                              "text": "fewer than 3 validation passes with a loss or accuracy"}
        if size and size < 200:
            error = 100 * math.sqrt(0.25 / size)
            causes.append(_cause(
                "validation-too-small", "the validation set is too small to measure progress",
                "Each validation pass sees %d sample(s): accuracy moves in steps of %.1f%% and its standard error "
                "is about +-%.0f%% at 50%% accuracy, so it jumps from one evaluation to the next even when the "
                "model barely changes." % (size, 100.0 / size, error),
                "Validate on more samples (hundreds to thousands), or average the metric over several passes.",
                {"noisy-validation": 3}, 0.9 if size < 50 else 0.5,
                "%d validation sample(s) per pass over %d pass(es)" % (size, len(val))))
    else:
        reproduced.setdefault("noisy-validation", {"status": "not_measured", "text": "no validation pass ran"})
    return causes


# -- the probe's own checks --------------------------------------------------------------------


def loss_input_measurements(data: dict) -> List[Cause]:
    """A log-probability input of -inf: log(0) of an underflowed probability."""
    for r in data.get("losses", []):
        if r["fn"] == "nll_loss" and r.get("input_min") == float("-inf"):
            return [_cause(
                "log-of-zero", "log of a probability that underflowed to 0",
                "NLLLoss received log-probabilities of -inf: a probability rounded to 0 and its log taken. The loss "
                "becomes inf, its gradient NaN, and NaN spreads into every weight at the next step.",
                "Compute log-probabilities with F.log_softmax(logits, dim=1) (or pass the logits to "
                "CrossEntropyLoss), never torch.log(softmax(...)).",
                {"nan-loss": 3, "flat-loss": 1}, 1.0,
                "NLLLoss input %s at line %s holds -inf (values in [%s, %s])" % (
                    r["input_shape"], r.get("line"), g(r["input_min"]), g(r["input_max"])),
                related=("LT105", "LT103"))]
    return []


def probe_check_causes(report: dict) -> List[Cause]:
    """Runtime checks that observed a bug without a static finding."""
    from lintorch.diagnose.causes import rule_texts

    out = []
    for check in report.get("checks", []):
        if check["status"] != "observed":
            continue
        summary, why, fix = rule_texts(check["code"])
        cause = Cause(check["code"], summary or check["name"], why, fix, relevance_of_rule(check["code"]),
                      0.9 if check.get("problem") else 0.7,
                      [{"kind": "measurement", "code": check["code"], "text": check["evidence"]}])
        out.append(cause)
    return out


def measure(data: dict, report: dict) -> Measured:
    diag = data.get("diagnostics") or {}
    reproduced: Dict[str, dict] = {}
    causes: List[Cause] = []
    facts: List[Fact] = []
    facts += loss_facts(diag, reproduced)
    series = {"loss": loss_trace(diag)}
    for detector in (initial_loss, lambda d: gradient_measurements(d, report), lr_measurements, relu_measurements,
                     label_measurements, input_measurements):
        c, f = detector(diag)
        causes += c
        facts += f
    c, f, series["updates"] = update_measurements(diag)
    causes += c
    facts += f
    c, f = parameter_measurements(report, int(data.get("total_steps") or 0))
    causes += c
    facts += f
    facts += output_facts(report, diag, reproduced)
    facts += accuracy_facts(diag, reproduced)
    c, f = data_measurements(diag, reproduced)
    causes += c
    facts += f
    causes += loss_input_measurements(data)
    causes += probe_check_causes(report)
    for name in VOCABULARY:
        reproduced.setdefault(name, {"status": "not_measured", "text": "not measured in this run"})
    series.update(grad_norms=diag.get("grad_norms", {}), weight_norms=diag.get("weight_norms", {}),
                  lr=diag.get("lr", {}), histograms=diag.get("histograms", {}), relu=diag.get("relu", {}),
                  validation=diag.get("validation", []), train_accuracy=diag.get("train_accuracy"))
    return Measured(causes, facts, reproduced, series)

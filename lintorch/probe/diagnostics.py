"""Child side of ``lintorch diagnose``: the measurements a practitioner
takes by hand when a model does not learn, recorded alongside the probe's.

The :class:`~lintorch.probe.instrument.Recorder` calls in at its existing
hook points (module forward hooks, optimizer step hooks, the loss wrappers,
DataLoader iteration); this class adds only the ``torch.relu`` and
``F.dropout`` wrappers. What is cheap is recorded at every step (the loss,
the learning rate, the gradient and weight norms the Recorder already
computes); what costs a copy or a device sync (update-to-weight ratios,
dead ReLU units, input statistics, histograms) only at *sampled* steps, so
that the per-step overhead over plain probing stays small (bench/diagnose.py).
Accumulators stay on the device until the end of the run.

Everything returned by :meth:`Diagnostics.finish` is plain JSON data; the
parent (``lintorch.diagnose``) interprets it. This module imports torch.
"""

import functools
import math
import os
from typing import Any, Dict, List, Optional

import torch

from lintorch.probe.instrument import _compiling

SERIES_CAP = 400  # rows kept per series; beyond that every other row is dropped
MAX_PARAMS = 64  # as the Recorder's per-step norms
MAX_SITES = 16  # ReLU sites, histogrammed layers
MAX_CHANNELS = 4096  # per-channel input statistics beyond that: global only
HIST_BINS = 30
HIST_EVERY = 20  # histograms at step 1 and every HIST_EVERY-th step (the last one is kept)
INPUT_BATCHES = 8  # input statistics and duplicate rows from this many sampled batches: the data do not drift


def sampled(step: int) -> bool:
    """The steps at which the costly measurements are taken: the first five,
    then every 20th, and every 200th beyond 1,000."""
    if step <= 5:
        return True
    return step % (20 if step < 1000 else 200) == 0


def _num(value: float) -> Optional[float]:
    value = float(value)
    if math.isnan(value):
        return float("nan")
    return float("%.6g" % value) if math.isfinite(value) else value


class Series:
    """(step, row) pairs with a bounded length: when full, every other row
    is dropped and only every ``stride``-th step is kept from then on."""

    def __init__(self, cap: int = SERIES_CAP):
        self.cap, self.stride, self.steps, self.rows = cap, 1, [], []

    def add(self, step: int, row: Any) -> None:
        if step % self.stride:
            return
        if self.steps and self.steps[-1] == step:  # several optimizers in one step: merge their rows
            if isinstance(row, dict) and isinstance(self.rows[-1], dict):
                self.rows[-1] = dict(self.rows[-1], **row)
            else:
                self.rows[-1] = row
            return
        self.steps.append(step)
        self.rows.append(row)
        if len(self.steps) > self.cap:
            self.stride *= 2
            keep = [i for i, s in enumerate(self.steps) if s % self.stride == 0]
            self.steps = [self.steps[i] for i in keep]
            self.rows = [self.rows[i] for i in keep]

    def as_dict(self) -> dict:
        return {"steps": self.steps, "rows": self.rows}


def _units(out):
    """Reshape an activation to [units, everything else]: features of a 2-D
    (or [batch, time, features]) output, channels of a 4-D/5-D one."""
    if out.dim() == 2 or out.dim() == 3:
        return out.reshape(-1, out.shape[-1]).t()
    return out.transpose(0, 1).reshape(out.shape[1], -1)


class Diagnostics:
    def __init__(self, recorder):
        self.r = recorder
        self.sampling = True  # whether the coming optimizer step is a sampled one
        self._hist_now = True
        self._root = None  # the top-level module of the current forward
        self._relu_module = 0  # >0 inside an nn.ReLU's forward (its relu call is measured there)
        self.loss = Series(4000)  # every backward's loss value
        self.lr = Series()
        self.grad = Series()
        self.weight = Series()
        self.update = Series()
        self.outputs = Series()
        self.train_accuracy: List[tuple] = []  # (step, device scalar) at sampled steps
        self.relu: Dict[str, dict] = {}
        self.hist: Dict[str, dict] = {}
        self.initial_loss: Optional[dict] = None
        self.validation: Dict[int, dict] = {}
        self.dropout_in_eval: Dict[str, int] = {}
        self.loaders: Dict[int, dict] = {}
        self._before: Dict[int, tuple] = {}
        self._inputs: Optional[dict] = None
        self._labels: Optional[dict] = None
        self._hashes = set()
        self._rows_seen = 0
        self._projection = None
        self._backwards = 0
        self._names: Dict[int, str] = {}
        self._onehot: Optional[bool] = None

    # -- installation -----------------------------------------------------------

    def install(self) -> None:
        import torch.nn.functional as F

        for owner, name in ((torch, "relu"), (torch, "relu_"), (torch.Tensor, "relu"), (torch.Tensor, "relu_")):
            self.r._patch(owner, name, self._relu_wrapper(getattr(owner, name)))
        self.r._patch(F, "dropout", self._dropout_wrapper(F.dropout))

    def _relu_wrapper(self, original):
        diag = self

        @functools.wraps(original)
        def relu(input, *args, **kwargs):
            out = original(input, *args, **kwargs)
            if (diag.sampling and not diag._relu_module and diag.r._is_main() and torch.is_grad_enabled()
                    and not _compiling()):
                try:
                    filename, line = diag.r.user_site()
                    if filename is not None:
                        diag._activation("relu at %s:%d" % (os.path.basename(filename), line), out, relu=True)
                except Exception:
                    pass
            return out

        return relu

    def _dropout_wrapper(self, original):
        diag = self

        @functools.wraps(original)
        def dropout(input, p=0.5, training=True, inplace=False):
            root = diag._root
            if training and p > 0 and root is not None and not root.training and not _compiling():
                try:
                    _, line = diag.r.user_site()
                    key = "line %s" % line if line else "library code"
                    diag.dropout_in_eval[key] = diag.dropout_in_eval.get(key, 0) + 1
                except Exception:
                    pass
            return original(input, p, training, inplace)

        return dropout

    # -- forward ----------------------------------------------------------------

    def module_enter(self, module, args, depth: int) -> None:
        """Called from the forward pre-hook; ``depth`` 1 is a top-level call."""
        if depth == 1 and id(module) in self.r._root_ids:  # a model (a loss module is no root)
            self._root = module
            if self.sampling and module.training and torch.is_grad_enabled():
                tensor = args[0] if args and isinstance(args[0], torch.Tensor) else None
                if tensor is not None:
                    self._input_stats(tensor)
        if isinstance(module, torch.nn.ReLU):
            self._relu_module += 1

    def module_exit(self, module, output) -> None:
        """Called from the forward hook for every module while sampling."""
        if isinstance(module, torch.nn.ReLU):
            self._relu_module = max(0, self._relu_module - 1)
            if isinstance(output, torch.Tensor) and torch.is_grad_enabled():
                self._activation(self._name(module), output, relu=True)
        elif self._hist_now and torch.is_grad_enabled() and isinstance(output, torch.Tensor) and module.training:
            if next(module.children(), None) is None and next(module.parameters(recurse=False), None) is not None:
                self._activation("%s (%s)" % (self._name(module), type(module).__name__), output, relu=False)

    def _name(self, module) -> str:
        name = self._names.get(id(module))
        if name is None:  # the Recorder's lookup walks the whole model: once per module
            name = self._names[id(module)] = self.r.module_name(module)
        return name

    def _activation(self, site: str, out, relu: bool) -> None:
        if out.dim() < 2 or out.shape[0] < 2 or not out.is_floating_point():
            return
        if site not in self.relu and site not in self.hist and len(self.relu) + len(self.hist) >= 2 * MAX_SITES:
            return
        step = self.r.total_steps + 1
        with torch.no_grad():
            x = out.detach()
            if relu:
                units = _units(x)
                alive = ((units > 0) | (units != units)).any(dim=1)  # NaN is not "dead": the loss says it already
                entry = self.relu.setdefault(site, {"units": int(alive.numel()), "steps": [], "dead": []})
                entry["steps"].append(step)
                entry["dead"].append(_num(1.0 - float(alive.float().mean())))
                del entry["steps"][:-SERIES_CAP], entry["dead"][:-SERIES_CAP]
            if self._hist_now:
                flat = x.float().reshape(-1)
                lo, hi = (float(v) for v in torch.aminmax(flat))
                if math.isfinite(lo) and math.isfinite(hi):
                    if hi <= lo:
                        hi = lo + 1e-6
                    counts = torch.histc(flat, bins=HIST_BINS, min=lo, max=hi)
                    record = {"step": step, "range": [_num(lo), _num(hi)], "counts": [int(c) for c in counts.tolist()],
                              "relu": relu}
                    entry = self.hist.setdefault(site, {})
                    entry.setdefault("first", record)
                    entry["last"] = record

    def _input_stats(self, tensor) -> None:
        if self._inputs is not None and self._inputs.get("batches", 0) >= INPUT_BATCHES:
            return
        if not tensor.is_floating_point() or tensor.dim() < 2 or tensor.shape[0] < 2:
            if self._inputs is None:
                self._inputs = {"dtype": str(tensor.dtype).replace("torch.", ""), "shape": list(tensor.shape)}
            return
        with torch.no_grad():
            x = tensor.detach()
            rows = x.reshape(x.shape[0], -1)
            cols = x.reshape(x.shape[0], -1).t() if x.dim() == 2 else x.transpose(0, 1).reshape(x.shape[1], -1)
            if cols.shape[0] > MAX_CHANNELS:
                cols = rows.reshape(1, -1)
            cols = cols.double()
            finite = torch.isfinite(cols)
            safe = torch.where(finite, cols, torch.zeros((), dtype=cols.dtype, device=cols.device))
            cmin = torch.where(finite, cols, torch.full((), math.inf, dtype=cols.dtype, device=cols.device)).amin(1)
            cmax = torch.where(finite, cols, torch.full((), -math.inf, dtype=cols.dtype, device=cols.device)).amax(1)
            acc = self._inputs
            if acc is None or "sum" not in acc or acc["sum"].shape != safe.shape[:1]:
                acc = self._inputs = {
                    "dtype": str(tensor.dtype).replace("torch.", ""), "shape": list(tensor.shape),
                    "sum": torch.zeros_like(cmin), "sumsq": torch.zeros_like(cmin), "count": 0,
                    "min": torch.full_like(cmin, math.inf), "max": torch.full_like(cmin, -math.inf),
                    "varied": torch.zeros_like(cmin, dtype=torch.bool), "nonfinite": torch.zeros((), device=cols.device),
                    "batches": 0,
                }
            acc["sum"] += safe.sum(1)
            acc["sumsq"] += (safe * safe).sum(1)
            acc["count"] += cols.shape[1]
            acc["min"] = torch.minimum(acc["min"], cmin)
            acc["max"] = torch.maximum(acc["max"], cmax)
            acc["varied"] |= cmax > cmin
            acc["nonfinite"] = acc["nonfinite"] + (~finite).sum()
            acc["batches"] += 1
            if self.r._epoch_end_at is None:  # distinct rows within the first epoch
                width = rows.shape[1]
                if self._projection is None or self._projection.shape[0] != width:
                    generator = torch.Generator().manual_seed(12345)
                    self._projection = torch.rand(width, generator=generator, dtype=torch.float64).to(rows.device)
                keys = (rows.double().nan_to_num() @ self._projection).tolist()
                self._hashes.update(float("%.12g" % k) for k in keys)
                self._rows_seen += len(keys)

    def root_output(self, module, record: dict) -> None:
        """After the Recorder measured a top-level forward (``record``)."""
        step = self.r.total_steps
        if record["training"] and record["grad_enabled"]:
            if "spread" in record:
                self.outputs.add(step + 1, [record["spread"], record["scale"], record.get("distinct_argmax"),
                                            record.get("classes"), record["batch"]])
        elif step >= 1 and record.get("shape"):
            entry = self._validation_entry(step)
            entry["samples"] += int(record["shape"][0]) if record["shape"] else 0
            entry["forwards"] += 1

    def _validation_entry(self, step: int) -> dict:
        return self.validation.setdefault(step, {"step": step, "samples": 0, "forwards": 0, "loss_sum": 0.0,
                                                 "loss_samples": 0, "correct": 0, "labelled": 0})

    # -- losses ------------------------------------------------------------------

    def loss_called(self, name: str, input, target, output, kwargs: dict) -> None:
        training = torch.is_grad_enabled()
        if training and not self.sampling and self.initial_loss is not None:
            return  # the common case: nothing to measure at this step
        if not isinstance(input, torch.Tensor) or not isinstance(output, torch.Tensor) or output.numel() != 1:
            return
        classification = name in ("cross_entropy", "nll_loss") and isinstance(target, torch.Tensor) and (
            not target.is_floating_point()) and input.dim() >= 2
        with torch.no_grad():
            if training:
                if self.initial_loss is None and self.r.total_steps == 0:
                    self.initial_loss = {"fn": name, "value": _num(float(output.detach())),
                                         "reduction": kwargs.get("reduction", "mean"),
                                         "classes": int(input.shape[1]) if classification else None,
                                         "weighted": kwargs.get("weight") is not None,
                                         "label_smoothing": float(kwargs.get("label_smoothing") or 0.0)}
                if self.sampling:
                    self._labels_seen(name, input, target, classification)
                if classification and self.sampling:
                    predicted = input.detach().argmax(1)
                    self.train_accuracy.append((self.r.total_steps + 1, (predicted == target).float().mean()))
            elif self.r.total_steps >= 1:
                entry = self._validation_entry(self.r.total_steps)
                batch = int(input.shape[0]) if input.dim() else 1
                entry["loss_sum"] += float(output.detach()) * batch
                entry["loss_samples"] += batch
                if classification:
                    entry["correct"] += int((input.detach().argmax(1) == target).sum())
                    entry["labelled"] += int(target.numel())

    def _labels_seen(self, name, input, target, classification: bool) -> None:
        if not isinstance(target, torch.Tensor) or target.numel() == 0:
            return
        acc = self._labels
        onehot = False
        if name.startswith("binary") and target.dim() == 2 and target.shape[1] > 2 and target.is_floating_point():
            if self._onehot is None:  # decided once: one-hot rows are single-label classes (BCE on multi-class)
                t = target.detach()
                self._onehot = bool((((t == 0) | (t == 1)).all() & (t.sum(1) == 1).all()))
            onehot = self._onehot
        if classification or onehot:
            classes = int(input.shape[1]) if classification else int(target.shape[1])
            t = target.detach().reshape(-1) if classification else target.detach().argmax(1)
            index = torch.where((t >= 0) & (t < classes), t, torch.full_like(t, classes))
            counts = torch.zeros(classes + 1, device=t.device).scatter_add_(0, index, torch.ones_like(t, dtype=torch.float))
            if acc is None or acc.get("kind") != "classes" or acc["counts"].numel() != classes + 1:
                acc = self._labels = {"kind": "classes", "counts": torch.zeros_like(counts), "fn": name,
                                      "batches": [0, 0]}
            acc["counts"] += counts
            if t.numel() >= 8:  # [batches sampled, batches holding a single class]
                acc["batches"][0] += 1
                acc["batches"][1] += int((counts[:-1] > 0).sum()) == 1
        elif target.is_floating_point():
            t = target.detach().float().reshape(-1)
            kind = "binary" if name.startswith("binary") else "values"
            if acc is None or acc.get("kind") != kind:
                acc = self._labels = {"kind": kind, "fn": name, "sum": torch.zeros((), device=t.device),
                                      "sumsq": torch.zeros((), device=t.device), "count": 0,
                                      "min": torch.full((), math.inf, device=t.device),
                                      "max": torch.full((), -math.inf, device=t.device)}
            acc["sum"] = acc["sum"] + t.sum()
            acc["sumsq"] = acc["sumsq"] + (t * t).sum()
            acc["count"] += t.numel()
            acc["min"] = torch.minimum(acc["min"], t.min())
            acc["max"] = torch.maximum(acc["max"], t.max())

    def loss_value(self, value: Optional[float]) -> None:
        """Every backward()'s loss (the Recorder computed it already), keyed
        by the backward's number; the row says the step it belongs to."""
        if value is not None:
            self._backwards += 1
            self.loss.add(self._backwards, [self.r.total_steps + 1, value])

    # -- optimizer steps ---------------------------------------------------------------

    def before_step(self, optimizer, params: list, record: dict) -> None:
        """At the step (after a closure): the Recorder's norms and learning
        rates; a copy of the weights when this step is sampled."""
        index, step = record["optimizer"], record["step"]
        self.grad.add(step, record["grad_norms"])  # the Recorder's own dicts: built per step, never changed
        self.weight.add(step, record["weight_norms"])
        self.lr.add(step, {"%s[%d]" % (record["optimizer_type"], index): record["lr"][0] if record["lr"] else None})
        if self.sampling:
            chosen = [p for p in params[:MAX_PARAMS] if p.is_floating_point() and not p.is_sparse]
            with torch.no_grad():
                try:
                    copies = torch._foreach_mul([p.detach() for p in chosen], 1.0)
                except Exception:
                    copies = [p.detach().clone() for p in chosen]
            self._before[index] = (step, chosen, copies)

    def after_step(self, optimizer, index: int) -> None:
        pending = self._before.pop(index, None)
        if pending is not None:
            step, params, copies = pending
            with torch.no_grad():
                now = [p.detach() for p in params]
                try:
                    deltas = torch._foreach_norm(torch._foreach_sub(now, copies))
                    weights = torch._foreach_norm(copies)
                    values = torch.stack([torch.stack(deltas).float(), torch.stack(weights).float()]).tolist()
                except Exception:
                    values = [[float((a - b).norm()) for a, b in zip(now, copies)], [float(b.norm()) for b in copies]]
            names = [self.r.param_name(p) for p in params]
            self.update.add(step, {n: [_num(d), _num(w)] for n, d, w in zip(names, values[0], values[1])})
        upcoming = self.r.total_steps + 1
        self.sampling = sampled(upcoming)
        self._hist_now = self.sampling and (upcoming == 1 or upcoming % HIST_EVERY == 0)

    def loader_iter(self, loader) -> None:
        """A DataLoader iterator was created (an epoch starts)."""
        entry = self.loaders.get(id(loader))
        if entry is None:
            if len(self.loaders) >= 8:
                return
            entry = self.loaders[id(loader)] = {"iterations": 0, "first_step": self.r.total_steps}
            try:
                entry["samples"] = len(loader.dataset)
            except TypeError:
                entry["samples"] = None
            entry["batch_size"] = loader.batch_size
            entry["sampler"] = type(getattr(loader, "sampler", None)).__name__
        entry["iterations"] += 1

    # -- the end -----------------------------------------------------------------------

    def finish(self) -> Dict[str, Any]:
        r = self.r
        out: Dict[str, Any] = {
            "loss": self.loss.as_dict(),
            "lr": self.lr.as_dict(),
            "grad_norms": self.grad.as_dict(),
            "weight_norms": self.weight.as_dict(),
            "updates": self.update.as_dict(),
            "outputs": self.outputs.as_dict(),
            "relu": self.relu,
            "histograms": self.hist,
            "initial_loss": self.initial_loss,
            "validation": [v for _, v in sorted(self.validation.items())],
            "dropout_in_eval": self.dropout_in_eval,
            "loaders": list(self.loaders.values()),
        }
        if self.train_accuracy:
            values = torch.stack([v.detach().float().cpu() for _, v in self.train_accuracy]).tolist()
            out["train_accuracy"] = {"steps": [s for s, _ in self.train_accuracy], "values": [_num(v) for v in values]}
        out["inputs"] = self._finish_inputs()
        out["labels"] = self._finish_labels()
        out["distinct_inputs"] = {"seen": self._rows_seen, "distinct": len(self._hashes)}
        model = {"trainable": 0, "dropout": 0, "norm": 0}
        for root in r.roots:
            model["trainable"] += sum(p.numel() for p in root.parameters() if p.requires_grad)
            for m in root.modules():
                kind = type(m).__name__
                model["dropout"] += "Dropout" in kind
                model["norm"] += "Norm" in kind
        out["model"] = model
        out["optimizers"] = [
            {"type": type(o).__name__,
             "weight_decay": [float(g.get("weight_decay") or 0.0) for g in o.param_groups],
             "lr": [_num(g["lr"]) if isinstance(g.get("lr"), (int, float)) else None for g in o.param_groups]}
            for o in r.optimizers
        ]
        return out

    def _finish_inputs(self) -> Optional[dict]:
        acc = self._inputs
        if acc is None or "sum" not in acc:
            return acc
        count = max(acc["count"], 1)
        mean = acc["sum"] / count
        var = (acc["sumsq"] / count - mean * mean).clamp(min=0)
        channels = int(mean.numel())
        shown = min(channels, 64)
        return {
            "dtype": acc["dtype"], "shape": acc["shape"], "batches": acc["batches"], "channels": channels,
            "per": "feature" if len(acc["shape"]) == 2 else "channel",
            "mean": [_num(v) for v in mean[:shown].tolist()],
            "std": [_num(v) for v in var.sqrt()[:shown].tolist()],
            "mean_range": [_num(float(mean.min())), _num(float(mean.max()))],
            "std_range": [_num(float(var.sqrt().min())), _num(float(var.sqrt().max()))],
            "min": _num(float(acc["min"].min())), "max": _num(float(acc["max"].max())),
            "constant": int((~acc["varied"]).sum()),
            "nonfinite": int(acc["nonfinite"]),
            "values": count * channels,
        }

    def _finish_labels(self) -> Optional[dict]:
        acc = self._labels
        if acc is None:
            return None
        if acc["kind"] == "classes":
            counts = [int(c) for c in acc["counts"].tolist()]
            return {"kind": "classes", "fn": acc["fn"], "counts": counts[:-1], "ignored": counts[-1],
                    "batches_sampled": acc["batches"][0], "single_class_batches": acc["batches"][1]}
        count = max(acc["count"], 1)
        mean = float(acc["sum"]) / count
        return {"kind": acc["kind"], "fn": acc["fn"], "count": acc["count"], "mean": _num(mean),
                "std": _num(math.sqrt(max(float(acc["sumsq"]) / count - mean * mean, 0.0))),
                "min": _num(float(acc["min"])), "max": _num(float(acc["max"]))}


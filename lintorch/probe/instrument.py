"""Child side: the hooks and narrow wrappers that record a training run.

Everything recorded here is plain JSON data (numbers, strings, lists): the
parent process evaluates it with :mod:`lintorch.probe.checks` and never sees
a tensor. Public torch hooks are used where they exist (global module
forward hooks, global optimizer step hooks); narrow wrappers otherwise
(``Tensor.backward``, ``torch.nn.functional`` losses, ``DataLoader.__init__``,
``Module.register_*_hook``, ``Tensor.register_hook``, ``torch.save``/``load``
and ``open`` of checkpoint files).

This module imports torch and is only imported in the child process.
"""

import functools
import os
import sys
import time
from typing import Any, Dict, List, Optional

import torch

PROBE_DIR = os.path.dirname(os.path.abspath(__file__))
TORCH_DIR = os.path.dirname(os.path.abspath(torch.__file__))

REGRESSION_LOSSES = ("mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss")
MAX_RECORDS = 40
MIN_AUTO_STEPS = 5
MAX_AUTO_STEPS = 2000  # per kind of event: the probe runs a few steps, not epochs


class ProbeStop(BaseException):
    """Raised from the optimizer step post-hook after the requested number of
    steps. A BaseException, so the script's ``except Exception`` cannot
    swallow it."""


# Under torch.compile the hooks and wrappers below are traced into the
# graph. They return at once there (is_compiling() is a constant to the
# tracer), so they add no graph break and the compiled program is the
# user's own; the measurements come from the eager calls around it.
_compiling = getattr(getattr(torch, "compiler", None), "is_compiling", None) or (lambda: False)


def _inside_update_bn() -> bool:
    """Whether torch.optim.swa_utils.update_bn is running: it recomputes
    batch-norm statistics in training mode under no_grad on purpose."""
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_code.co_name == "update_bn" and frame.f_code.co_filename.endswith("swa_utils.py"):
            return True
        frame = frame.f_back
    return False


def _fmt(value: float) -> float:
    return float("%.6g" % value) if value == value and abs(value) != float("inf") else float(value)


def _grad_fn_name(tensor) -> Optional[str]:
    fn = getattr(tensor, "grad_fn", None)
    return type(fn).__name__ if fn is not None else None


# autograd nodes that only reshape or copy: looked through to find the op
# that produced a loss input (sigmoid(x).squeeze(1) -> SigmoidBackward0)
_SHAPE_ONLY = {
    "ViewBackward0", "ReshapeAliasBackward0", "UnsafeViewBackward0", "SqueezeBackward0", "SqueezeBackward1",
    "SqueezeBackward2", "UnsqueezeBackward0", "CloneBackward0", "ExpandBackward0", "SelectBackward0",
    "SliceBackward0", "IndexBackward0", "PermuteBackward0", "TransposeBackward0", "TBackward0",
    "ToCopyBackward0", "AliasBackward0", "ViewAsRealBackward0", "CatBackward0", "StackBackward0",
}


def _producer(tensor) -> Optional[str]:
    """Name of the autograd node that computed ``tensor``, looking through
    shape-only and copy nodes."""
    fn = getattr(tensor, "grad_fn", None)
    for _ in range(8):
        if fn is None:
            return None
        name = type(fn).__name__
        if name not in _SHAPE_ONLY:
            return name
        nexts = [f for f, _ in getattr(fn, "next_functions", ()) if f is not None]
        if len(nexts) != 1 and name not in ("CatBackward0", "StackBackward0"):
            return name
        fn = nexts[0] if nexts else None
    return None


def _first_tensor(value):
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (list, tuple)):
        for item in value:
            found = _first_tensor(item)
            if found is not None:
                return found
    if isinstance(value, dict):
        for item in value.values():
            found = _first_tensor(item)
            if found is not None:
                return found
    logits = getattr(value, "logits", None)  # HF-style output objects
    if isinstance(logits, torch.Tensor):
        return logits
    return None


def _shape(value) -> Optional[List[int]]:
    tensor = _first_tensor(value)
    return list(tensor.shape) if tensor is not None else None


class Recorder:
    """All the state of one probed run."""

    def __init__(self, script: str, steps: Optional[int], overlay, progress_fd: Optional[int] = None,
                 budget: float = 60.0, min_steps: int = MIN_AUTO_STEPS, min_rounds: int = 1):
        self.script = os.path.abspath(script)
        self.max_steps = steps  # None: stop after the first validation pass / epoch end
        self.budget = budget  # seconds of training allowed for the default stop
        # the default stop: at least min_steps, then after min_rounds validation passes (or epochs)
        self.min_steps, self.min_rounds = min_steps, min_rounds
        self._validation_steps = set()  # total_steps values at which an evaluation pass ran
        self._exhausted: Dict[int, int] = {}  # DataLoader id -> epochs it completed
        self._last_step_clock: Optional[tuple] = None
        self.diag = None  # lintorch diagnose: a diagnostics.Diagnostics, called at the hook points below
        self._first_step_at: Optional[float] = None
        self._validation_at: Optional[int] = None  # total_steps when evaluation was first seen
        self._epoch_end_at: Optional[int] = None
        self.overlay = overlay  # sandbox.Overlay: where the script's writes go
        self.progress_fd = progress_fd
        self.main_pid = os.getpid()
        self.stopping = False
        self._handles: List[Any] = []
        self._originals: List[tuple] = []
        self._reentrant = False
        self._in_backward = 0
        self._depth = 0
        self._bn_refresh = False  # inside swa_utils.update_bn

        self.optimizers: List[Any] = []  # strong refs; the run is short
        self.opt_index: Dict[int, int] = {}
        self.opt_steps: Dict[int, int] = {}
        self.total_steps = 0
        self.roots: List[Any] = []  # top-level modules with parameters, in call order
        self._root_ids = set()
        self._names: Dict[int, str] = {}

        # per-parameter state for LT201 (keyed by id(param))
        self._norm_at_step: Dict[int, float] = {}
        self._cleared: Dict[int, bool] = {}
        self._last_seen: Dict[int, Optional[float]] = {}
        self._initial: Dict[int, Any] = {}  # clones taken before the first step
        self._initial_rows: Dict[int, dict] = {}
        self._accum_probe: Dict[int, dict] = {}  # optimizer index -> pending LT201 evidence
        self._accum_done = False
        self._backwards_since: Dict[int, int] = {}
        self._post_backward_norm: Dict[int, Optional[float]] = {}

        self.data: Dict[str, Any] = {
            "steps": [],
            "backwards": [],
            "losses": [],
            "forwards": [],
            "nograd_train_mode": [],
            "hooks": [],
            "dataloaders": [],
            "saves": [],
            "optimizer_params": [],
            "processes": [],
            "accumulation": [],
            "devices": [],
            "step_seconds": [],  # wall and CPU time between consecutive steps (bench/diagnose.py)
            "step_cpu_seconds": [],
        }

    # -- helpers --------------------------------------------------------------

    def _is_main(self) -> bool:
        return os.getpid() == self.main_pid

    def user_site(self):
        """(file, line) of the innermost caller frame in user code."""
        frame = sys._getframe(2)
        while frame is not None:
            name = os.path.abspath(frame.f_code.co_filename)
            if not (name.startswith(PROBE_DIR) or name.startswith(TORCH_DIR) or name.startswith("<frozen")):
                return name, frame.f_lineno
            frame = frame.f_back
        return None, None

    def script_line(self) -> Optional[int]:
        frame = sys._getframe(1)
        while frame is not None:
            if os.path.abspath(frame.f_code.co_filename) == self.script:
                return frame.f_lineno
            frame = frame.f_back
        return None

    def _append(self, kind: str, record: dict) -> None:
        items = self.data[kind]
        if len(items) < MAX_RECORDS:
            items.append(record)

    def param_name(self, param) -> str:
        key = id(param)
        if key not in self._names:
            for root_index, root in enumerate(self.roots):
                prefix = "" if len(self.roots) == 1 else "%s[%d]." % (type(root).__name__, root_index)
                for name, p in root.named_parameters():
                    self._names.setdefault(id(p), prefix + name)
        return self._names.get(key) or "param%s" % list(param.shape)

    def module_name(self, module) -> str:
        for root in self.roots:
            for name, m in root.named_modules():
                if m is module:
                    return name or type(root).__name__
        return type(module).__name__

    def trainable(self, optimizer) -> list:
        out = []
        for group in optimizer.param_groups:
            for p in group["params"]:
                if isinstance(p, torch.Tensor) and p.requires_grad:
                    out.append(p)
        return out

    def all_trainable(self) -> list:
        seen, out = set(), []
        for opt in self.optimizers:
            for p in self.trainable(opt):
                if id(p) not in seen:
                    seen.add(id(p))
                    out.append(p)
        if not out:
            for root in self.roots:
                for p in root.parameters():
                    if p.requires_grad and id(p) not in seen:
                        seen.add(id(p))
                        out.append(p)
        return out

    @staticmethod
    def grad_norm(p) -> Optional[float]:
        g = p.grad
        if g is None:
            return None
        try:
            return float(g.detach().float().norm())
        except RuntimeError:  # sparse or exotic gradients
            return float("nan")

    def progress(self, text: str) -> None:
        if self.progress_fd is None:
            return
        try:
            os.write(self.progress_fd, (text.replace("\n", " ") + "\n").encode())
        except OSError:
            pass

    # -- installation ---------------------------------------------------------

    def _patch(self, owner, name: str, replacement) -> None:
        self._originals.append((owner, name, getattr(owner, name)))
        setattr(owner, name, replacement)

    def install(self) -> None:
        from torch.nn.modules import module as module_mod
        from torch.optim import optimizer as optimizer_mod

        self._handles.append(module_mod.register_module_forward_pre_hook(self._forward_pre))
        self._handles.append(module_mod.register_module_forward_hook(self._forward_post, always_call=True))
        self._handles.append(optimizer_mod.register_optimizer_step_pre_hook(self._step_pre))
        self._handles.append(optimizer_mod.register_optimizer_step_post_hook(self._step_post))
        self._wrap_optimizer_init()
        self._wrap_backward()
        self._wrap_losses()
        self._wrap_dataloader()
        self._wrap_hook_registration()
        self._wrap_checkpoints()
        self._wrap_grad_scaler()
        self._wrap_process_start()

    def _wrap_process_start(self) -> None:
        """multiprocessing workers (mp.spawn, torch.multiprocessing) run
        without the probe's instrumentation: record that they ran."""
        import multiprocessing.process as mp_process

        original = mp_process.BaseProcess.start
        recorder = self

        @functools.wraps(original)
        def start(self):
            if recorder._is_main():
                target = getattr(self, "_target", None)
                recorder._append("processes", {
                    "target": getattr(target, "__name__", type(target).__name__) if target else type(self).__name__,
                    "method": getattr(getattr(self, "_ctx", None), "_name", None) or "fork",
                    "line": recorder.script_line(),
                })
            return original(self)

        self._patch(mp_process.BaseProcess, "start", start)

    def _wrap_grad_scaler(self) -> None:
        try:
            from torch.amp.grad_scaler import GradScaler
        except ImportError:  # older torch
            return
        original = GradScaler.scale
        recorder = self

        @functools.wraps(original)
        def scale(self, outputs):
            scaled = original(self, outputs)
            if isinstance(outputs, torch.Tensor) and isinstance(scaled, torch.Tensor) and recorder._is_main():
                recorder._last_scaled = (scaled, outputs)
            return scaled

        self._patch(GradScaler, "scale", scale)

    # -- modules --------------------------------------------------------------

    def _forward_pre(self, module, args):
        if _compiling() or not self._is_main():
            return None
        if self._depth == 0:
            self._bn_refresh = not torch.is_grad_enabled() and module.training and _inside_update_bn()
        try:
            if self._depth == 0 and id(module) not in self._root_ids and any(True for _ in module.parameters()):
                self._root_ids.add(id(module))
                self.roots.append(module)
                self._names.clear()
        except Exception:
            pass
        self._depth += 1
        diag = self.diag
        if diag is not None and (self._depth == 1 or diag.sampling):
            try:
                diag.module_enter(module, args, self._depth)
            except Exception:  # a measurement must never break the script
                pass
        if (module.training and not torch.is_grad_enabled() and self._is_norm_or_dropout(module)
                and not self._bn_refresh):
            self.data["nograd_train_mode_count"] = self.data.get("nograd_train_mode_count", 0) + 1
            if len(self.data["nograd_train_mode"]) < MAX_RECORDS:
                self._append(
                    "nograd_train_mode",
                    {"module": self.module_name(module), "type": type(module).__name__, "step": self.total_steps},
                )
        return None

    @staticmethod
    def _is_norm_or_dropout(module) -> bool:
        from torch.nn.modules.batchnorm import _BatchNorm
        from torch.nn.modules.dropout import _DropoutNd

        return isinstance(module, (_DropoutNd, _BatchNorm))

    def _forward_post(self, module, args, output):
        if _compiling() or not self._is_main():
            return None
        self._depth = max(0, self._depth - 1)
        if self.diag is not None and self.diag.sampling:
            try:
                self.diag.module_exit(module, output)
            except Exception:
                pass
        if self._depth != 0 or id(module) not in self._root_ids or self._bn_refresh:
            return None
        try:
            self._record_forward(module, output)
        except Exception:  # a measurement must never break the script
            pass
        return None

    def _record_forward(self, module, output) -> None:
        tensor = _first_tensor(output)
        grad = torch.is_grad_enabled()
        record = {
            "module": type(module).__name__,
            "step": self.total_steps,
            "training": bool(module.training),
            "grad_enabled": bool(grad),
            "norm_dropout_training": sorted(
                {name for name, m in module.named_modules() if self._is_norm_or_dropout(m) and m.training}
            )[:8],
            "has_norm_dropout": any(self._is_norm_or_dropout(m) for m in module.modules()),
            "shape": list(tensor.shape) if tensor is not None else None,
        }
        if tensor is not None and tensor.dim() >= 1 and tensor.shape[0] >= 2 and tensor.is_floating_point():
            with torch.no_grad():
                flat = tensor.detach().float().reshape(tensor.shape[0], -1)
                spread = float((flat - flat[0:1]).abs().max())
                scale = float(flat.abs().max())
                record["batch"] = int(flat.shape[0])
                record["spread"] = _fmt(spread)
                record["scale"] = _fmt(scale)
                if flat.shape[1] > 1:
                    predictions = flat.argmax(dim=1)
                    record["distinct_argmax"] = int(predictions.unique().numel())
                    record["classes"] = int(flat.shape[1])
        if not (record["training"] and grad) and self.total_steps >= 1:
            self._validation_steps.add(self.total_steps)
            if self._validation_at is None:
                self._validation_at = self.total_steps  # evaluation after training started
        if self.diag is not None:
            self.diag.root_output(module, record)
        forwards = self.data["forwards"]
        # keep the first few, every no-grad/eval pass (capped) and the latest training pass
        if len(forwards) < 6 or not (record["training"] and record["grad_enabled"]):
            self._append("forwards", record)
            if grad and tensor is not None and tensor.requires_grad and not module.training:
                # an eval-mode pass with autograd on: is it ever backpropagated
                # (a training step in eval mode) or only evaluated (LT302)?
                record["backpropagated"] = False

                def mark(grad_value, record=record):
                    record["backpropagated"] = True

                self._original_register_hook(tensor, mark)
        else:
            self.data["last_train_forward"] = record

    # -- optimizers -----------------------------------------------------------

    def _wrap_optimizer_init(self) -> None:
        original = torch.optim.Optimizer.__init__
        recorder = self

        @functools.wraps(original)
        def __init__(self, *args, **kwargs):
            main = recorder._is_main()
            record = {"type": type(self).__name__, "line": recorder.script_line() if main else None}
            try:
                original(self, *args, **kwargs)
            except ValueError as exc:  # "optimizer got an empty parameter list"
                if main:
                    record["error"] = str(exc)
                    recorder._append("optimizer_params", record)
                raise
            if main and id(self) not in recorder.opt_index:
                recorder.opt_index[id(self)] = len(recorder.optimizers)
                recorder.optimizers.append(self)
                try:  # LT208: what the optimizer holds when it is built
                    params = [p for g in self.param_groups for p in g["params"] if isinstance(p, torch.Tensor)]
                    record.update(index=recorder.opt_index[id(self)], params=len(params),
                                  trainable=sum(1 for p in params if p.requires_grad),
                                  elements=sum(p.numel() for p in params))
                    recorder._append("optimizer_params", record)
                except Exception:
                    pass

        self._patch(torch.optim.Optimizer, "__init__", __init__)

    def _index(self, optimizer) -> int:
        if id(optimizer) not in self.opt_index:
            self.opt_index[id(optimizer)] = len(self.optimizers)
            self.optimizers.append(optimizer)
        return self.opt_index[id(optimizer)]

    def _step_pre(self, optimizer, args, kwargs):
        if not self._is_main():
            return None
        if self.stopping:
            raise ProbeStop()
        # args holds the optimizer itself, then step()'s own arguments
        closure = kwargs.get("closure") if kwargs.get("closure") is not None else (
            args[1] if len(args) > 1 else None)
        if closure is None or not callable(closure):
            self._measure_step(optimizer, closure=False)
            return None
        # step(closure) (LBFGS, Lightning): the gradients the step uses exist
        # only once the closure has run, so measure right after its first call
        recorder, state = self, {"measured": False}

        @functools.wraps(closure)
        def measured_closure(*c_args, **c_kwargs):
            result = closure(*c_args, **c_kwargs)
            if not state["measured"]:
                state["measured"] = True
                try:
                    recorder._measure_step(optimizer, closure=True)
                except Exception:  # a measurement must never break the script
                    pass
            return result

        if "closure" in kwargs:
            return args, dict(kwargs, closure=measured_closure)
        return (args[0], measured_closure) + tuple(args[2:]), kwargs

    def _measure_step(self, optimizer, closure: bool) -> None:
        index = self._index(optimizer)
        count = self.opt_steps.get(index, 0) + 1
        params = self.trainable(optimizer)
        if count == 1:
            self._snapshot_initial(params)
            self._record_devices(params)
        norms = {}
        for p in params:
            norms[id(p)] = self.grad_norm(p)
        present = [n for n in norms.values() if n is not None]
        total = sum(n * n for n in present if n == n) ** 0.5 if present else None
        all_zero = all(n is None or n == 0.0 for n in norms.values())
        uncleared = []
        if count > 1:
            for p in params:
                key = id(p)
                before = self._norm_at_step.get(key)
                now = norms[key]
                if before and now and not self._cleared.get(key, True):
                    uncleared.append(self.param_name(p))
        lrs = []
        for group in optimizer.param_groups:
            lr = group.get("lr")
            try:
                lrs.append(_fmt(float(lr)))
            except (TypeError, ValueError):
                lrs.append(None)
        per_param, weights = {}, {}
        for p in params[:64]:
            n = norms[id(p)]
            per_param[self.param_name(p)] = None if n is None else _fmt(n)
            try:
                with torch.no_grad():
                    weights[self.param_name(p)] = _fmt(float(p.detach().float().norm()))
            except RuntimeError:
                pass
        record = {
            "step": count,
            "optimizer": index,
            "optimizer_type": type(optimizer).__name__,
            "lr": lrs,
            "params": len(params),
            "grad_total_norm": None if total is None else _fmt(total),
            "grad_norms": per_param,
            "weight_norms": weights,
            "grads_none": sum(1 for n in norms.values() if n is None),
            "all_zero_or_none": all_zero,
            "backwards_since": self._backwards_since.get(index, 0),
            "post_backward_norm": self._post_backward_norm.get(index),
            "uncleared": uncleared,
            "closure": closure,
            "line": self.script_line(),
            "eval_mode_modules": self._eval_mode_modules(),
            "has_norm_dropout": any(self._is_norm_or_dropout(m) for r in self.roots for m in r.modules()),
        }
        pending = self._accum_probe.pop(index, None)
        if pending is not None and uncleared and pending.get("result"):
            result = dict(pending["result"], step=count)
            self._accum_done = True
            self.data["accumulation"].append(result)
            record["accumulation"] = result
        self._append("steps", record)
        self._pending_norms = norms
        if self.diag is not None:
            try:
                self.diag.before_step(optimizer, params, record)
            except Exception:
                pass

    def _step_post(self, optimizer, args, kwargs):
        if not self._is_main():
            return None
        index = self._index(optimizer)
        norms = getattr(self, "_pending_norms", {})
        for p in self.trainable(optimizer):
            self._norm_at_step[id(p)] = norms.get(id(p))
            self._last_seen[id(p)] = norms.get(id(p))
            self._cleared[id(p)] = False
        self._backwards_since[index] = 0
        self._post_backward_norm[index] = None
        self.opt_steps[index] = self.opt_steps.get(index, 0) + 1
        previous = self.total_steps
        self.total_steps = max(self.opt_steps.values())
        if self.total_steps != previous:
            clock = (time.perf_counter(), time.process_time())
            if self._last_step_clock is not None and len(self.data["step_seconds"]) < MAX_AUTO_STEPS:
                self.data["step_seconds"].append(round(clock[0] - self._last_step_clock[0], 6))
                self.data["step_cpu_seconds"].append(round(clock[1] - self._last_step_clock[1], 6))
            self._last_step_clock = clock
        if self.diag is not None:
            try:
                self.diag.after_step(optimizer, index)
            except Exception:
                pass
        loss = self.data["backwards"][-1]["loss"] if self.data["backwards"] else None
        self.progress("step %d/%s%s" % (self.total_steps, self.max_steps or "auto",
                                         "" if loss is None else " loss %.4g" % loss))
        if self._first_step_at is None:
            self._first_step_at = time.time()
        reason = self._stop_reason()
        if reason:
            self.data["stop_reason"] = reason
            self.stopping = True
            raise ProbeStop()
        return None

    def _stop_reason(self) -> Optional[str]:
        """Fixed --steps: after that many. Default: at least MIN_AUTO_STEPS,
        then the first step after a validation pass or after a DataLoader
        was exhausted (the end of an epoch, when validation usually runs),
        within a time budget and a step cap."""
        steps = self.total_steps
        if self.max_steps is not None:
            return "steps" if steps >= self.max_steps else None
        if steps < self.min_steps:
            return None
        if self._validation_at is not None and steps > self._validation_at and (
                len(self._validation_steps) >= self.min_rounds):
            return "validation"
        if self._epoch_end_at is not None and steps > self._epoch_end_at and (
                max(self._exhausted.values(), default=0) >= self.min_rounds):
            return "epoch"
        if steps >= MAX_AUTO_STEPS or time.time() - self._first_step_at > self.budget:
            return "budget"
        return None

    def _eval_mode_modules(self) -> list:
        out = []
        for root in self.roots:
            for name, m in root.named_modules():
                if self._is_norm_or_dropout(m) and not m.training:
                    out.append("%s '%s'" % (type(m).__name__, name or type(root).__name__))
                    if len(out) >= 4:
                        return out
        return out

    def _snapshot_initial(self, params) -> None:
        budget = 64 * 1024 * 1024  # elements; beyond that only norms are compared
        used = sum(t.numel() for t in self._initial.values())
        with torch.no_grad():
            for p in params:
                if id(p) in self._initial:
                    continue
                if used + p.numel() <= budget:
                    self._initial[id(p)] = p.detach().clone()
                    used += p.numel()
                if p.dim() >= 2 and p.shape[0] >= 2:
                    self._initial_rows[id(p)] = self._rows_identical(p)

    def _record_devices(self, params) -> None:
        devices = sorted({str(p.device) for p in params})
        for device in devices:
            if device not in self.data["devices"]:
                self.data["devices"].append(device)

    @staticmethod
    def _rows_identical(p) -> dict:
        with torch.no_grad():
            rows = p.detach().float().reshape(p.shape[0], -1)
            diff = float((rows - rows[0:1]).abs().max())
            scale = float(rows.abs().max())
        return {
            "rows": int(rows.shape[0]),
            "max_row_diff": _fmt(diff),
            "scale": _fmt(scale),
            "identical": diff <= 1e-6 * max(scale, 1e-30),
        }

    # -- backward -------------------------------------------------------------

    def _wrap_backward(self) -> None:
        recorder = self
        original_method = torch.Tensor.backward
        original_function = torch.autograd.backward

        @functools.wraps(original_method)
        def backward(self, gradient=None, retain_graph=None, create_graph=False, inputs=None):
            return recorder._backward(self, gradient, inputs, lambda: original_method(
                self, gradient, retain_graph, create_graph, inputs))

        @functools.wraps(original_function)
        def autograd_backward(tensors, grad_tensors=None, *args, **kwargs):
            first = tensors if isinstance(tensors, torch.Tensor) else (tensors[0] if len(tensors) == 1 else None)
            if first is None:
                return original_function(tensors, grad_tensors, *args, **kwargs)
            return recorder._backward(first, grad_tensors, kwargs.get("inputs"), lambda: original_function(
                tensors, grad_tensors, *args, **kwargs))

        self._patch(torch.Tensor, "backward", backward)
        self._patch(torch.autograd, "backward", autograd_backward)

    def _backward(self, loss, gradient, inputs, call):
        if self._reentrant or not self._is_main() or not isinstance(loss, torch.Tensor):
            return call()
        self._reentrant = True
        try:
            record = None
            try:
                record, before = self._before_backward(loss, gradient, inputs)
            except Exception:
                before = None
            self._in_backward += 1
            try:
                result = call()
            except Exception as exc:
                if record is not None:
                    record["error"] = "%s: %s" % (type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
                    self._after_backward(record, before)
                raise
            finally:
                self._in_backward -= 1
            if record is not None:
                try:
                    self._after_backward(record, before)
                except Exception:
                    pass
            return result
        finally:
            self._reentrant = False

    def _before_backward(self, loss, gradient, inputs):
        value = None
        source = loss
        scaled = getattr(self, "_last_scaled", None)
        if scaled is not None and scaled[0] is loss:
            source = scaled[1]  # GradScaler.scale(loss): trace the loss, not loss * scale
        try:
            with torch.no_grad():
                value = _fmt(float(source.detach().float().mean()))
        except Exception:
            pass
        params = self.all_trainable()
        before = {id(p): self.grad_norm(p) for p in params}
        # LT201: was each parameter's gradient cleared since its optimizer's last step?
        for p in params:
            key = id(p)
            if key in self._cleared and not self._cleared[key]:
                now = before[key]
                # cleared: None or zero, or changed since the probe last saw it
                # (after the step or the previous backward)
                if now is None or now == 0.0 or now != self._last_seen.get(key):
                    self._cleared[key] = True
        self._probe_accumulation(loss, gradient, inputs)
        record = {
            "step": self.total_steps + 1,
            "loss": value,
            "shape": list(loss.shape),
            "grad_fn": _grad_fn_name(loss),
            "requires_grad": bool(loss.requires_grad),
            "is_leaf": bool(loss.is_leaf),
            "grad_enabled": bool(torch.is_grad_enabled()),
            "params": len(params),
            "line": self.script_line(),
        }
        self._append("backwards", record)
        if self.diag is not None:
            self.diag.loss_value(value)
        if len(self.data["backwards"]) >= MAX_RECORDS:
            self.data.setdefault("loss_tail", []).append(value)
            del self.data["loss_tail"][:-MAX_RECORDS]
        return record, (params, before)

    def _after_backward(self, record, before) -> None:
        if before is None:
            return
        params, norms = before
        got, without = 0, []
        for p in params:
            after = self.grad_norm(p)
            self._last_seen[id(p)] = after
            if after is not None and after != norms[id(p)]:
                got += 1
            elif len(without) < 8:
                without.append(self.param_name(p))
        record["params_got_grad"] = got
        record["params_without_grad"] = without
        for pending in self._accum_probe.values():
            if pending["param"].grad is not None and pending["batch"] is not None:
                try:
                    pending["result"] = self._accumulation_evidence(pending)
                except Exception:
                    pass
        for opt in self.optimizers:
            index = self.opt_index[id(opt)]
            self._backwards_since[index] = self._backwards_since.get(index, 0) + 1
            present = [self.grad_norm(p) for p in self.trainable(opt)]
            present = [n for n in present if n is not None and n == n]
            self._post_backward_norm[index] = _fmt(sum(n * n for n in present) ** 0.5) if present else None

    def _probe_accumulation(self, loss, gradient, inputs) -> None:
        """LT201 evidence, measured once: when a backward starts on top of an
        uncleared gradient, compute this batch's gradient independently
        (``torch.autograd.grad``) so that the step can compare
        ``.grad == previous grad + batch gradient``."""
        if self._accum_done or inputs is not None or loss.grad_fn is None:
            return
        for opt in self.optimizers:
            index = self.opt_index[id(opt)]
            if not self.opt_steps.get(index):
                continue
            params = [p for p in self.trainable(opt) if p.grad is not None]
            if not params:
                continue
            p = max(params, key=lambda t: t.numel())
            key = id(p)
            if self._cleared.get(key, True):
                self._accum_probe.pop(index, None)
                continue
            pending = self._accum_probe.get(index)
            if pending is None:
                pending = {"param": p, "previous": p.grad.detach().clone(), "batch": None, "backwards": 0}
            (batch,) = torch.autograd.grad(loss, [p], grad_outputs=gradient, retain_graph=True, allow_unused=True)
            if batch is None:
                continue
            pending["batch"] = batch.detach() if pending["batch"] is None else pending["batch"] + batch.detach()
            pending["backwards"] += 1
            self._accum_probe[index] = pending

    def _accumulation_evidence(self, pending) -> dict:
        """Right after the backward: .grad == previous .grad + the batch
        gradients computed independently (before any unscale_/clipping)."""
        p = pending["param"]
        with torch.no_grad():
            expected = pending["previous"].float() + pending["batch"].float()
            diff = float((p.grad.detach().float() - expected).abs().max())
            scale = float(expected.abs().max())
            batch_norm = float(pending["batch"].float().norm())
            previous_norm = float(pending["previous"].float().norm())
        return {
            "param": self.param_name(p),
            "max_abs_diff": _fmt(diff),
            "scale": _fmt(scale),
            "previous_norm": _fmt(previous_norm),
            "batch_norm": _fmt(batch_norm),
            "backwards": pending["backwards"],
        }

    # -- losses ---------------------------------------------------------------

    def _wrap_losses(self) -> None:
        import torch.nn.functional as F

        for name in ("cross_entropy", "nll_loss", "binary_cross_entropy", "binary_cross_entropy_with_logits",
                     "mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss"):
            original = getattr(F, name)
            self._patch(F, name, self._loss_wrapper(name, original))

    def _loss_wrapper(self, name, original):
        recorder = self

        @functools.wraps(original)
        def wrapper(input, target, *args, **kwargs):
            if not _compiling() and recorder._is_main() and len(recorder.data["losses"]) < MAX_RECORDS:
                try:
                    recorder._record_loss(name, input, target)
                except Exception:
                    pass
            result = original(input, target, *args, **kwargs)
            if recorder.diag is not None and not _compiling() and recorder._is_main():
                try:
                    recorder.diag.loss_called(name, input, target, result, kwargs)
                except Exception:
                    pass
            return result

        return wrapper

    def _record_loss(self, name, input, target) -> None:
        if not isinstance(input, torch.Tensor) or not input.is_floating_point() or input.numel() == 0:
            return
        record = {
            "fn": name,
            "step": self.total_steps + 1,
            "grad_enabled": bool(torch.is_grad_enabled()),
            "input_shape": list(input.shape),
            "input_grad_fn": _grad_fn_name(input),
            "input_producer": _producer(input),
            "line": self.script_line(),
        }
        with torch.no_grad():
            x = input.detach().float()
            record["input_min"] = _fmt(float(x.min()))
            record["input_max"] = _fmt(float(x.max()))
            if name in ("cross_entropy", "nll_loss"):
                if x.dim() == 1:
                    rows = x.reshape(1, -1)
                elif x.dim() == 2:
                    rows = x
                else:
                    rows = x.movedim(1, -1).reshape(-1, x.shape[1])
                sums = rows.sum(dim=1)
                record["classes"] = int(rows.shape[1])
                record["row_sum_min"] = _fmt(float(sums.min()))
                record["row_sum_max"] = _fmt(float(sums.max()))
                record["row_sum_deviation"] = _fmt(float((sums - 1).abs().max()))
                record["row_max_min"] = _fmt(float(rows.max(dim=1).values.min()))
                record["row_max_max"] = _fmt(float(rows.max(dim=1).values.max()))
            if isinstance(target, torch.Tensor):
                record["target_shape"] = list(target.shape)
                record["target_dtype"] = str(target.dtype).replace("torch.", "")
                if name in REGRESSION_LOSSES and target.numel() and target.is_floating_point():
                    t = target.detach().float()
                    record["target_min"] = _fmt(float(t.min()))
                    record["target_max"] = _fmt(float(t.max()))
                if name.startswith("binary") and target.dim() >= 2 and target.numel():
                    t = target.detach().float().reshape(-1, target.shape[-1])
                    binary = bool(((t == 0) | (t == 1)).all())
                    sums = t.sum(dim=1)
                    record["target_columns"] = int(t.shape[1])
                    record["target_binary"] = binary
                    record["target_row_sum_min"] = _fmt(float(sums.min()))
                    record["target_row_sum_max"] = _fmt(float(sums.max()))
                    record["target_rows"] = int(t.shape[0])
        self.data["losses"].append(record)

    # -- data loading ---------------------------------------------------------

    def _wrap_dataloader(self) -> None:
        from torch.utils.data import DataLoader

        original = DataLoader.__init__
        recorder = self

        @functools.wraps(original)
        def __init__(self, *args, **kwargs):
            record = None
            if recorder._is_main():
                record = {
                    "class": type(self).__name__,
                    "kwargs": sorted(kwargs),
                    "line": recorder.script_line(),
                    "error": None,
                }
                recorder._append("dataloaders", record)
            try:
                return original(self, *args, **kwargs)
            except TypeError as exc:
                if record is not None:
                    record["error"] = "TypeError: %s" % exc
                raise

        self._patch(DataLoader, "__init__", __init__)
        self._wrap_loader_iteration()

    def _wrap_loader_iteration(self) -> None:
        """Epoch ends (an exhausted loader) and epoch lengths, for the default stop."""
        from torch.utils.data import dataloader

        base = dataloader._BaseDataLoaderIter
        original_next, original_init = base.__next__, base.__init__
        recorder = self

        @functools.wraps(original_init)
        def __init__(self, loader, *args, **kwargs):
            original_init(self, loader, *args, **kwargs)
            self._lintorch_loader = id(loader)
            if recorder.diag is not None and recorder._is_main():
                try:
                    recorder.diag.loader_iter(loader)
                except Exception:
                    pass
            if recorder._is_main() and recorder.total_steps == 0 and recorder.data.get("epoch_batches") is None:
                try:
                    recorder.data["epoch_batches"] = len(loader)
                except TypeError:  # an IterableDataset without __len__
                    pass

        @functools.wraps(original_next)
        def __next__(self):
            try:
                return original_next(self)
            except StopIteration:
                if recorder._is_main() and recorder.total_steps >= 1:
                    if recorder._epoch_end_at is None:
                        recorder._epoch_end_at = recorder.total_steps
                    key = getattr(self, "_lintorch_loader", None)
                    if key is not None and not getattr(self, "_lintorch_ended", False):
                        self._lintorch_ended = True  # a second next() after the end is not another epoch
                        recorder._exhausted[key] = recorder._exhausted.get(key, 0) + 1
                raise

        self._patch(base, "__init__", __init__)
        self._patch(base, "__next__", __next__)

    # -- hooks ----------------------------------------------------------------

    def _in_backward_now(self) -> bool:
        if self._in_backward:
            return True
        task = getattr(torch._C, "_current_graph_task_id", None)
        try:
            return task is not None and task() != -1
        except Exception:
            return False

    def _wrap_hook_registration(self) -> None:
        recorder = self
        self._original_register_hook = torch.Tensor.register_hook
        for owner, name in (
            (torch.nn.Module, "register_forward_hook"),
            (torch.nn.Module, "register_full_backward_hook"),
            (torch.nn.Module, "register_backward_hook"),
            (torch.Tensor, "register_hook"),
        ):
            original = getattr(owner, name)
            self._patch(owner, name, recorder._hook_registrar(name, original))

    def _hook_registrar(self, kind, original):
        recorder = self

        @functools.wraps(original)
        def register(target, hook, *args, **kwargs):
            filename, line = recorder.user_site()
            if filename is None or not recorder._is_main() or not callable(hook):
                return original(target, hook, *args, **kwargs)
            record = {
                "kind": kind,
                "hook": getattr(hook, "__name__", type(hook).__name__),
                "target": type(target).__name__,
                "line": line if filename == recorder.script else None,
                "fired": 0,
                "fired_in_backward": 0,
                "first_args": None,
            }
            if len(recorder.data["hooks"]) >= MAX_RECORDS:
                return original(target, hook, *args, **kwargs)
            recorder.data["hooks"].append(record)

            @functools.wraps(hook)
            def wrapped(*hook_args, **hook_kwargs):
                if _compiling():
                    return hook(*hook_args, **hook_kwargs)
                record["fired"] += 1
                if recorder._in_backward_now():
                    record["fired_in_backward"] += 1
                if record["first_args"] is None:
                    try:
                        record["first_args"] = [_shape(a) for a in hook_args if not isinstance(a, torch.nn.Module)]
                    except Exception:
                        record["first_args"] = []
                return hook(*hook_args, **hook_kwargs)

            return original(target, wrapped, *args, **kwargs)

        return register

    # -- checkpoints ----------------------------------------------------------

    def _wrap_checkpoints(self) -> None:
        """torch.save writes by file name in C++: map the name through the
        overlay (the sandbox's own wrappers cover Python-level writes)."""
        overlay = self.overlay
        recorder = self
        original_save = torch.save
        original_load = torch.load

        def is_path(f) -> bool:
            return isinstance(f, (str, bytes, os.PathLike))

        @functools.wraps(original_save)
        def save(obj, f, *args, **kwargs):
            if is_path(f):
                virtual = overlay.virtual(f)
                if overlay.managed(virtual):
                    target = overlay.for_write(virtual, keep_content=False)
                    overlay.record("write", virtual, "redirected", "torch.save", target)
                    recorder._append("saves", {"path": overlay.display(virtual), "line": recorder.script_line()})
                    f = target
            return original_save(obj, f, *args, **kwargs)

        @functools.wraps(original_load)
        def load(f, *args, **kwargs):
            if is_path(f):
                virtual = overlay.virtual(f)
                if overlay.managed(virtual):
                    f = overlay.for_read(virtual)
            return original_load(f, *args, **kwargs)

        self._patch(torch, "save", save)
        self._patch(torch, "load", load)

    # -- the end --------------------------------------------------------------

    def finish(self) -> Dict[str, Any]:
        """Measurements that need the final state of the parameters."""
        params = self.all_trainable()
        unchanged, changed, rows = [], 0, []
        owners = {}
        for root in self.roots:
            for module in root.modules():
                for p in module.parameters(recurse=False):
                    owners.setdefault(id(p), type(module).__name__)
        with torch.no_grad():
            for p in params:
                initial = self._initial.get(id(p))
                if initial is not None:
                    if torch.equal(initial, p.detach()):
                        unchanged.append(self.param_name(p))
                    else:
                        changed += 1
                if p.dim() >= 2 and p.shape[0] >= 2:
                    state = self._rows_identical(p)
                    state["param"] = self.param_name(p)
                    state["module"] = owners.get(id(p))
                    state["identical_at_start"] = self._initial_rows.get(id(p), {}).get("identical")
                    rows.append(state)
        self.data["params_compared"] = len(self._initial)
        self.data["params_unchanged"] = unchanged
        self.data["params_changed"] = changed
        self.data["weight_rows"] = rows[:64]
        self.data["total_steps"] = self.total_steps
        self.data["max_steps"] = self.max_steps
        self.data["optimizers"] = [type(o).__name__ for o in self.optimizers]
        if self.diag is not None:
            self.data["diagnostics"] = self.diag.finish()
        return self.data

    def uninstall(self) -> None:
        for handle in self._handles:
            handle.remove()
        for owner, name, original in reversed(self._originals):
            setattr(owner, name, original)

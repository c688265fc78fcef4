import libcst as cst

from lintorch import edits
from lintorch import torchapi as api

from lintorch.rule import Example, Fix, Rule, Severity


class DirectForwardCall(Rule):
    """
    **What it does.** Flags `model.forward(x)` where `model` is visibly an
    `nn.Module` instance (a `torch.nn` layer or container, an instance of a
    local `nn.Module` subclass, a `torchvision`/`timm` model), called from
    training or inference code: the script's top level, its functions, or
    methods of classes that are not modules themselves (a `Trainer`).

    Calls made inside an `nn.Module` subclass (a `LightningModule` too) are
    not flagged:
    `super().forward(x)` is the normal way to extend a parent's forward, and
    `self.forward(...)` / `self.block.forward(...)` inside a module are a
    deliberate choice of the module's author (library code uses them to
    bypass its own hooks or to share code between `forward` and `predict`).
    `DistributedDataParallel`/`DataParallel` wrappers are not flagged
    either: their `forward` is where their work happens, and hooks belong on
    the wrapped module. Objects whose class is not a module (`torch.autograd.Function`, a
    pipeline class with a `forward` method) are never flagged.

    **Why is this bad?** `model(x)` goes through `nn.Module.__call__`, which
    runs the forward pre-hooks and hooks, backward hooks, and everything
    built on them: `weight_norm`/`spectral_norm` recomputing the weight,
    pruning masks, quantisation observers, activation-capture hooks.
    `model.forward(x)` skips all of it silently.

    **Symptom.** Hooks never fire (captured activations or gradients stay
    empty), pruned or weight-normalised layers use stale weights, so the
    model does not learn as expected or its outputs differ from `model(x)`.

    **Severity.** `warning` when something that runs through `__call__` is
    installed on that very module (forward or backward hooks,
    `weight_norm`/`spectral_norm`, parametrizations, pruning): then the
    skipped machinery changes the result. Hooks on its submodules still
    fire (its `forward` calls them through `__call__`), so they do not
    count. Otherwise `info` (off by default): `model.forward(x)` computes
    the same values, and the call is only fragile.

    **Fix.** Call the module: `model(x)`.

    **Fix safety.** `--fix` rewrites `model.forward(x)` to `model(x)` (a
    safe fix: the call now runs the module's hooks, as intended). Calls
    inside a module's own methods are not flagged, so not rewritten.
    """

    code = "LT602"
    name = "direct-forward-call"
    severity = Severity.INFO
    severity_cases = "warning when that module has hooks or weight/spectral norm"
    summary = "module.forward(x) called directly instead of module(x), skipping hooks"
    symptom = "hooks never fire; pruning/weight-norm not applied"
    triggers = (".forward(",)

    bad = [
        Example(
            """
            import torch.nn as nn

            model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
            model[0].register_forward_hook(lambda module, inputs, output: captured.append(output))
            prediction = model.forward(x)  # the hook never fires
            """
        ),
    ]
    good = [
        Example(
            """
            import torch.nn as nn

            class Wide(nn.Linear):
                def forward(self, x):
                    return super().forward(x) * 2

            model = Wide(4, 1)
            prediction = model(x)
            """
        ),
    ]

    def check(self, analysis):
        index = analysis.index
        for call in index.method_calls("forward"):
            receiver = call.receiver
            if receiver is None or isinstance(receiver, cst.Call):
                continue  # super().forward(x), Net().forward(x)
            klass = analysis.values.enclosing_class(call.scope)
            if klass is not None and analysis.models.is_module_class(klass):
                continue  # inside a module: the author's choice (see the docstring)
            if isinstance(receiver, cst.Name) and receiver.value == "self":
                continue
            ctor = analysis.models.module_instance(receiver, call.scope, call.order)
            if ctor is None or _is_parallel_wrapper(analysis, receiver, call):
                continue
            target = index.module.code_for_node(receiver)
            hooks = _call_machinery(analysis, call)
            if hooks is not None:
                message = f"{target}.forward(...) skips the hooks or parametrisation of {target} (line {{line0}})"
                explanation = (
                    "Calling forward directly bypasses nn.Module.__call__, the only place where hooks and "
                    "weight parametrisations run: they never fire and such layers use stale weights (the "
                    f"model may not learn as expected). Call the module instead: {target}(...)."
                )
            else:
                message = f"{target}.forward(...) bypasses nn.Module.__call__ and the hooks it runs"
                explanation = (
                    "No hook is visible here, so the result is the same today, but hooks, weight_norm or "
                    f"pruning added later would silently not run. Call the module instead: {target}(...)."
                )
            yield self.report(
                call.node,
                message,
                explanation=explanation,
                severity=Severity.WARNING if hooks is not None else Severity.INFO,
                related=(hooks,) if hooks is not None else (),
                fix=Fix(call.node, edits.call_without_method, safe=True, description=f"call {target}(...)"),
            )


def _is_parallel_wrapper(analysis, receiver, call) -> bool:
    """Any definition of the receiver is a DDP/DataParallel wrapper."""
    for value in analysis.values.definitions(receiver, call.scope, call.order):
        qualname, _ = analysis.values.constructor(analysis.values.strip_value_preserving(value))
        if qualname in api.DATA_PARALLEL:
            return True
    return False


#: Calls that install machinery run by ``nn.Module.__call__`` (or by the
#: parametrised weight it recomputes there): skipping ``__call__`` then
#: changes the result.
_CALL_MACHINERY_METHODS = frozenset(
    {
        "register_forward_hook", "register_forward_pre_hook", "register_full_backward_hook",
        "register_full_backward_pre_hook", "register_backward_hook",
    }
)
_CALL_MACHINERY_PREFIXES = (
    "torch.nn.utils.weight_norm", "torch.nn.utils.spectral_norm", "torch.nn.utils.parametrizations.",
    "torch.nn.utils.parametrize.", "torch.nn.utils.prune.", "torch.quantization.prepare",
    "torch.ao.quantization.prepare", "torch.nn.modules.module.register_module_",
    "torch.nn.register_module_",
)


def _call_machinery(analysis, forward):
    """The first call that installs hooks, weight/spectral norm, a
    parametrization or pruning on the module whose ``forward`` is called
    directly; None if none is visible."""
    receiver = forward.receiver
    module = analysis.models.module_instance(receiver, forward.scope, forward.order)
    for call in analysis.index.calls:
        if call.method in _CALL_MACHINERY_METHODS:
            target = call.receiver
        elif call.qualname is not None and call.qualname.startswith(_CALL_MACHINERY_PREFIXES):
            target = call.arg(0, "module")
        else:
            continue
        if target is None:
            continue
        if analysis.values.same_object(target, call, receiver, forward):
            return call.node
        # ``layer = weight_norm(nn.Linear(...))``: the wrapped module itself
        inner = analysis.models.module_instance(target, call.scope, call.order)
        if module is not None and inner is not None and inner.expr is module.expr:
            return call.node
    return None

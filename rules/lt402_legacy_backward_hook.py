import libcst as cst

from lintorch import torchapi as api
from lintorch.rule import Example, Fix, Rule, Severity


class LegacyBackwardHook(Rule):
    """
    **What it does.** Flags `module.register_backward_hook(hook)` and the
    global `torch.nn.modules.module.register_module_backward_hook(hook)`.

    **Why is this bad?** Both are deprecated. For a module whose forward
    runs several autograd operations, the hook fires on the last operation
    only: `grad_input` holds the gradients of that operation's inputs, not
    of the module's inputs, and may even be missing entries. Gradient norms
    or saliency maps computed from it are wrong, which sends the search for
    "why is my model not learning" in the wrong direction.

    **Symptom.** Gradient statistics that make no sense (wrong shapes,
    missing entries), misleading diagnosis of a model not learning.

    **Severity.** `warning`; `info` (off by default) when the hook is
    registered on a module whose forward is a single operation (`nn.ReLU`,
    pooling, dropout, a convolution), as guided backpropagation does: there
    the legacy hook sees the right gradients and only the deprecation
    remains.

    **Fix.** Use `module.register_full_backward_hook(hook)` (same
    signature, correct gradients) or `tensor.register_hook(...)` on the
    tensors you care about.

    **Fix safety.** `--unsafe-fixes` renames the call to
    `register_full_backward_hook` (`register_module_full_backward_hook`).
    Unsafe: the hook then receives the module's true input/output
    gradients, so a hook written around the old (last-operation) values
    may behave differently, and PyTorch raises an error when such a module
    modifies its input or output in place (`nn.ReLU(inplace=True)`):
    review the hook.
    """

    code = "LT402"
    name = "legacy-backward-hook"
    severity = Severity.WARNING
    severity_cases = "info on single-operation modules such as nn.ReLU"
    summary = "deprecated register_backward_hook gives wrong gradients for multi-op modules"
    symptom = "misleading gradient statistics while debugging a model not learning"
    triggers = ("register_backward_hook", "register_module_backward_hook")

    bad = [
        Example(
            """
            def print_grad_norm(module, grad_input, grad_output):
                print(module.__class__.__name__, grad_output[0].norm())

            for layer in model.children():
                layer.register_backward_hook(print_grad_norm)
            """
        ),
    ]
    good = [
        Example(
            """
            def print_grad_norm(module, grad_input, grad_output):
                print(module.__class__.__name__, grad_output[0].norm())

            for layer in model.children():
                layer.register_full_backward_hook(print_grad_norm)
            """
        ),
        Example(
            """
            features = model.features(x)
            features.register_hook(lambda grad: saved.append(grad))
            """
        ),
    ]

    def check(self, analysis):
        index = analysis.index
        for call in index.calls:
            if call.method == "register_backward_hook":
                receiver = call.receiver
                if isinstance(receiver, cst.Call):
                    continue  # super().register_backward_hook(...) inside an override
                if isinstance(receiver, cst.Name) and receiver.value == "self":
                    function = index.enclosing_function(call.scope)
                    if function is not None and function.klass is not None:
                        if analysis.values.method_of(function.klass, "register_backward_hook") is not None:
                            continue  # the class defines its own method of that name
                single_op = _single_operation_module(analysis, call)
                if single_op is not None:
                    yield self.report(
                        call.node.func.attr,
                        f"register_backward_hook is deprecated (right gradients here: {single_op} is one operation)",
                        explanation="The legacy hook sees the gradients of a module's last operation only, "
                        "which is wrong for modules of several operations but right here. Use "
                        "register_full_backward_hook (same signature).",
                        severity=Severity.INFO,
                        fix=_rename(call.node.func.attr, "register_full_backward_hook"),
                    )
                    continue
                yield self.report(
                    call.node.func.attr,
                    "register_backward_hook is deprecated and wrong for modules of several operations",
                    explanation="For a module whose forward runs several operations the hook sees the "
                    "gradients of the last operation only, so grad_input is wrong or incomplete and the "
                    "gradient statistics mislead (a model not learning looks like a different problem). "
                    "Use register_full_backward_hook (same signature) or tensor.register_hook.",
                    fix=_rename(call.node.func.attr, "register_full_backward_hook"),
                )
            elif call.qualname in ("torch.nn.register_module_backward_hook", "torch.nn.modules.module.register_module_backward_hook"):
                yield self.report(
                    call.node.func,
                    "register_module_backward_hook is deprecated and wrong for modules of several operations",
                    explanation="It gives the gradients of the last operation of each module only (wrong "
                    "grad_input for multi-op modules), so gradient statistics mislead. Use "
                    "register_module_full_backward_hook.",
                    fix=_rename(call.node.func.attr, "register_module_full_backward_hook")
                    if isinstance(call.node.func, cst.Attribute)
                    else None,
                )


def _rename(name: cst.Name, new: str) -> Fix:
    return Fix(name, name.with_changes(value=new), safe=False, description=f"use {new}")


def _single_operation_module(analysis, call):
    """``nn.ReLU`` (one autograd operation) when the hooked module visibly
    is one: built as such, narrowed by ``if isinstance(m, nn.ReLU):``, or a
    loop variable over a container of such layers only."""
    receiver = call.receiver
    ctor = analysis.models.module_instance(receiver, call.scope, call.order)
    if ctor is not None:
        qualname, _ = analysis.values.constructor(ctor)
        return _short(qualname) if qualname in api.SINGLE_OP_MODULES else None
    if isinstance(receiver, cst.Name):
        layers = analysis.models.iterated_layers(receiver, call.scope, call.order)
        if layers:
            kinds = {analysis.values.constructor(layer)[0] for layer in layers}
            if kinds <= api.SINGLE_OP_MODULES:
                return " / ".join(sorted(_short(k) for k in kinds))
        kinds = analysis.values.guarded_types(call, receiver.value, api.SINGLE_OP_MODULES)
        if kinds and kinds <= api.SINGLE_OP_MODULES:
            return " / ".join(sorted(_short(k) for k in kinds))
    return None


def _short(qualname: str) -> str:
    return "nn." + qualname.rsplit(".", 1)[-1]

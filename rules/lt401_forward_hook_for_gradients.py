from typing import List, Optional, Sequence

import libcst as cst

from lintorch.index import CallSite, FunctionInfo, iter_nodes
from lintorch.rule import Example, Rule, Severity

# Calls that show a forward hook deliberately reaches gradients the right way
# (Grad-CAM style: register a tensor hook on the output, or retain its grad).
_GRADIENT_AWARE_METHODS = frozenset({"register_hook", "retain_grad", "register_full_backward_hook"})


class ForwardHookForGradients(Rule):
    """
    **What it does.** Flags `module.register_forward_hook(hook)` where the hook
    treats its arguments as gradients: parameters named like `grad_in` /
    `grad_out`, reading `.grad` of them, or reporting them as "gradient"
    values.

    **Why is this bad?** A forward hook runs during the forward pass and
    receives `(module, inputs, output)`: activations, not gradients. Norms
    "of gradients" computed there are activation norms, so a gradient-flow
    check built this way reports healthy numbers while gradients are in fact
    zero (or the other way round).

    **Symptom.** A wrong diagnosis of "identical predictions" / "model not
    learning": the gradient check looks fine while the real problem is
    elsewhere.

    **Fix.** Use `module.register_full_backward_hook(hook)` (signature
    `hook(module, grad_input, grad_output)`), or `tensor.register_hook` on a
    parameter or output. Forward hooks that capture activations, or that
    call `output.register_hook(...)` / `retain_grad()` (Grad-CAM), are fine.
    """

    code = "LT401"
    name = "forward-hook-for-gradients"
    severity = Severity.ERROR
    summary = "forward hook written as if it received gradients (it receives inputs and outputs)"
    symptom = "misleading gradient diagnostics while the model is not learning"
    triggers = ("register_forward_hook",)

    bad = [
        Example(
            """
            def hook_fn(module, grad_in, grad_out):
                for g in grad_in:
                    print(f"Gradient norm: {g.norm().item()}")

            layer.register_forward_hook(hook_fn)
            """
        ),
        Example(
            """
            def log_grad(module, inputs, output):
                print("grad", output.grad)

            model.fc.register_forward_hook(log_grad)
            """
        ),
    ]
    good = [
        Example(
            """
            def grad_hook(module, grad_input, grad_output):
                print(grad_output[0].norm())

            layer.register_full_backward_hook(grad_hook)
            """
        ),
        Example(
            """
            gradients = []

            def save_gradients(module, inputs, output):
                output.register_hook(lambda grad: gradients.append(grad))

            model.layer4.register_forward_hook(save_gradients)
            """
        ),
    ]

    def check(self, index):
        for call in index.method_calls("register_forward_hook"):
            if call.expects_exception:
                continue
            hook = call.arg(0, "hook")
            if hook is None:
                continue
            signature = _hook_signature(index, call, hook)
            if signature is None:
                continue
            name, params, body = signature
            reason = _gradient_reading(params, body)
            if reason is None:
                continue
            yield self.report(
                call.node,
                f"forward hook '{name}' {reason}, but a forward hook receives the layer's inputs and "
                "output (activations), not gradients: any 'gradient' it reports is wrong, which "
                "misleads the search for why the model is not learning. Use "
                "register_full_backward_hook(hook(module, grad_input, grad_output)) or "
                "tensor.register_hook for gradients.",
            )


def _hook_signature(index, call: CallSite, hook: cst.BaseExpression):
    """(name, non-module parameter names, body) of the hook function."""
    if isinstance(hook, cst.Lambda):
        params = [p.name.value for p in hook.params.params]
        return "<lambda>", params[1:], hook.body
    function: Optional[FunctionInfo] = None
    if isinstance(hook, cst.Name):
        function = index.function_named(hook.value, call.scope, call.order)
    elif isinstance(hook, cst.Attribute) and isinstance(hook.value, cst.Name) and hook.value.value == "self":
        owner = index.enclosing_function(call.scope)
        if owner is not None and owner.klass is not None:
            function = index.flow.method_of(owner.klass, hook.attr.value)
    if function is None:
        return None
    params = [name for name, _ in function.positional_params()]
    if not function.is_method:
        params = params[1:]  # the module argument
    return function.name, params, function.node.body


def _gradient_reading(params: Sequence[str], body: cst.CSTNode) -> Optional[str]:
    nodes = list(iter_nodes(body))
    for node in nodes:
        if isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute):
            if node.func.attr.value in _GRADIENT_AWARE_METHODS:
                return None
    grad_named = [p for p in params if "grad" in p.lower()]
    if grad_named:
        return f"names its arguments {', '.join(grad_named)}"
    param_set = set(params)
    for node in nodes:
        if (
            isinstance(node, cst.Attribute)
            and node.attr.value == "grad"
            and isinstance(node.value, cst.Name)
            and node.value.value in param_set
        ):
            return f"reads {node.value.value}.grad"
    used = {n.value for n in nodes if isinstance(n, cst.Name)} & param_set
    if used and any(_mentions_gradient(n) for n in nodes):
        return "reports its arguments as gradients"
    return None


def _mentions_gradient(node: cst.CSTNode) -> bool:
    if isinstance(node, cst.SimpleString):
        return "grad" in node.value.lower()
    if isinstance(node, cst.FormattedStringText):
        return "grad" in node.value.lower()
    return False


__all__: List[str] = ["ForwardHookForGradients"]

from typing import List, Optional, Sequence, Set

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
    `hook(module, grad_input, grad_output)`, where `grad_input` and
    `grad_output` are tuples of tensors: read `grad_output[0]`, and expect
    `None` entries), or `tensor.register_hook` on a parameter or output. Forward hooks that capture activations, or that
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

    def check(self, analysis):
        index = analysis.index
        for call in index.method_calls("register_forward_hook"):
            if call.expects_exception:
                continue
            hook = call.arg(0, "hook")
            if hook is None:
                continue
            signature = _hook_signature(analysis, call, hook)
            if signature is None:
                continue
            name, params, body = signature
            reason = _gradient_reading(params, body)
            if reason is None:
                continue
            yield self.report(
                call.node,
                f"forward hook '{name}' treats its arguments as gradients, but they are activations",
                explanation=f"The hook {reason}, but a forward hook receives the layer's inputs and "
                "output (activations), not gradients: any 'gradient' it reports is wrong, which misleads "
                "the search for why the model is not learning. Use register_full_backward_hook: it calls "
                "hook(module, grad_input, grad_output) with tuples of tensors, so read grad_output[0] "
                "(an entry may be None). Or use tensor.register_hook for gradients.",
            )


def _hook_signature(analysis, call: CallSite, hook: cst.BaseExpression):
    """(name, non-module parameter names, body) of the hook function."""
    index = analysis.index
    if isinstance(hook, cst.Lambda):
        params = [p.name.value for p in hook.params.params]
        return "<lambda>", params[1:], hook.body
    function: Optional[FunctionInfo] = None
    if isinstance(hook, cst.Name):
        function = index.function_named(hook.value, call.scope, call.order)
    elif isinstance(hook, cst.Attribute) and isinstance(hook.value, cst.Name) and hook.value.value == "self":
        owner = index.enclosing_function(call.scope)
        if owner is not None and owner.klass is not None:
            function = analysis.values.method_of(owner.klass, hook.attr.value)
    if function is None:
        return None
    params = [name for name, _ in function.positional_params()]
    if not function.is_method:
        params = params[1:]  # the module argument
    return function.name, params, function.node.body


def _gradient_reading(params: Sequence[str], body: cst.CSTNode) -> Optional[str]:
    """Why the hook reads its arguments as gradients, or None.

    Parameter names alone are not enough: hooks written as
    ``hook(module, grad_in, grad_out)`` that store ``grad_out`` as the
    layer's output are misnamed but correct. The body must use them as
    gradients: ``.grad`` of an argument, ``.norm()`` of a gradient-named
    argument, or an argument printed or stored under a "grad" label.
    """
    nodes = list(iter_nodes(body))
    for node in nodes:
        if isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute):
            if node.func.attr.value in _GRADIENT_AWARE_METHODS:
                return None
    param_set = set(params)
    grad_named = [p for p in params if "grad" in p.lower()]
    named = f"names its arguments {', '.join(grad_named)} and " if grad_named else ""
    for node in nodes:
        if (
            isinstance(node, cst.Attribute)
            and node.attr.value == "grad"
            and isinstance(node.value, cst.Name)
            and node.value.value in param_set
        ):
            return f"{named}reads {node.value.value}.grad"
    used = {n.value for n in nodes if isinstance(n, cst.Name)} & param_set
    if not used:
        return None
    for node in nodes:
        if _norm_of_gradient_named(node, grad_named, nodes):
            return f"{named}computes gradient norms from them"
    if any(_mentions_gradient(n) for n in nodes):
        return f"{named}reports them as gradients"
    for node in nodes:
        if _stores_as_gradient(node, param_set):
            return f"{named}stores them as gradients"
    return None


def _norm_of_gradient_named(node: cst.CSTNode, grad_named: Sequence[str], nodes) -> bool:
    """``grad_out.norm()`` / ``g.norm()`` for ``g`` iterating a gradient-named argument."""
    if not (isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute) and node.func.attr.value == "norm"):
        return False
    names = {n.value for n in iter_nodes(node.func.value) if isinstance(n, cst.Name)}
    if names & set(grad_named):
        return True
    for loop in nodes:
        if isinstance(loop, cst.For) and isinstance(loop.target, cst.Name) and loop.target.value in names:
            iterated = {n.value for n in iter_nodes(loop.iter) if isinstance(n, cst.Name)}
            if iterated & set(grad_named):
                return True
    return False


def _stores_as_gradient(node: cst.CSTNode, params: Set[str]) -> bool:
    """``self.gradients = output`` / ``grads[name] = grad_out[0]``."""
    if not isinstance(node, cst.Assign):
        return False
    value_names = {n.value for n in iter_nodes(node.value) if isinstance(n, cst.Name)}
    if not value_names & params:
        return False
    for target in node.targets:
        label = _target_label(target.target)
        if label and "grad" in label.lower():
            return True
    return False


def _target_label(target: cst.CSTNode) -> Optional[str]:
    if isinstance(target, cst.Name):
        return target.value
    if isinstance(target, cst.Attribute):
        return target.attr.value
    if isinstance(target, cst.Subscript):
        return _target_label(target.value)
    return None


def _mentions_gradient(node: cst.CSTNode) -> bool:
    if isinstance(node, cst.SimpleString):
        return "grad" in node.value.lower()
    if isinstance(node, cst.FormattedStringText):
        return "grad" in node.value.lower()
    return False


__all__: List[str] = ["ForwardHookForGradients"]

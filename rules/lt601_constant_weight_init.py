import re
from typing import Optional, Tuple

import libcst as cst

from lintorch import torchapi as api
from lintorch.index import dotted_name, int_value
from lintorch.rule import Example, Rule, Severity

#: Name parts that mark an output or residual projection, where zero or
#: constant initialisation is a deliberate, well-known technique.
_FINAL_WORDS = frozenset(
    {
        "last", "out", "output", "outputs", "head", "proj", "projection", "final", "classifier",
        "logits", "logit", "cls", "pred", "predictor", "prediction", "readout", "zero", "gate", "adaln",
        "modulation", "residual", "skip", "fc_out", "to_out",
    }
)
_LAYER_NAMES = {q: q.rsplit(".", 1)[-1] for q in api.WEIGHT_LAYERS}


class ConstantWeightInit(Rule):
    """
    **What it does.** Flags constant initialisation (`nn.init.constant_`,
    `zeros_`, `ones_`, `.fill_(c)`, `.zero_()`, also on `.weight.data`) of
    the weights of *hidden* layers:

    * a loop over `model.parameters()` / `model.named_parameters()` with no
      bias/norm filter, on a model with at least two linear/conv layers;
    * `init_fn(m)` guarded by `isinstance(m, nn.Linear)` (or a convolution)
      and applied with `model.apply(init_fn)` or a loop over
      `model.modules()`, when the model has at least two such layers;
    * `self.fc1.weight` (or `model.fc1.weight`, `model[0].weight`) when
      `forward` visibly feeds that layer's output into another layer.

    Not flagged: biases, norm layers (`BatchNorm`/`LayerNorm`/`GroupNorm`
    weight 1, bias 0), the final layer and residual projections (layers
    whose output `forward` returns or adds to a residual, layers named like
    `head`, `out`, `proj`, `last`, `final`, `classifier`, `[-1]` of a
    `Sequential`: zero-init there is a known technique), loops with a filter
    (`if "bias" in name`, `if p.dim() > 1`), parameters that are
    overwritten afterwards (`load_state_dict`, `copy_`, `p.data += ...`:
    model averaging, EMA), and whole-model constant loops in files that
    never train (no optimizer, no `backward()`): tests that compare two
    implementations or probe receptive fields set constant weights on
    purpose.

    **Why is this bad?** When every weight of a hidden layer has the same
    value, every unit of the layer computes the same output and receives the
    same gradient, so they stay identical forever: the layer behaves like a
    single unit ("symmetry is never broken"). With zeros, the gradients of
    the layers below are zero as well and they never train.

    **Symptom.** Identical outputs (or identical regression outputs) for
    every input; the loss converges to a poor value and stops changing; the
    model does not learn.

    **Fix.** Keep PyTorch's default random initialisation or use a random
    scheme (`nn.init.kaiming_uniform_`, `xavier_uniform_`,
    `trunc_normal_`). Constant values are fine for biases, normalisation
    layers and a deliberately zero-initialised output/residual projection.
    """

    code = "LT601"
    name = "constant-weight-init"
    severity = Severity.ERROR
    summary = "hidden-layer weights initialised to a constant: symmetry is never broken"
    symptom = "identical outputs for every input; model not learning"
    # "zeros_(" rather than "zeros_": "zeros_like" and "zero_grad" are everywhere.
    triggers = ("constant_(", "zeros_(", "ones_(", "fill_(", "zero_()", "init.constant", "init.zeros", "init.ones")

    bad = [
        Example(
            """
            import torch
            import torch.nn as nn

            model = nn.Sequential(nn.Linear(1, 10), nn.ReLU(), nn.Linear(10, 1))
            for p in model.parameters():
                nn.init.constant_(p, 0.01)
            optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
            """
        ),
        Example(
            """
            import torch
            import torch.nn as nn

            class Net(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.fc1 = nn.Linear(784, 128)
                    self.fc2 = nn.Linear(128, 10)

                def forward(self, x):
                    return self.fc2(self.fc1(x).relu())

            def init_weights(m):
                if isinstance(m, nn.Linear):
                    nn.init.zeros_(m.weight)

            model = Net()
            model.apply(init_weights)
            optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
            """
        ),
    ]
    good = [
        Example(
            """
            import torch.nn as nn

            def init_weights(m):
                if isinstance(m, nn.Linear):
                    nn.init.xavier_uniform_(m.weight)
                    nn.init.zeros_(m.bias)
                elif isinstance(m, nn.BatchNorm2d):
                    nn.init.constant_(m.weight, 1)
                    nn.init.constant_(m.bias, 0)
            """
        ),
        Example(
            """
            import torch.nn as nn

            class Block(nn.Module):
                def __init__(self, dim):
                    super().__init__()
                    self.fc1 = nn.Linear(dim, 4 * dim)
                    self.fc2 = nn.Linear(4 * dim, dim)
                    nn.init.zeros_(self.fc2.weight)  # residual branch starts as identity

                def forward(self, x):
                    return x + self.fc2(self.fc1(x).relu())
            """
        ),
    ]

    def check(self, analysis):
        index = analysis.index
        for call in index.calls:
            found = _constant_init(call)
            if found is None:
                continue
            tensor, how = found
            tensor = _strip_data(tensor)
            if isinstance(tensor, cst.Attribute) and tensor.attr.value == "weight":
                reason = self._hidden_layer_weight(analysis, call, tensor.value)
            elif isinstance(tensor, cst.Name):
                if not _trains(index) or _copies_parameters(index):
                    continue  # a test comparing implementations, model averaging
                reason = self._parameter_loop(analysis, call, tensor)
            else:
                continue
            if reason is None:
                continue
            what, related = reason
            yield self.report(
                call.node,
                f"{how} sets {what} to a constant: every unit of a hidden layer then computes "
                "the same output and gets the same gradient, so symmetry is never broken and the "
                "model produces identical outputs for every input (loss stops changing, model not "
                "learning). Keep the default random init or use nn.init.kaiming_uniform_/xavier_uniform_; "
                "constants are only for biases, norm layers and a zero-initialised final/residual projection.",
                related=related,
            )

    # -- <layer>.weight ----------------------------------------------------

    def _hidden_layer_weight(self, analysis, call, layer):
        if _final_by_name(layer):
            return None
        if isinstance(layer, cst.Subscript):
            return _sequential_element(analysis, call, layer)
        if isinstance(layer, cst.Attribute):
            return _class_attribute_layer(analysis, call, layer)
        if isinstance(layer, cst.Name):
            return _guarded_module_variable(analysis, call, layer)
        return None

    # -- for p in model.parameters() -----------------------------------------

    def _parameter_loop(self, analysis, call, name: cst.Name):
        index = analysis.index
        bindings = index.lookup(name.value, call.scope, call.order)
        if len(bindings) != 1 or bindings[0].kind != "for":
            return None
        binding = bindings[0]
        iterable = binding.value
        if not (
            isinstance(iterable, cst.Call)
            and isinstance(iterable.func, cst.Attribute)
            and not any(a.keyword is not None and a.keyword.value != "recurse" for a in iterable.args)
        ):
            return None
        method = iterable.func.attr.value
        if not (
            (method == "parameters" and binding.unpack == ())
            or (method == "named_parameters" and binding.unpack == (1,))
        ):
            return None
        loop = binding.node
        blocks = analysis.values.enclosing_blocks(call)
        inside = [b for b in _after(blocks, loop)]
        for node, branch in inside:
            if isinstance(node, cst.If) and not (branch == "body" and _weight_name_filter(node.test)):
                return None  # a filter we do not read: bias/norm/dim checks
        if _written_again(index, call, name.value, loop):
            return None
        owner = iterable.func.value
        if _final_by_name(owner) or _loaded_later(index, owner):
            return None  # zero_module(self.out), for p in self.head.parameters()
        count, label = _model_weight_layers(analysis, owner, call.scope, call.order, api.WEIGHT_LAYERS)
        if count < 2:
            return None
        return f"every parameter of {label} ({count} weight layers, hidden ones included)", ()


def _constant_init(call) -> Optional[Tuple[cst.BaseExpression, str]]:
    qualname = call.qualname
    if qualname in api.NN_INIT_CONSTANT:
        tensor = call.arg(0, "tensor")
        if tensor is None:
            return None
        short = "nn.init." + qualname.rsplit(".", 1)[-1]
        return tensor, f"{short}(...)"
    if qualname is None and call.receiver is not None:
        if call.method == "fill_" and len(call.node.args) == 1:
            return call.receiver, ".fill_(...)"
        if call.method == "zero_" and not call.node.args:
            return call.receiver, ".zero_()"
    return None


def _strip_data(node: cst.BaseExpression) -> cst.BaseExpression:
    for _ in range(4):
        if isinstance(node, cst.Attribute) and node.attr.value == "data":
            node = node.value
        elif (
            isinstance(node, cst.Call)
            and isinstance(node.func, cst.Attribute)
            and node.func.attr.value == "detach"
            and not node.args
        ):
            node = node.func.value
        else:
            break
    return node


def _words(name: str):
    lowered = name.lower()
    return {lowered} | set(filter(None, re.split(r"[_\d]+", lowered)))


def _final_by_name(layer: cst.BaseExpression) -> bool:
    node = layer
    while True:
        if isinstance(node, cst.Subscript):
            index = _subscript_int(node)
            if index is not None and index < 0:
                return True  # model[-1], self.adaLN_modulation[-1]
            node = node.value
            continue
        if isinstance(node, cst.Attribute):
            if _words(node.attr.value) & _FINAL_WORDS:
                return True
            return False
        if isinstance(node, cst.Name):
            return bool(_words(node.value) & _FINAL_WORDS)
        return False


def _subscript_int(node: cst.Subscript) -> Optional[int]:
    if len(node.slice) != 1 or not isinstance(node.slice[0].slice, cst.Index):
        return None
    return int_value(node.slice[0].slice.value)


def _sequential_element(analysis, call, layer: cst.Subscript):
    position = _subscript_int(layer)
    if position is None or position < 0:
        return None
    ctor = analysis.models.module_instance(layer.value, call.scope, call.order)
    if ctor is None or analysis.values.constructor(ctor)[0] not in api.SEQUENTIAL:
        return None
    layers = analysis.models.layers(ctor)
    if layers is None or position >= len(layers) or any(layer.conditional for layer in layers):
        return None
    layers = [layer.value for layer in layers]
    qualname, _ = analysis.values.constructor(layers[position])
    if qualname not in api.WEIGHT_LAYERS:
        return None
    if not any(analysis.models.weight_layer_count(later) for later in layers[position + 1:]):
        return None  # the last weight layer: the output layer
    name = dotted_name(layer.value) or "the model"
    return f"the weights of {name}[{position}] (an nn.{_LAYER_NAMES[qualname]} followed by more layers)", (ctor.expr,)


def _class_attribute_layer(analysis, call, layer: cst.Attribute):
    owner, attr = layer.value, layer.attr.value
    if isinstance(owner, cst.Name) and owner.value == "self":
        klass = analysis.values.enclosing_class(call.scope)
    else:
        ctor = analysis.models.module_instance(owner, call.scope, call.order)
        klass = analysis.values.constructor(ctor)[1] if ctor is not None else None
    if klass is None or not analysis.models.is_module_class(klass):
        return None
    assigns = [a for a in analysis.values.self_attr_assigns(klass, attr) if a.value is not None]
    if len(assigns) != 1:
        return None
    values = analysis.values.definitions(assigns[0].value, assigns[0].scope, assigns[0].order)
    if len(values) != 1:
        return None
    qualname, _ = analysis.values.constructor(analysis.values.strip_value_preserving(values[0]))
    if qualname not in api.WEIGHT_LAYERS:
        return None
    if not _called_in_class(analysis, klass, attr):
        return None
    finals = analysis.models.final_layer_attrs(klass)
    if finals is None or not finals or attr in finals:
        return None
    return (
        f"the weights of the hidden layer {dotted_name(layer) or attr} (an nn.{_LAYER_NAMES[qualname]} whose output "
        f"{klass.name}.forward feeds into another layer)",
        (assigns[0].node,),
    )


def _called_in_class(analysis, klass, attr: str) -> bool:
    wanted = f"self.{attr}"
    for cls in analysis.values.local_bases(klass):
        for method in cls.methods.values():
            for scope in [method.scope] + list(method.scope.children):
                if any(c.dotted == wanted for c in scope.calls):
                    return True
    return False


def _guarded_module_variable(analysis, call, layer: cst.Name):
    """``if isinstance(m, nn.Linear): nn.init.zeros_(m.weight)`` in a
    function given to ``model.apply`` or in ``for m in model.modules()``."""
    index = analysis.index
    kinds = analysis.values.guarded_types(call, layer.value, api.WEIGHT_LAYERS)
    if not kinds or not kinds <= api.WEIGHT_LAYERS:
        return None
    if not _trains(index) or _copies_parameters(index):
        return None  # constant weights to test or probe a model (receptive fields)
    bindings = index.lookup(layer.value, call.scope, call.order)
    if len(bindings) != 1:
        return None
    binding = bindings[0]
    owners = []
    if binding.kind == "for":
        iterable = binding.value
        if (
            isinstance(iterable, cst.Call)
            and isinstance(iterable.func, cst.Attribute)
            and (
                (iterable.func.attr.value in ("modules", "children") and binding.unpack == ())
                or (iterable.func.attr.value in ("named_modules", "named_children") and binding.unpack == (1,))
            )
        ):
            owners.append((iterable.func.value, binding.scope, binding.order))
    elif binding.kind == "param":
        function = index.enclosing_function(call.scope)
        if function is None or function.scope is not binding.scope:
            return None
        for apply in index.method_calls("apply"):
            arg = apply.arg(0)
            if arg is None or apply.receiver is None:
                continue
            if isinstance(arg, cst.Name):
                target = index.function_named(arg.value, apply.scope, apply.order)
            else:
                target = analysis.values.local_callee(_FakeCall(arg, apply)) if isinstance(arg, cst.Attribute) else None
            if target is function:
                owners.append((apply.receiver, apply.scope, apply.order))
    for owner, scope, order in owners:
        if _loaded_later(index, owner):
            continue
        count, label = _model_weight_layers(analysis, owner, scope, order, kinds)
        if count >= 2:
            names = "/".join(sorted("nn." + k.rsplit(".", 1)[-1] for k in kinds))
            return f"the weights of all {count} {names} layers of {label} (hidden layers included)", ()
    return None


class _FakeCall:
    """Just enough of a CallSite for ``Values.local_callee`` on ``self.f``."""

    def __init__(self, func, site):
        self.node = cst.Call(func=func)
        self.scope = site.scope
        self.order = site.order


def _model_weight_layers(analysis, owner, scope, order, kinds) -> Tuple[int, str]:
    if isinstance(owner, cst.Name) and owner.value == "self":
        klass = analysis.values.enclosing_class(scope)
        if klass is None or not analysis.models.is_module_class(klass):
            return 0, ""
        return analysis.models.class_weight_layer_count(klass, 0, kinds), klass.name
    ctor = analysis.models.module_instance(owner, scope, order)
    if ctor is None:
        return 0, ""
    label = dotted_name(owner) or "the model"
    return analysis.models.weight_layer_count(ctor, 0, kinds), label


def _after(blocks, loop):
    seen = False
    for node, branch in blocks:
        if seen:
            yield node, branch
        elif node is loop and branch == "body":
            seen = True


def _weight_name_filter(test: cst.BaseExpression) -> bool:
    """``"weight" in name`` / ``name.endswith("weight")``: weights only."""
    if isinstance(test, cst.Comparison) and len(test.comparisons) == 1:
        left = test.left
        if isinstance(left, cst.SimpleString) and "weight" in left.value and isinstance(
            test.comparisons[0].operator, cst.In
        ):
            return True
    if isinstance(test, cst.Call) and isinstance(test.func, cst.Attribute) and test.func.attr.value == "endswith":
        arg = test.args[0].value if test.args else None
        return isinstance(arg, cst.SimpleString) and "weight" in arg.value
    return False


def _written_again(index, call, name: str, loop) -> bool:
    """Another in-place write to the parameter in the same loop (model
    averaging: ``p.zero_()`` then ``p.add_(q)``)."""
    for other in index.calls:
        if other is call or other.loop is None or other.loop.node is not loop:
            continue
        receiver = other.receiver
        if receiver is None:
            continue
        receiver = _strip_data(receiver)
        if isinstance(receiver, cst.Name) and receiver.value == name and (other.method or "").endswith("_"):
            if other.method != "requires_grad_":
                return True
    return False


def _loaded_later(index, owner) -> bool:
    dotted = dotted_name(owner)
    if dotted is None:
        return False
    return any(
        c.method == "load_state_dict" and dotted_name(c.receiver) == dotted for c in index.method_calls("load_state_dict")
    )


def _trains(index) -> bool:
    """The module builds an optimizer or calls ``backward()``: the
    constant-initialised model is trained here, not just probed or compared
    with another implementation in a test."""
    return any(
        (call.qualname or "").startswith(api.OPTIMIZER_PREFIX) or call.method == "backward" for call in index.calls
    )


def _copies_parameters(index) -> bool:
    """Parameters are overwritten elsewhere in the module (model averaging,
    EMA, federated aggregation, checkpoints): a constant start is then
    only a placeholder."""
    if any(assign.attr == "data" for assign in index.attr_assigns):
        return True  # p.data = ..., p.data += ...
    return any(call.method in ("copy_", "load_state_dict", "lerp_") for call in index.calls)

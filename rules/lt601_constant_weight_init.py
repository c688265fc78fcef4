from typing import Optional, Tuple

import libcst as cst

from lintorch import torchapi as api
from lintorch.analyze import names
from lintorch.analyze.models import subscript_int
from lintorch.index import CallSite, dotted_name, number_value
from lintorch.rule import Example, Rule, Severity


class ConstantWeightInit(Rule):
    """
    **What it does.** Flags constant initialisation (`nn.init.constant_`,
    `zeros_`, `ones_`, `.fill_(c)`, `.zero_()`, `w[:] = c`, also on
    `.weight.data`) of the weights of *hidden* layers:

    * `init_fn(m)` guarded by `isinstance(m, nn.Linear)` (or a convolution)
      over the submodules of a model with at least two such layers: applied
      with `model.apply(init_fn)` / `self.apply(self._init_weights)`, in a
      loop over `model.modules()`/`self.modules()`/`children()` or over
      the layers of an `nn.Sequential`/`nn.ModuleList` (`for layer in
      model`), or called from such a loop; also in a models file that never
      trains;
    * `self.fc1.weight` (or `model.fc1.weight`, `model[0].weight`) when
      `forward` visibly feeds that layer's output into another layer;
    * two or more weight entries of one model's `state_dict()` set to
      constants (`model.state_dict()["fc1.weight"][:] = 1.0`);
    * a loop over `model.parameters()` / `model.named_parameters()` with no
      bias/norm filter, on a model with at least two linear/conv layers, in
      a file that trains (builds an optimizer or calls `backward()`).

    Models are followed through rebinding, wrappers and factories, and
    their layers through `nn.Sequential`, `nn.ModuleList` and lists built
    in loops. Not flagged: biases, norm layers (`BatchNorm`/`LayerNorm`/
    `GroupNorm` weight 1, bias 0), the final layer and residual projections
    (layers whose output `forward` returns or adds to a residual, layers
    named like `head`, `out`, `proj`, `last`, `final`, `classifier`, `[-1]`
    of a `Sequential`, a Glow-style zero convolution that is its module's
    output: zero-init there is a known technique), loops with a filter
    (`if "bias" in name`, `if p.dim() > 1`), models whose weights are
    loaded afterwards (`load_state_dict`), and whole-model parameter loops
    in files that never train or copy parameters (`copy_`, `p.data +=
    ...`): tests that compare two implementations, model averaging and EMA
    set constant values on purpose.

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
    triggers = (
        "constant_(", "zeros_(", "ones_(", "fill_(", "zero_()", "init.constant", "init.zeros", "init.ones",
        "state_dict()[", ".weight[", ".weight.data[",
    )

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
        trains = None
        entries = {}  # state_dict() entries set to constants, per model
        for node, tensor, how, call in _constant_writes(analysis.index):
            tensor = _strip_data(tensor)
            entry = _state_dict_entry(tensor)
            if entry is not None:
                entries.setdefault(entry[0], {}).setdefault(entry[1], (node, how))
                continue
            if isinstance(tensor, cst.Attribute) and tensor.attr.value == "weight":
                reason = _hidden_layer_weight(analysis, call, tensor.value)
            elif isinstance(tensor, cst.Name) and isinstance(call, CallSite):
                if trains is None:
                    trains = _trains(analysis.index) and not _copies_parameters(analysis.index)
                reason = _parameter_loop(analysis, call, tensor.value) if trains else None
            else:
                continue
            if reason is not None:
                yield self._finding(node, how, *reason)
        for owner, keys in entries.items():
            hidden = [key for key in keys if key.endswith(".weight") and not names.is_output_layer_name(key.split(".")[-2])]
            if len(hidden) >= 2:  # two layers of one model: at least one of them is hidden
                node, how = keys[hidden[0]]
                what = f"{len(hidden)} state_dict weights of {owner}"
                yield self._finding(node, how, what, f"the weights set are {', '.join(hidden)}", ())

    def _finding(self, node, how, what, detail, related):
        """``what``: the tensors, in a few words; ``detail``: which layers
        and why one of them is hidden, for the explanation."""
        return self.report(
            node,
            f"{how} sets {what} to a constant",
            explanation=f"{detail}; every unit of a hidden layer then computes the same output and gets "
            "the same gradient, so symmetry is never broken and the model produces identical outputs for "
            "every input (loss stops changing, model not learning). Keep the default random init or use "
            "nn.init.kaiming_uniform_/xavier_uniform_; constants are only for biases, norm layers and a "
            "zero-initialised final/residual projection.",
            related=related,
        )


def _constant_writes(index):
    """(where, tensor, how, context) for every constant written into a
    tensor: ``nn.init.constant_(t, c)``, ``t.fill_(c)``, ``t.zero_()``
    (context: the call) and ``t[...] = 1.0`` (context: the assignment)."""
    for call in index.calls:
        found = _constant_init(call)
        if found is not None:
            yield call.node, found[0], found[1], call
    for assign in index.item_assigns:
        if isinstance(assign.node, cst.Assign) and number_value(assign.value) is not None:
            yield assign.node, assign.target.value, "an item assignment of a number", assign


def _state_dict_entry(tensor) -> Optional[Tuple[str, str]]:
    """``model.state_dict()["hidden.0.weight"]``: ("model", "hidden.0.weight")."""
    if not (isinstance(tensor, cst.Subscript) and len(tensor.slice) == 1 and isinstance(tensor.slice[0].slice, cst.Index)):
        return None
    key, owner = tensor.slice[0].slice.value, tensor.value
    if not (isinstance(key, cst.SimpleString) and isinstance(owner, cst.Call) and isinstance(owner.func, cst.Attribute)):
        return None
    model = dotted_name(owner.func.value)
    if owner.func.attr.value != "state_dict" or model is None or not isinstance(key.evaluated_value, str):
        return None
    return model, key.evaluated_value


def _hidden_layer_weight(analysis, call, layer):
    """``<layer>.weight``: a named hidden layer (``self.fc1``, ``model[0]``)
    or the loop variable of an init over submodules guarded by
    ``isinstance(m, nn.Linear)``."""
    if _output_by_name(layer):
        return None
    if isinstance(layer, cst.Name):
        return _submodule_init(analysis, call, layer.value)
    position = analysis.models.layer_position(layer, call.scope, call.order)
    if position is None or not position.hidden or position.kind not in api.WEIGHT_LAYERS:
        return None
    kind = _short(position.kind)
    if position.container == "nn.Sequential":
        name = f"{dotted_name(layer.value) or 'the model'}[{subscript_int(layer)}]"
        return f"the weights of {name}", f"{name} is an {kind} followed by more layers", (position.where,)
    name = dotted_name(layer) or layer.attr.value
    detail = f"{name} is an {kind} whose output {position.container}.forward feeds into another layer"
    return f"the weights of the hidden layer {name}", detail, (position.where,)


def _submodule_init(analysis, call, name: str):
    """``if isinstance(m, nn.Linear): init.zeros_(m.weight)`` over the
    submodules of a model with at least two such layers (one is hidden)."""
    kinds = analysis.values.guarded_types(call, name, api.WEIGHT_LAYERS)
    if not kinds or not kinds <= api.WEIGHT_LAYERS:
        return None
    for owner in analysis.models.submodules_iterated(name, call):
        count, label = _weight_layers(analysis, owner, kinds)
        if count >= 2 and not analysis.models.weights_restored(owner):
            layers = sorted(_short(k) for k in kinds)
            short = "/".join(layers) if len(layers) <= 2 else "/".join(layers[:2]) + "/..."
            detail = f"{label} has at least {count} {'/'.join(layers)} layers, hidden ones included"
            return f"the weights of every {short} layer of {label}", detail, ()
    return None


def _parameter_loop(analysis, call, name: str):
    """``for p in model.parameters(): nn.init.constant_(p, c)`` with no
    filter on the parameter, over a model with at least two weight layers."""
    found = analysis.models.parameters_iterated(name, call)
    if found is None:
        return None
    owner, loop = found
    for node, branch in _inside(analysis.values.enclosing_blocks(call), loop):
        if isinstance(node, cst.If) and not (branch == "body" and _weight_name_filter(node.test)):
            return None  # a filter we do not read: bias/norm/dim checks
    if _written_again(analysis.index, call, name, loop):
        return None
    if _output_by_name(owner.expr) or analysis.models.weights_restored(owner):
        return None  # zero_module(self.out), for p in self.head.parameters()
    count, label = _weight_layers(analysis, owner, api.WEIGHT_LAYERS)
    if count < 2:
        return None
    return f"every parameter of {label}", f"{label} has at least {count} weight layers, hidden ones included", ()


def _weight_layers(analysis, owner, kinds) -> Tuple[int, str]:
    ctor = analysis.models.module_instance(owner.expr, owner.scope, owner.order)
    if ctor is None:
        return 0, ""
    _, klass = analysis.values.constructor(ctor)
    label = klass.name if dotted_name(owner.expr) == "self" else dotted_name(owner.expr) or "the model"
    return analysis.models.weight_layer_count(ctor, 0, kinds), label


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


def _output_by_name(layer: cst.BaseExpression) -> bool:
    """``self.head``, ``out_proj``, ``model[-1]``, ``self.adaLN_modulation[-1]``."""
    node = layer
    while isinstance(node, cst.Subscript):
        index = subscript_int(node)
        if index is not None and index < 0:
            return True
        node = node.value
    if isinstance(node, cst.Attribute):
        return names.is_output_layer_name(node.attr.value)
    return isinstance(node, cst.Name) and names.is_output_layer_name(node.value)


def _short(qualname: str) -> str:
    return "nn." + qualname.rsplit(".", 1)[-1]


def _inside(blocks, loop):
    """The blocks nested inside ``loop``'s body."""
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


def _trains(index) -> bool:
    """The module builds an optimizer or calls ``backward()``: the
    constant-initialised parameters are trained here, not just probed or
    compared with another implementation in a test."""
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

import re

import libcst as cst

from lintorch import torchapi as api
from lintorch.index import dotted_name
from lintorch.rule import Example, Rule, Severity
from lintorch.analyze.branches import enclosing_if_tests
from lintorch.analyze.values import Value

_GROWING_METHODS = frozenset({"append", "extend", "insert", "add_param_group"})
_HEAD_REPLACING = re.compile(r"add_module|register_module|setattr\(|reset_classifier|replace_|get_peft_model|LoraConfig")


class NothingToOptimise(Rule):
    """
    **What it does.** Flags an optimizer built over `model.parameters()`
    (also filtered: `filter(lambda p: p.requires_grad, ...)`, `[p for p in
    model.parameters() if p.requires_grad]`) after every parameter of
    `model` was frozen (`for p in model.parameters(): p.requires_grad =
    False` or `model.requires_grad_(False)`) with nothing unfrozen or
    replaced in between, an optimizer built over an empty list, and a layer
    replaced after the optimizer was built over the model's parameters
    (`optimizer = SGD(model.parameters())` then `model.fc =
    nn.Linear(...)`, or a new `nn.Parameter`): the optimizer holds the old
    layer, and the new one is never updated.

    **Why is this bad?** Frozen parameters get no gradient, so the optimizer
    has nothing to update; `backward()` raises "element 0 of tensors does
    not require grad" and the usual "fix" (`loss.requires_grad = True`)
    hides it. An empty parameter list makes the optimizer raise, or, when
    it is filled later by mistake, trains nothing.

    **Symptom.** Training runs but the loss does not change and the model
    is not learning (identical predictions epoch after epoch), or a
    RuntimeError / "optimizer got an empty parameter list".

    **Fix.** When fine-tuning, re-enable the layers to train (replace or
    unfreeze the head: `model.fc = nn.Linear(...)`,
    `model.fc.requires_grad_(True)`) before building the optimizer, and give
    the optimizer those parameters (`model.fc.parameters()`). Not flagged:
    any script that sets `requires_grad = True` on some parameters, replaces
    a submodule, or passes a sub-module's parameters.
    """

    code = "LT208"
    name = "nothing-to-optimise"
    severity = Severity.ERROR
    summary = "optimizer over parameters that are all frozen, or over an empty list"
    symptom = "loss not changing; model not learning; RuntimeError 'does not require grad'"
    triggers = ("requires_grad = False", "requires_grad=False", "requires_grad_(False)", "([],", "parameters()")

    bad = [
        Example(
            """
            import torch
            for param in model.parameters():
                param.requires_grad = False
            optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
            """
        ),
    ]
    good = [
        Example(
            """
            import torch
            import torch.nn as nn
            for param in model.parameters():
                param.requires_grad = False
            model.fc = nn.Linear(512, 10)
            optimizer = torch.optim.SGD(model.fc.parameters(), lr=0.01)
            """
        ),
    ]

    def check(self, analysis):
        index = analysis.index
        optimizers = [
            call for call in index.calls
            if call.qualname is not None and call.qualname.startswith(api.OPTIMIZER_PREFIX)
            and not call.qualname.startswith(api.LR_SCHEDULER_PREFIX)
            and call.qualname.rsplit(".", 1)[-1][:1].isupper()
        ]
        if not optimizers:
            return
        freezes = None
        for call in optimizers:
            params = call.arg(0, "params")
            if params is None:
                continue
            if self._empty_list(analysis, params, call):
                yield self.report(
                    params,
                    "the optimizer is given an empty parameter list",
                    explanation="It has nothing to update (PyTorch raises 'optimizer got an empty parameter "
                    "list'), so the model is not learning. Pass model.parameters() or the list of parameters "
                    "to train.",
                )
                continue
            model = analysis.optim.optimized_module(params)
            if model is None:
                continue
            replaced = self._replaced_later(analysis, call, model, optimizers)
            if replaced is not None:
                yield self.report(
                    replaced.node,
                    f"{dotted_name(replaced.target)} is replaced after the optimizer (line {{line0}}) took "
                    + ("its parameters" if dotted_name(replaced.target) == model else f"{model}'s parameters"),
                    explanation=f"{dotted_name(replaced.target)} gets a new module or parameter, but the "
                    "optimizer still holds the old layer's parameters, so the new layer never gets an update "
                    "and the model is not learning (the head keeps its random weights). Replace the layer "
                    "first, then build the optimizer.",
                    related=(call.node,),
                )
            if freezes is None:
                freezes = list(_freezes(index))
            for freeze_node, frozen, order, scope in freezes:
                if frozen != model or scope is not call.scope or order > call.order:
                    continue
                if not self._nothing_unfrozen(index, model, scope, order, call):
                    continue
                yield self.report(
                    params,
                    f"every parameter of {model} is frozen (line {{line0}}) before this optimizer is built over them",
                    explanation="requires_grad = False, and no layer is unfrozen or replaced before the "
                    "optimizer is built: no parameter gets a gradient, so the loss does not change and the "
                    "model is not learning. Unfreeze or replace the layers to train (e.g. the head) first "
                    f"and optimize those ({model}.fc.parameters()).",
                    related=(freeze_node,),
                )
                break

    @staticmethod
    def _replaced_later(analysis, call, model, optimizers):
        """``model.fc = nn.Linear(...)`` after ``optimizer = SGD(model.parameters())``
        in the same scope, with no optimizer built over the model (or the new
        layer) afterwards and no ``add_param_group``."""
        index = analysis.index
        for assign in index.attr_assigns_in(call.scope):
            target = dotted_name(assign.target)
            if target is None or assign.order < call.order or assign.value is None:
                continue
            if not (target == model or target.startswith(model + ".")):
                continue
            value = Value(assign.value, assign.scope, assign.order)
            if not analysis.models.is_module_constructor(value) and analysis.values.constructor(value)[0] != (
                "torch.nn.Parameter"
            ):
                continue
            root = model.split(".")[0]
            if [id(b) for b in index.lookup(root, call.scope, call.order)] != [
                id(b) for b in index.lookup(root, assign.scope, assign.order)
            ]:
                continue  # the model was rebound in between: another object
            rebuilt = any(
                other.order > assign.order
                and ((analysis.optim.optimized_module(other.arg(0, "params")) or "") + ".").startswith(root + ".")
                for other in optimizers
            )
            if rebuilt or any(other.order > assign.order for other in index.method_calls("add_param_group")):
                continue
            return assign
        return None

    @staticmethod
    def _empty_list(analysis, params, call) -> bool:
        index = analysis.index
        if isinstance(params, cst.List):
            return not params.elements
        if not isinstance(params, cst.Name):
            return False
        values = analysis.values.definitions(params, call.scope, call.order)
        if not values or not all(isinstance(v.expr, cst.List) and not v.expr.elements for v in values):
            return False
        name = params.value
        for other in index.calls:
            if other.method in _GROWING_METHODS and dotted_name(other.receiver) == name:
                return False
        for bindings in (s.bindings.get(name, ()) for s in index.scopes):
            if any(b.kind in ("augassign", "for", "with", "param") for b in bindings):
                return False
        return True

    @staticmethod
    def _nothing_unfrozen(index, model, scope, freeze_order, optimizer_call) -> bool:
        for assign in index.attr_assigns:
            if assign.attr == "requires_grad" and not (
                isinstance(assign.value, cst.Name) and assign.value.value == "False"
            ):
                return False
        for call in index.method_calls("requires_grad_"):
            flag = call.arg(0, "requires_grad")
            if not (isinstance(flag, cst.Name) and flag.value == "False"):
                return False
        text = index.text or ""
        if _HEAD_REPLACING.search(text):
            return False
        if re.search(r"\b" + re.escape(model) + r"(\.\w+|\[[^\]]*\])+\s*=(?!=)", text):
            return False
        root = model.split(".")[0]
        before = index.lookup(root, scope, freeze_order)
        after = index.lookup(root, optimizer_call.scope, optimizer_call.order)
        return [id(b) for b in before] == [id(b) for b in after]


def _freezes(index):
    """(node, model dotted name, order, scope) for each unconditional freeze of all parameters."""
    for assign in index.attr_assigns:
        if assign.attr != "requires_grad" or not (isinstance(assign.value, cst.Name) and assign.value.value == "False"):
            continue
        loop = assign.loop
        target = assign.target.value
        if loop is None or not isinstance(loop.node, cst.For) or not isinstance(target, cst.Name):
            continue
        if loop.scope is not assign.scope or enclosing_if_tests(loop.node.body, assign.node):
            continue
        loop_target = loop.node.target
        if isinstance(loop_target, cst.Tuple) and len(loop_target.elements) == 2:
            loop_target = loop_target.elements[1].value
        if not (isinstance(loop_target, cst.Name) and loop_target.value == target.value):
            continue
        iterable = loop.node.iter
        if (
            isinstance(iterable, cst.Call)
            and not iterable.args
            and isinstance(iterable.func, cst.Attribute)
            and iterable.func.attr.value in ("parameters", "named_parameters")
        ):
            model = dotted_name(iterable.func.value)
            if model is not None:
                yield assign.node, model, assign.order, assign.scope
    for call in index.method_calls("requires_grad_"):
        flag = call.arg(0, "requires_grad")
        if isinstance(flag, cst.Name) and flag.value == "False" and call.loop is None:
            model = dotted_name(call.receiver)
            if model is not None:
                yield call.node, model, call.order, call.scope

"""Forwards: which calls run a model, which model, and which of them train.

``model(x)``, ``model.forward(x)``, ``self(x)`` and the calls of local
functions or methods that run one (``model.validation_step(batch)``,
``evaluate_batch(model, b)``); the module such a call runs, with its
dropout/batch-norm layers; and the training forwards, whose outputs reach a
``backward()`` (through assignments, tuple unpacking and the returns of
local functions). Also the callers of a method through instances of its
class, which ``Values.callers`` does not follow.
"""

from typing import List, Optional, Set, Tuple

import libcst as cst

from lintorch.analyze.models import Models
from lintorch.analyze.optim import BACKWARD, STEP, Optimization, backward_target
from lintorch.analyze.values import Value, Values
from lintorch.index import CallSite, ClassInfo, FunctionInfo, Scope, iter_nodes


class Forwards:
    def __init__(self, values: Values, models: Models, optim: Optimization):
        self.values = values
        self.models = models
        self.optim = optim
        self.index = values.index

    def _cache(self, name: str) -> dict:
        return self.__dict__.setdefault("_fw_" + name, {})

    def model_call_in(self, call: CallSite, _depth: int = 0) -> Optional[CallSite]:
        """The model call ``call`` runs: itself (``model(x)``), or the first
        one in the local function or method it runs (``evaluate_batch(model, b)``,
        ``model.validation_step(batch)``) when that function trains nothing."""
        if self.models.is_model_call(call):
            return call
        if _depth >= 2 or (call.qualname is not None and call.qualname.startswith("torch.")):
            return None
        cache = self._cache("model_call_in")
        key = (id(call.node), _depth)
        if key in cache:
            return cache[key]
        found = None
        for function in self.runner_functions(call):
            if self.optim.function_effects(function) & {BACKWARD, STEP}:
                break
            found = next((f for f in map(lambda c: self.model_call_in(c, _depth + 1), function.scope.calls) if f), None)
            if found is not None:
                break
        cache[key] = found
        return found


    def runner_functions(self, call: CallSite) -> List[FunctionInfo]:
        """Local functions a call runs, also methods called through an
        instance of a class of this module (``model.validation_step(b)``)."""
        found = list(self.values.functions_run_by(call))
        receiver = call.receiver
        methods = self._cache("method_names").get("all")
        if methods is None:
            methods = self._cache("method_names")["all"] = {m for k in self.index.classes for m in k.methods}
        if not found and call.method in methods and isinstance(receiver, (cst.Name, cst.Attribute)):
            for value in self.values.definitions(receiver, call.scope, call.order):
                _, klass = self.values.constructor(self.values.strip_value_preserving(value))
                method = self.values.method_of(klass, call.method) if klass is not None else None
                if method is not None and method not in found:
                    found.append(method)
        return found


    def forward_target(self, call: CallSite) -> Optional[cst.BaseExpression]:
        """The module a forward runs: ``model`` for ``model(x)``,
        ``model.forward(x)``, ``model.module(x)`` and ``model.validation_step(batch)``, ``self``
        for ``self(x)``; None for a helper function it is passed to."""
        func = call.node.func
        if self.models.is_model_call(call):
            if isinstance(func, cst.Attribute) and func.attr.value in ("forward", "module"):
                return func.value  # model.forward(x); model.module(x) of a DataParallel wrapper
            return func
        if call.receiver is not None and self.runner_functions(call):
            return call.receiver if not self.values.functions_run_by(call) else None
        return None


    def forward_mode_layers(self, call: CallSite) -> Optional[bool]:
        """:meth:`Models.mode_layers` of the module a forward runs (for
        ``self(x)``: the class, or any local subclass of it)."""
        target = self.forward_target(call)
        inner = self.model_call_in(call)
        if target is None and inner is not None and inner is not call:
            return self.forward_mode_layers(inner)
        if isinstance(target, cst.Name) and target.value == "self":
            klass = self.values.enclosing_class(call.scope)
            return self._class_family_layers(klass) if klass is not None else None
        if target is None:
            return None
        return self.models.mode_layers(target, call.scope, call.order)


    def _class_family_layers(self, klass: ClassInfo) -> Optional[bool]:
        family = [c for c in self.index.classes if any(b is klass for b in self.values.local_bases(c))]
        results = [self.models.class_mode_layers(c) for c in family]
        if True in results:
            return True
        return False if len(family) == 1 and results == [False] else None


    def is_training_forward(self, call: CallSite) -> bool:
        """Whether the output of this model call (directly or through the
        local function returning it) reaches a ``backward()``."""
        return id(call.node) in self._training_forwards()


    def training_model_calls(self) -> List[CallSite]:
        cache = self._cache("training_model_calls")
        if "calls" not in cache:
            ids = self._training_forwards()
            cache["calls"] = [c for c in self.index.calls if id(c.node) in ids and self.models.is_model_call(c)]
        return cache["calls"]


    def trained_here(self, call: CallSite) -> bool:
        """The model this call runs is also run by a training forward here."""
        target = self.forward_target(call)
        if target is None:
            return False
        for other in self.training_model_calls():
            other_target = self.forward_target(other)
            if other_target is not None and self.values.same_object(target, call, other_target, other):
                return True
        return False


    def _training_forwards(self) -> Set[int]:
        cache = self._cache("training_forwards")
        if "ids" in cache:
            return cache["ids"]
        found: Set[int] = set()
        seen: Set[Tuple[int, int]] = set()
        budget = [4000]
        for call in self.index.calls:
            if BACKWARD not in self.optim.call_effects(call):
                continue
            loss = backward_target(call)
            if loss is not None:
                self._trace_outputs(loss, call.scope, call.order, found, seen, budget, 0)
        cache["ids"] = found
        return found


    def _trace_outputs(self, expr, scope: Scope, order: int, found: Set[int], seen, budget, depth: int, bound=None) -> bool:
        """Mark the model calls (and the calls of local functions returning
        one) whose output ``expr`` is computed from; True if there are any.
        In a function entered through a call, its parameters hold that
        call's arguments (``bound``), not every caller's: a loss helper's
        inputs are the training forward's, not the validation loop's."""
        if depth > 8:
            return False
        reached = False
        for value in self._sources(expr, scope, order, bound):
            key = (id(value.expr), value.order, id(bound) if bound else 0)
            if key in seen or budget[0] <= 0:
                continue
            seen.add(key)
            budget[0] -= 1
            for node in iter_nodes(value.expr):
                if isinstance(node, (cst.Name, cst.Attribute)) and node is not value.expr:
                    reached |= self._trace_outputs(node, value.scope, value.order, found, seen, budget, depth + 1, bound)
                if not isinstance(node, cst.Call):
                    continue
                inner = value.scope.index.call_at(node)  # also in a helper of another module
                if inner is None:
                    continue
                returns_output = self.models.is_model_call(inner)
                for function in self.runner_functions(inner):
                    arguments = None
                    for ret, ret_order in function.returns:
                        if ret.value is not None:
                            if arguments is None:
                                arguments = {**(bound or {}), **self.values.arguments(function, Value(node, value.scope, value.order))}
                            returns_output |= self._trace_outputs(
                                ret.value, function.scope, ret_order, found, seen, budget, depth + 1, arguments
                            )
                if returns_output:
                    found.add(id(node))
                    reached = True
        return reached

    def _sources(self, expr, scope: Scope, order: int, bound=None) -> List[Value]:
        """:meth:`Values.definitions`, plus what it leaves out for a name:
        the whole call of ``mu, logvar, z = encoder(x)``, both sides of
        ``loss += reg`` (the value added and the earlier value), and what is
        appended to a list (``losses.append(loss)``)."""
        out = list(self.values.definitions(expr, scope, order, bound=bound))
        if not isinstance(expr, cst.Name):
            return out
        for call in scope.calls:
            if call.method in ("append", "extend", "insert") and isinstance(call.receiver, cst.Name) and call.receiver.value == expr.value:
                for arg in call.node.args:
                    out.extend(self.values.definitions(arg.value, call.scope, call.order))
        pending = list(self.index.lookup(expr.value, scope, order))
        for _ in range(8):
            if not pending:
                break
            binding = pending.pop()
            if binding.value is None:
                continue
            if binding.unpack and isinstance(binding.value, cst.Call):
                out.append(Value(binding.value, binding.scope, binding.order))
            elif binding.kind == "augassign":
                out.append(Value(binding.value, binding.scope, binding.order))
                pending.extend(b for b in self.index.lookup(expr.value, binding.scope, binding.order) if b is not binding)
            elif binding.kind in ("assign", "annassign"):
                out.extend(self.values.definitions(binding.value, binding.scope, binding.order))
        return out

    # -- helpers ----------------------------------------------------------------


    def callers(self, function: FunctionInfo) -> List[CallSite]:
        """:meth:`Values.callers`, and for a method also the calls through an
        instance of its class built in this module (``model.evaluate(loader)``)."""
        cache = self._cache("callers")
        if function in cache:
            return cache[function]
        found = list(self.values.callers(function))
        klass = function.klass
        if function.is_method and klass is not None:
            for call in self.index.method_calls(function.name):
                if call in found or not isinstance(call.receiver, (cst.Name, cst.Attribute)):
                    continue
                if any(
                    self.values.method_of(local, function.name) is function
                    for value in self.values.definitions(call.receiver, call.scope, call.order)
                    for local in [self.values.constructor(self.values.strip_value_preserving(value))[1]]
                    if local is not None
                ):
                    found.append(call)
        cache[function] = found
        return found


"""The semantic model of one module: what each value is.

An :class:`Analysis` is built once per module by the engine and handed to
every rule. It holds the syntax index and the domain facts, each computed
lazily on first use and memoised:

* ``values``: what an expression may hold (assignments, parameters traced to
  call sites, ``self.<attr>``), what a call constructs, the local call graph;
* ``models``: which values are networks, model calls, layers, the output
  activation, train/eval-dependent layers;
* ``losses``: loss calls and what feeds them;
* ``ranges``: typical value ranges of tensors (regression targets);
* ``shapes``: the number of dimensions of tensors and their batch axis, when visible;
* ``data``: loaders, datasets, batches;
* ``optim``: optimizers, steps, schedulers, training loops;
* ``forwards``: calls that run a model (also through helpers), training forwards;
* ``modes``: train/eval mode, gradient recording;
* ``passes``: evaluation passes (blocks that run a model without training it);
* ``statements``: comprehensions, conditional arms and discarded values around calls.

Rules ask these questions ("is this value a model?", "which loss consumes
this tensor?", "is this loop an evaluation pass?") instead of re-deriving
the answers. The domain modules in ``lintorch.analyze`` import downwards
only (values <- models <- losses, values <- data <- optim <- forwards <-
modes <- passes; ranges,
losses and shapes also read data); name heuristics live
in ``lintorch.analyze.names`` alone.
"""

from typing import Dict, Optional

from lintorch.analyze import names
from lintorch.analyze.data import Data
from lintorch.analyze.forwards import Forwards
from lintorch.analyze.losses import Losses
from lintorch.analyze.models import Models
from lintorch.analyze.modes import Modes
from lintorch.analyze.optim import Optimization
from lintorch.analyze.passes import Passes
from lintorch.analyze.ranges import Ranges
from lintorch.analyze.shapes import Shapes
from lintorch.analyze.statements import Statements
from lintorch.analyze.values import Values
from lintorch.index import CallSite, ModuleIndex, Scope


class Analysis:
    def __init__(self, index: ModuleIndex):
        self.index = index
        self._values: Optional[Values] = None
        self._models: Optional[Models] = None
        self._losses: Optional[Losses] = None
        self._ranges: Optional[Ranges] = None
        self._shapes: Optional[Shapes] = None
        self._data: Optional[Data] = None
        self._optim: Optional[Optimization] = None
        self._modes: Optional[Modes] = None
        self._forwards: Optional[Forwards] = None
        self._passes: Optional[Passes] = None
        self._statements: Optional[Statements] = None
        self._others: Dict[int, "Analysis"] = {}

    @property
    def values(self) -> Values:
        if self._values is None:
            self._values = Values(self.index)
        return self._values

    @property
    def models(self) -> Models:
        if self._models is None:
            self._models = Models(self.values)
        return self._models

    @property
    def losses(self) -> Losses:
        if self._losses is None:
            self._losses = Losses(self.values, self.models, self.data)
        return self._losses

    @property
    def ranges(self) -> Ranges:
        if self._ranges is None:
            self._ranges = Ranges(self.values, self.data)
        return self._ranges

    @property
    def shapes(self) -> Shapes:
        if self._shapes is None:
            self._shapes = Shapes(self.values, self.models, self.data)
        return self._shapes

    @property
    def data(self) -> Data:
        if self._data is None:
            self._data = Data(self.values)
        return self._data

    @property
    def optim(self) -> Optimization:
        if self._optim is None:
            self._optim = Optimization(self.values, self.data)
        return self._optim

    @property
    def statements(self) -> Statements:
        if self._statements is None:
            self._statements = Statements(self.index)
        return self._statements

    @property
    def forwards(self) -> Forwards:
        if self._forwards is None:
            self._forwards = Forwards(self.values, self.models, self.optim)
        return self._forwards

    @property
    def modes(self) -> Modes:
        if self._modes is None:
            self._modes = Modes(self.values, self.models, self.optim, self.forwards, self.statements)
        return self._modes

    @property
    def passes(self) -> Passes:
        if self._passes is None:
            self._passes = Passes(self.values, self.models, self.optim, self.data, self.modes, self.forwards, self.statements)
        return self._passes

    def of_module(self, index: ModuleIndex) -> "Analysis":
        """The analysis of ``index``: this one, or that of another module of
        the project a fact led to (built on first use, kept for this
        module's analysis only)."""
        if index is self.index:
            return self
        other = self._others.get(id(index))
        if other is None:
            other = self._others[id(index)] = Analysis(index)
        return other

    def evaluated_in_own_module(self, call: CallSite) -> bool:
        """Whether a model call of another module (a helper's ``model(x)``
        reached from a pass here) lies in an evaluation pass of its own
        module: that module's analysis reports on it, with every caller."""
        other = self.of_module(call.scope.index)
        return other is not self and any(
            other.forwards.model_call_in(forward) is call for found in other.passes.evaluation_passes() for forward in found.forwards
        )

    def in_test_code(self, scope: Scope) -> bool:
        """Unit-test code (``test_*.py``/``*_test.py`` files, ``test*``
        functions): tiny loops with deliberately large steps, where warnings
        about training quality or memory growth are noise."""
        if names.is_test_file_name(self.index.path):
            return True
        function = self.index.enclosing_function(scope)
        while function is not None:
            if function.name.startswith("test"):
                return True
            parent = function.scope.parent
            function = self.index.enclosing_function(parent) if parent is not None else None
        return False

"""Model identity and construction facts (issue 12): rebinding, wrappers,
factories, tuple unpacking, attribute chains, ``self``, and layers built
step by step."""

import textwrap

import libcst as cst
import pytest

from lintorch.analysis import Analysis
from lintorch.index import ModuleIndex


def analyse(source: str) -> Analysis:
    return Analysis(ModuleIndex(cst.parse_module(textwrap.dedent(source))))


def use_args(analysis: Analysis):
    call = [c for c in analysis.index.calls if c.dotted == "use"][-1]
    return [(arg.value, call.scope, call.order) for arg in call.node.args]


def built(analysis: Analysis, expr, scope, order):
    """What each module value is: a torch class name or a local class name."""
    out = []
    for value in analysis.models.module_values(expr, scope, order):
        qualname, klass = analysis.values.constructor(value)
        out.append(qualname.rsplit(".", 1)[-1] if qualname else (klass.name if klass else None))
    return out


IMPORTS = """
import torch
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel as DDP

class Net(nn.Module):
    def forward(self, x):
        return x
"""


@pytest.mark.parametrize(
    "binding",
    [
        "model = Net()\nmodel = model.to('cuda')",
        "model = Net().cuda().train().float()",
        "model = nn.DataParallel(Net())",
        "model = torch.nn.DataParallel(Net(), device_ids=[0])",
        "model = torch.nn.parallel.DataParallel(Net())",
        "model = DDP(Net().to(0), device_ids=[0])",
        "model = torch.nn.parallel.DistributedDataParallel(module=Net())",
        "model = torch.compile(Net())",
        "net = Net()\nnet = torch.compile(nn.DataParallel(net))\nmodel = net.module",
        "def build_model():\n    net = Net()\n    return net\nmodel = build_model()",
        "def wrap(m):\n    return nn.DataParallel(m).cuda()\nmodel = wrap(Net())\nother = wrap(nn.Linear(1, 1))",
        "def pair():\n    return Net(), nn.Linear(2, 2)\nmodel, head = pair()",
        "model, head = Net(), nn.Linear(2, 2)",
        "from accelerate import Accelerator\nacc = Accelerator()\nmodel, opt, dl = acc.prepare(Net(), opt, dl)",
        "from lightning import Fabric\nfabric = Fabric()\nmodel = fabric.setup(Net().cuda())",
        "from apex import amp\nmodel, opt = amp.initialize(Net(), opt)",
        "class Trainer:\n    def __init__(self, net):\n        self.net = net\ntrainer = Trainer(Net())\nmodel = trainer.net",
    ],
)
def test_model_identity_survives_rebinding(binding):
    analysis = analyse(IMPORTS + binding + "\nuse(model)\n")
    (expr, scope, order), = use_args(analysis)
    assert built(analysis, expr, scope, order) == ["Net"]
    assert analysis.models.module_instance(expr, scope, order) is not None


def test_factory_with_one_return_per_model():
    analysis = analyse(
        IMPORTS
        + """
def get_model(name):
    if name == "net":
        return Net()
    elif name == "mlp":
        return nn.Sequential(nn.Linear(4, 4))
    return torchvision_model(name)

use(get_model("net"))
"""
    )
    (expr, scope, order), = use_args(analysis)
    assert sorted(map(str, built(analysis, expr, scope, order))) == ["Net", "None", "Sequential"]
    assert analysis.models.module_instance(expr, scope, order) is None  # one path is not visible


def test_self_is_an_instance_of_its_class():
    analysis = analyse(
        """
        import torch.nn as nn
        import lightning.pytorch as pl

        class Lit(pl.LightningModule):
            def training_step(self, batch, i):
                x, y = batch
                use(self)
                return self(x)
        """
    )
    (expr, scope, order), = use_args(analysis)
    klass = analysis.index.classes[0]
    assert analysis.models.is_module_class(klass)
    assert analysis.values.constructor(analysis.models.module_values(expr, scope, order)[0]) == (None, klass)
    self_call = [c for c in analysis.index.calls if c.dotted == "self"][0]
    assert analysis.models.is_model_call(self_call)


@pytest.mark.parametrize(
    "call",
    ["model(x)", "model.forward(x)", "model.module(x)", "model.__call__(x)"],
)
def test_model_calls(call):
    analysis = analyse(IMPORTS + "model = nn.DataParallel(Net())\n" + call + "\n")
    site = [c for c in analysis.index.calls if (c.dotted or "").startswith("model")][-1]
    assert analysis.models.is_model_call(site)


def test_call_results_bind_parameters_per_call():
    analysis = analyse(
        """
        import torch.nn as nn

        def wrap(m, extra=None):
            return nn.DataParallel(m)

        a = wrap(nn.Linear(1, 1))
        b = wrap(nn.Conv2d(1, 1, 1))
        use(a, b)
        """
    )
    (a, scope, order), (b, _, _) = use_args(analysis)
    assert built(analysis, a, scope, order) == ["Linear"]
    assert built(analysis, b, scope, order) == ["Conv2d"]


def test_unpacked_from_a_call():
    analysis = analyse(
        """
        score, probs = critic(x)
        a, (b, c) = 1, f()
        use(probs, c)
        """
    )
    (probs, scope, order), (c, _, _) = use_args(analysis)
    value, path = analysis.values.unpacked_from(probs, scope, order)
    assert isinstance(value.expr, cst.Call) and path == (1,)
    value, path = analysis.values.unpacked_from(c, scope, order)
    assert value.expr.func.value == "f" and path == (1,)


LAYERS = """
from collections import OrderedDict
import torch.nn as nn
"""


def layer_names(analysis, expr, scope, order):
    ctor = analysis.models.module_instance(expr, scope, order)
    layers = analysis.models.layers(ctor)
    if layers is None:
        return None
    out = []
    for layer in layers:
        qualname, _ = analysis.values.constructor(layer.value)
        name = qualname.rsplit(".", 1)[-1] if qualname else "?"
        out.append(name + ("?" if layer.conditional else ""))
    return out


@pytest.mark.parametrize(
    "building, expected",
    [
        ("model = nn.Sequential(nn.Linear(1, 2), nn.ReLU())", ["Linear", "ReLU"]),
        (
            "model = nn.Sequential()\nmodel.add_module('a', nn.Linear(1, 2))\nmodel.add_module('b', nn.Softmax(1))",
            ["Linear", "Softmax"],
        ),
        ("model = nn.Sequential(OrderedDict([('a', nn.Linear(1, 2)), ('b', nn.Tanh())]))", ["Linear", "Tanh"]),
        ("model = nn.Sequential(OrderedDict(a=nn.Linear(1, 2)))", None),
        (
            "layers = []\nfor i in range(3):\n    layers.append(nn.Linear(2, 2))\n    layers.append(nn.ReLU())\n"
            "layers += [nn.Dropout()]\nlayers.extend([nn.Linear(2, 1)])\nmodel = nn.Sequential(*layers)",
            ["Linear", "ReLU", "Dropout", "Linear"],
        ),
        (
            "layers = [nn.Linear(2, 2)]\nif flag:\n    layers.append(nn.BatchNorm1d(2))\nmodel = nn.Sequential(*layers, nn.Sigmoid())",
            ["Linear", "BatchNorm1d?", "Sigmoid"],
        ),
        (
            "def block(n, bn=True):\n    out = [nn.Conv2d(n, n, 3)]\n    if bn:\n        out.append(nn.BatchNorm2d(n))\n    return out\n"
            "model = nn.Sequential(*block(3), *block(3, bn=False))",
            ["Conv2d", "BatchNorm2d?", "Conv2d", "BatchNorm2d?"],
        ),
        (
            "if deep:\n    layers = [nn.Linear(2, 2)]\n    layers.append(nn.ReLU())\n    model = nn.Sequential(*layers)",
            ["Linear", "ReLU"],
        ),
        ("model = nn.ModuleList([nn.Linear(2, 2) for _ in range(4)])", ["Linear"]),
        ("layers = [nn.Linear(2, 2)]\nlayers.insert(0, nn.ReLU())\nmodel = nn.Sequential(*layers)", None),
        ("model = nn.Sequential(*list(other.children())[:-1])", None),
    ],
)
def test_layers_of_built_containers(building, expected):
    analysis = analyse(LAYERS + building + "\nuse(model)\n")
    (expr, scope, order), = use_args(analysis)
    assert layer_names(analysis, expr, scope, order) == expected


def test_layers_added_to_self_attribute_containers():
    analysis = analyse(
        LAYERS
        + """
class Net(nn.Module):
    def __init__(self, sizes):
        super().__init__()
        self.hidden = nn.ModuleList()
        for a, b in zip(sizes, sizes[1:]):
            self.hidden.append(nn.Linear(a, b))
        self.hidden.append(nn.Dropout(0.5))

    def grow(self):
        self.hidden.append(nn.BatchNorm1d(3))

    def forward(self, x):
        use(self.hidden)
        return x
"""
    )
    (expr, scope, order), = use_args(analysis)
    assert layer_names(analysis, expr, scope, order) == ["Linear", "Dropout", "BatchNorm1d?"]
    klass = analysis.index.classes[0]
    assert analysis.models.class_mode_layers(klass) is True
    assert analysis.models.class_weight_layer_count(klass) == 1


def test_submodules_iterated_by_apply_loops_and_helpers():
    analysis = analyse(
        """
        import torch.nn as nn

        def init_a(m):
            touch(m)

        def init_b(m):
            touch(m)

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.apply(self._init)
                for sub in self.modules():
                    init_b(sub)

            def _init(self, module):
                touch(module)

        model = Net().cuda()
        model.apply(init_a)
        for name, child in model.named_children():
            touch(child)
        """
    )
    touches = [c for c in analysis.index.calls if c.dotted == "touch"]
    owners = [
        sorted(cst.Module([]).code_for_node(v.expr) for v in analysis.models.submodules_iterated(t.node.args[0].value.value, t))
        for t in touches
    ]
    assert owners == [["model"], ["self"], ["self"], ["model"]]


def test_layer_position_hidden_and_final():
    analysis = analyse(
        """
        import torch.nn as nn

        class Block(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc1 = nn.Linear(4, 8)
                self.fc2 = nn.Linear(8, 4)
                self.unused = nn.Linear(4, 4)

            def forward(self, x):
                return x + self.fc2(self.fc1(x).relu())

        seq = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
        block = Block()
        use(block.fc1, block.fc2, block.unused, seq[0], seq[2], seq[-1], seq[7])
        """
    )
    positions = [analysis.models.layer_position(expr, scope, order) for expr, scope, order in use_args(analysis)]
    summary = [(p.kind.rsplit(".", 1)[-1], p.hidden, p.container) if p else None for p in positions]
    assert summary == [
        ("Linear", True, "Block"),
        ("Linear", False, "Block"),
        None,  # never called: its role is unknown
        ("Linear", True, "nn.Sequential"),
        ("Linear", False, "nn.Sequential"),
        ("Linear", False, "nn.Sequential"),
        None,
    ]


def test_parameters_iterated_and_restored_weights():
    analysis = analyse(
        """
        import torch.nn as nn
        net = nn.Linear(2, 2)
        for n, p in net.named_parameters():
            touch(p)
        for p in net.parameters(recurse=False):
            touch(p)
        for p in net.buffers():
            touch(p)
        net.load_state_dict(state)
        """
    )
    touches = [c for c in analysis.index.calls if c.dotted == "touch"]
    found = [analysis.models.parameters_iterated("p", t) for t in touches]
    assert [f[0].expr.value if f else None for f in found] == ["net", "net", None]
    assert analysis.models.weights_restored(found[0][0])


def test_item_assignments_are_indexed():
    analysis = analyse("model.state_dict()['fc.weight'][:] = 1.0\na, b[0] = 1, 2\n")
    assigns = analysis.index.item_assigns
    assert [cst.Module([]).code_for_node(a.target) for a in assigns] == ["model.state_dict()['fc.weight'][:]", "b[0]"]
    assert assigns[0].value.value == "1.0" and assigns[1].value is None


def test_mode_layers_through_identity_and_building():
    analysis = analyse(
        """
        import torch
        import torch.nn as nn

        def block(n, bn):
            layers = [nn.Linear(n, n)]
            if bn:
                layers.append(nn.BatchNorm1d(n))
            return layers

        def build(p):
            layers = []
            for _ in range(3):
                layers.append(nn.Linear(4, 4))
            layers.append(nn.Dropout(p))
            return nn.Sequential(*layers)

        def get_model(name):
            if name == "plain":
                return nn.Sequential(nn.Linear(4, 4), nn.ReLU())
            return load_somewhere(name)

        a = nn.DataParallel(build(0.5)).cuda()
        b = torch.compile(nn.Sequential(nn.Linear(4, 4), nn.ReLU()))
        c = get_model("plain")
        d = nn.Sequential(*block(4, bn=True))
        e = nn.Sequential(*block(4, bn=False), nn.Dropout())
        use(a, b, c, d, e)
        """
    )
    result = [analysis.models.mode_layers(expr, scope, order) for expr, scope, order in use_args(analysis)]
    assert result == [True, False, None, None, True]


@pytest.mark.parametrize(
    "source, expected",
    [
        # A file that imports torch but binds nn/F nowhere (an exported
        # notebook whose import cell was deleted): the conventional aliases.
        ("import torch\nuse(nn.Softmax, F.cross_entropy, optim.SGD)",
         ["torch.nn.Softmax", "torch.nn.functional.cross_entropy", "torch.optim.SGD"]),
        # Bound anywhere in the file, even later or in a function: not assumed.
        ("import torch\nuse(nn.Softmax)\nnn = make()", [None]),
        ("import torch\ndef f(F):\n    pass\nuse(F.cross_entropy)", [None]),
        # No torch import, or a star import that could bind them: not assumed.
        ("import numpy\nuse(nn.Softmax)", [None]),
        ("import torch\nfrom helpers import *\nuse(nn.Softmax)", [None]),
    ],
)
def test_unbound_torch_aliases(source, expected):
    analysis = analyse(source)
    call = [c for c in analysis.index.calls if c.dotted == "use"][-1]
    assert [analysis.index.qualname_of(arg.value, call.scope, call.order) for arg in call.node.args] == expected

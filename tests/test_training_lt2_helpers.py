"""The training.py/dataflow.py helpers the optimisation-loop rules share."""

import textwrap

import libcst as cst

from lintorch.dataflow import is_model_call, looks_like_loss_call
from lintorch.index import ModuleIndex
from lintorch.training import BACKWARD, STEP, ZERO_GRAD, exclusive_branches


def build(code):
    text = textwrap.dedent(code)
    return ModuleIndex(cst.parse_module(text), "t.py", text)


def test_scope_effects_follow_statement_order_and_helpers():
    index = build(
        """
        def step_all(opt):
            opt.step()

        for x, y in loader:
            loss = criterion(model(x), y)
            loss.backward()
            optimizer.zero_grad()
            step_all(optimizer)
        """
    )
    sequence = index.training.scope_effects(index.module_scope)
    assert [sorted(e.effects) for e in sequence] == [[BACKWARD], [ZERO_GRAD], [STEP]]
    assert sequence[2].own == frozenset()  # the step happens in the helper


def test_grad_disabled_by_with_decorator_and_enable_grad():
    index = build(
        """
        import torch

        with torch.no_grad():
            a = model(x)
            with torch.enable_grad():
                b = model(x)

        @torch.inference_mode()
        def infer(x):
            return model(x)
        """
    )
    training = index.training
    disabled = [training.grad_disabled_by(c) is not None for c in index.calls if c.dotted == "model"]
    assert disabled == [True, False, True]


def test_batch_loop_versus_epoch_loop():
    index = build(
        """
        def train_one_epoch(loader, optimizer):
            for x, y in loader:
                criterion(model(x), y).backward()
                optimizer.step()

        for epoch in range(10):
            train_one_epoch(loader, optimizer)

        for epoch in range(10):
            for x, y in loader:
                criterion(model(x), y).backward()
                optimizer.step()

        for epoch in range(100):
            criterion(model(X), Y).backward()
            optimizer.step()
        """
    )
    training = index.training
    roles = [(index.module.code_for_node(loop.node.target), training.is_batch_loop(loop)) for loop in index.loops]
    assert roles == [("x, y", True), ("epoch", False), ("epoch", False), ("x, y", True), ("epoch", False)]


def test_exclusive_branches_and_backpropagated_names():
    index = build(
        """
        for x in loader:
            if amp:
                scaler.scale(loss).backward()
            else:
                loss.backward()
            losses.append(part)
            total = sum(losses)
            total.backward()
        """
    )
    loop = index.loops[0]
    backwards = [c for c in index.calls if c.method == "backward"]
    assert exclusive_branches(loop.node, [backwards[0].node, backwards[1].node])
    assert not exclusive_branches(loop.node, [backwards[1].node, backwards[2].node])
    assert {"loss", "total", "losses"} <= index.training.backpropagated_names(index.module_scope)


def test_loss_and_model_call_recognition():
    index = build(
        """
        import torch.nn as nn
        import torch.nn.functional as F

        class Net(nn.Module):
            pass

        net = Net()
        criterion = nn.MSELoss()
        a = criterion(net(x), y)
        b = F.cross_entropy(x, y)
        c = helper(x, y)
        """
    )
    by_name = {c.dotted: c for c in index.calls}
    flow = index.flow
    assert looks_like_loss_call(flow, by_name["criterion"])
    assert looks_like_loss_call(flow, by_name["F.cross_entropy"])
    assert not looks_like_loss_call(flow, by_name["helper"])
    assert is_model_call(flow, by_name["net"])
    assert not is_model_call(flow, by_name["criterion"])

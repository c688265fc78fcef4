"""The optimisation-domain facts (lintorch.analyze.optim) and shared call recognition."""

import textwrap

import libcst as cst

from lintorch.analysis import Analysis
from lintorch.index import ModuleIndex
from lintorch.analyze.branches import exclusive_branches
from lintorch.analyze.optim import BACKWARD, STEP, ZERO_GRAD


def build(code):
    text = textwrap.dedent(code)
    return Analysis(ModuleIndex(cst.parse_module(text), "t.py", text))


def test_scope_effects_follow_statement_order_and_helpers():
    analysis = build(
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
    sequence = analysis.optim.scope_effects(analysis.index.module_scope)
    assert [sorted(e.effects) for e in sequence] == [[BACKWARD], [ZERO_GRAD], [STEP]]
    assert sequence[2].own == frozenset()  # the step happens in the helper


def test_grad_disabled_by_with_decorator_and_enable_grad():
    analysis = build(
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
    disabled = [analysis.modes.grad_disabled_by(c) is not None for c in analysis.index.calls if c.dotted == "model"]
    assert disabled == [True, False, True]


def test_batch_loop_versus_epoch_loop():
    analysis = build(
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
    roles = [(analysis.index.module.code_for_node(loop.node.target), analysis.optim.is_batch_loop(loop)) for loop in analysis.index.loops]
    assert roles == [("x, y", True), ("epoch", False), ("epoch", False), ("x, y", True), ("epoch", False)]


def test_exclusive_branches_and_backpropagated_names():
    analysis = build(
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
    loop = analysis.index.loops[0]
    backwards = [c for c in analysis.index.calls if c.method == "backward"]
    assert exclusive_branches(loop.node, [backwards[0].node, backwards[1].node])
    assert not exclusive_branches(loop.node, [backwards[1].node, backwards[2].node])
    assert {"loss", "total", "losses"} <= analysis.optim.backpropagated_names(analysis.index.module_scope)


def test_loss_and_model_call_recognition():
    analysis = build(
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
    by_name = {c.dotted: c for c in analysis.index.calls}
    assert analysis.losses.looks_like_loss_call(by_name["criterion"])
    assert analysis.losses.looks_like_loss_call(by_name["F.cross_entropy"])
    assert not analysis.losses.looks_like_loss_call(by_name["helper"])
    assert analysis.models.is_model_call(by_name["net"])
    assert not analysis.models.is_model_call(by_name["criterion"])


def test_separating_if_and_conditions_fixed_across_a_loop():
    from lintorch.analyze.branches import fixed_across, separating_if

    analysis = build(
        """
        for epoch in range(10):
            for i, (x, y) in enumerate(loader):
                loss.backward()
                if args.flag and isinstance(sched, Plateau):
                    sched.step()
                else:
                    opt.step()
                if i % 4 == 0:
                    sched.step()
                else:
                    opt.step()
                if epoch > 3:
                    opt.step()
        """
    )
    index = analysis.index
    steps = [c for c in index.calls if c.method == "step"]
    outer = index.loops[0]
    first = separating_if(outer.node, steps[0].node, steps[1].node)
    second = separating_if(outer.node, steps[2].node, steps[3].node)
    assert first is not None and fixed_across(index, outer, first.test)
    assert second is not None and not fixed_across(index, outer, second.test)  # i changes every batch
    third = index.loops[1].node.body.body[-1]
    assert not fixed_across(index, outer, third.test)  # epoch is the outer loop's variable
    assert separating_if(outer.node, steps[0].node, steps[4].node) is None


def test_scheduler_constructor_skips_none_when_not_configured():
    analysis = build(
        """
        import torch

        def fit(cfg):
            if cfg.milestones:
                sched = torch.optim.lr_scheduler.MultiStepLR(opt, cfg.milestones)
            else:
                sched = None
            for epoch in range(3):
                if sched is not None:
                    sched.step()
        """
    )
    step = next(c for c in analysis.index.calls if c.method == "step")
    qualname, _ = analysis.optim.scheduler_constructor(step)
    assert qualname == "torch.optim.lr_scheduler.MultiStepLR"


def test_uncleared_steps_are_judged_per_optimizer():
    analysis = build(
        """
        import torch
        opt_a = torch.optim.Adam(a.parameters())
        opt_b = torch.optim.SGD(b.parameters(), lr=0.1)
        for x in loader:
            opt_a.zero_grad()
            loss(x).backward()
            opt_a.step()
            opt_b.step()
        for x in loader:
            opt_a.zero_grad()
            b.zero_grad()
            loss(x).backward()
            opt_a.step()
            opt_b.step()
        for x in loader:
            opt_a.zero_grad()
            loss(x).backward()
            opt_a.step()
            some_optimizer.step()
        """
    )
    first, second, third = analysis.index.loops
    assert [c.dotted for c in analysis.optim.uncleared_steps(first)] == ["opt_b.step"]
    assert analysis.optim.uncleared_steps(second) == []  # b.zero_grad() may clear opt_b's parameters
    assert analysis.optim.uncleared_steps(third) == []  # an optimizer whose construction is not visible


def test_iteration_limit():
    analysis = build(
        """
        for i, (x, y) in enumerate(loader):
            train_step(x, y)
            if i == 3:
                break
        for i, batch in enumerate(loader):
            if i >= 100: break
        for i, (x, y) in enumerate(loader):
            if i == 3 and debug:
                break
        for x, y in loader:
            pass
        """
    )
    assert [analysis.optim.iteration_limit(loop) for loop in analysis.index.loops] == [4, 101, None, None]


def test_optimized_module():
    from lintorch.analyze.optim import Optimization

    expressions = {
        "model.parameters()": "model",
        "self.net.fc.parameters()": "self.net.fc",
        "filter(lambda p: p.requires_grad, model.parameters())": "model",
        "[p for p in enc.parameters() if p.requires_grad]": "enc",
        "(p for p in enc.parameters())": "enc",
        "[p.weight for p in enc.parameters()]": None,
        "model.named_parameters()": None,
        "[w, b]": None,
    }
    for source, expected in expressions.items():
        assert Optimization.optimized_module(cst.parse_expression(source)) == expected, source


def test_helper_effects_through_recursion_are_whole_whichever_is_asked_first():
    """``outer`` and ``inner`` call each other; ``inner`` also runs a helper
    that steps. Summarised inside ``outer``, ``inner`` is cut short (outer is
    still in progress) and must not be remembered so: asked afterwards, it
    still has every effect."""
    code = """
        def stepper(opt):
            opt.step()

        def outer(opt, loss):
            loss.backward()
            inner(opt, loss)

        def inner(opt, loss):
            stepper(opt)
            if loss is None:
                outer(opt, loss)

        def leaf(opt):
            stepper(opt)
        """
    analysis = build(code)
    functions = {f.name: f for f in analysis.index.functions}
    assert analysis.optim.function_effects(functions["outer"]) == {BACKWARD, STEP}
    assert analysis.optim.function_effects(functions["inner"]) == {BACKWARD, STEP}
    assert analysis.optim.function_effects(functions["leaf"]) == {STEP}
    fresh = build(code)
    fresh_functions = {f.name: f for f in fresh.index.functions}
    assert fresh.optim.function_effects(fresh_functions["inner"]) == {BACKWARD, STEP}

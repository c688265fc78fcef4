"""Losses-domain facts (lintorch.analyze.losses)."""

import textwrap

import libcst as cst

from lintorch.analysis import Analysis
from lintorch.index import ModuleIndex


def build(code):
    text = textwrap.dedent(code)
    return Analysis(ModuleIndex(cst.parse_module(text), "t.py", text))


def log_operands(analysis):
    """(operand source, activation kind or None) for every torch.log(...) call."""
    out = []
    for call in analysis.index.calls:
        if call.qualname == "torch.log":
            operand = call.arg(0)
            found = analysis.losses.probability_activation(operand, call.scope, call.order)
            out.append((analysis.index.module.code_for_node(operand), found.kind if found else None))
    return out


def test_probability_activation_sees_through_selections():
    analysis = build(
        """
        import torch
        import torch.nn.functional as F

        probs = F.softmax(logits, dim=1)
        picked = torch.gather(probs, 1, a).squeeze(1)
        counts = hist / hist.sum()
        torch.log(torch.gather(probs, 1, a))
        torch.log(picked)
        torch.log(probs.index_select(0, idx)[:, 0])
        torch.log(torch.gather(counts, 0, a))
        torch.log(picked.clamp(min=1e-8))
        """
    )
    assert log_operands(analysis) == [
        ("torch.gather(probs, 1, a)", "softmax"),
        ("picked", "softmax"),
        ("probs.index_select(0, idx)[:, 0]", "softmax"),
        ("torch.gather(counts, 0, a)", None),
        ("picked.clamp(min=1e-8)", None),
    ]


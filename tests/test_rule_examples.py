"""Each rule's documented examples are tests: every `bad` example yields the
rule's code, every `good` example yields none (Fixit's VALID/INVALID)."""

import pytest

from lintorch import registry
from conftest import lint_text

CASES = [
    (cls, kind, i, example)
    for cls in registry.all_rules()
    for kind, examples in (("bad", cls.bad), ("good", cls.good))
    for i, example in enumerate(examples)
]


@pytest.mark.parametrize("cls,kind,i,example", CASES, ids=lambda v: getattr(v, "code", str(v)) if isinstance(v, type) else None)
def test_rule_example(cls, kind, i, example):
    codes = {f.code for f in lint_text(example.code, select=[cls.code])}
    if kind == "bad":
        assert cls.code in codes, f"{cls.code} bad example {i} not flagged:\n{example.code}"
    else:
        assert cls.code not in codes, f"{cls.code} good example {i} flagged:\n{example.code}"


def test_every_rule_documents_examples_and_explanation():
    for cls in registry.all_rules():
        assert cls.bad and cls.good, cls.code
        text = cls.explanation()
        for section in ("What it does", "Why is this bad", "Symptom", "Fix"):
            assert section in text, f"{cls.code} explanation lacks '{section}'"

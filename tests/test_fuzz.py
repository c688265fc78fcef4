"""Property-based robustness: whatever the input, linting returns
well-formed findings and never raises or reports an internal error.

Example counts are bounded so that the file stays within ~30 s on a busy
machine; bench/fuzz.py runs the same oracle for as long as asked.
"""

import random

import pytest
from hypothesis import HealthCheck, given, settings

import fuzzlib

pytest.importorskip("hypothesmith")

FAST = settings(
    deadline=None,
    database=None,
    derandomize=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
SEEDS = fuzzlib.seed_texts()


def assert_robust(data: bytes, fix: bool = False) -> None:
    found = fuzzlib.problems(data, fix=fix)
    assert not found, "\n".join(found) + "\n--- input ---\n" + repr(data[:2000])


@settings(FAST, max_examples=30)
@given(fuzzlib.grammar_python())
def test_grammar_generated_python(data):
    assert_robust(data)


@settings(FAST, max_examples=6)
@given(fuzzlib.cst_python())
def test_libcst_generated_python(data):
    assert_robust(data)


@settings(FAST, max_examples=100)
@given(fuzzlib.mutated_seeds(SEEDS))
def test_mutated_fixtures(data):
    """Fixtures with lines deleted, duplicated, swapped, cut or re-indented,
    snippets and stray bytes inserted."""
    assert_robust(data)


@settings(FAST, max_examples=40)
@given(fuzzlib.mutated_seeds(SEEDS))
def test_fix_on_mutated_fixtures(data):
    """--fix --unsafe-fixes never raises, never changes a file that does not
    parse, and what it writes still parses."""
    assert_robust(data, fix=True)


@settings(FAST, max_examples=25)
@given(fuzzlib.mutated_notebooks(SEEDS))
def test_mutated_notebooks(data):
    """Notebooks with mutated code cells and damaged JSON, linted and fixed."""
    found = fuzzlib.problems(data, "fuzz.ipynb", fix=True)
    assert not found, "\n".join(found) + "\n--- input ---\n" + repr(data[:2000])


@settings(FAST, max_examples=100)
@given(fuzzlib.noise())
def test_noise(data):
    assert_robust(data)


def test_every_seed_is_clean_of_internal_errors():
    assert SEEDS
    for seed in SEEDS:
        assert_robust(seed.encode("utf-8"))


def test_mutators_change_their_input():
    rnd = random.Random(7)
    seed = SEEDS[0]
    assert any(fuzzlib.mutate_lines(seed, rnd, 3) != seed for _ in range(5))
    assert any(fuzzlib.mutate_bytes(seed.encode(), rnd, 2) != seed.encode() for _ in range(5))


def test_oracle_reports_crashes_and_internal_errors(monkeypatch):
    """The oracle itself must see what it is looking for."""
    from lintorch import engine

    def crash(*args, **kwargs):
        raise ValueError("boom")

    monkeypatch.setattr(engine, "lint_bytes", crash)
    assert fuzzlib.problems(b"x = 1\n")[0].startswith("crash: ")
    monkeypatch.undo()

    from lintorch.rules.lt201_missing_zero_grad import MissingZeroGrad

    monkeypatch.setattr(MissingZeroGrad, "check", lambda self, index: crash())
    assert any(p.startswith("internal error: ") for p in fuzzlib.problems(b"loss.backward()\n"))

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


def _expression_depth(node) -> int:
    """Nesting of expression nodes in a libcst tree (what the nesting
    guard's cheap bound must never under-estimate)."""
    import libcst as cst

    deepest, stack = 0, [(node, 0)]
    while stack:
        current, depth = stack.pop()
        if isinstance(current, cst.BaseExpression):
            depth += 1
            deepest = max(deepest, depth)
        for child in current.children:
            stack.append((child, depth))
    return deepest


#: One level of nesting each, in few characters; several put a comma
#: between a node and its child (lambda parameters, comprehension targets),
#: where a comma-based bound could under-count.
_WRAPPERS = (
    "{}+1", "-{}", "not {}", "{}.b", "f({})", "f(1,{})", "{}[0]", "a[1,{}]", "lambda a,b:{}",
    "lambda a=1,*b:{}", "lambda a={}:1", "[a for a,b in {}]", "[{} for a,b in c]", "(a for a,b in c if {})",
    "{{1:{}}}", "{{{},1}}", "(1,{})", "{} if a else b", "a if {} else b", "{} and a", "a or {}",
    "f'{{{}}}'", "(yield 1,{})", "(a:={})", "*{},", "{}()", "'a' {}", "{} 'b'", "a<{}",
)


def _nested_expressions():
    from hypothesis import strategies as st

    def build(start_and_runs):
        expression, runs = start_and_runs
        for wrapper, times in runs:
            for _ in range(times):
                expression = wrapper.format(expression)
        return expression

    # Runs of one wrapper: a long homogeneous chain is where a bound that
    # miscounts one construct falls behind the real depth.
    run = st.tuples(st.sampled_from(_WRAPPERS), st.integers(1, 60))
    # Many clauses in one comprehension: libcst nests each clause in the
    # previous one, as clauses rather than expressions (no wrapper builds it).
    clauses = st.integers(1, 120).map(lambda k: "[a " + "for a,b in c " * k + "]")
    start = st.one_of(st.just("x"), clauses)
    return st.tuples(start, st.lists(run, max_size=6)).map(build)


@settings(FAST, max_examples=300)
@given(_nested_expressions())
def test_nesting_bound_never_underestimates(expression):
    import libcst as cst

    from lintorch import source

    text = "def g():\n    x = " + expression + "\n"
    try:
        module = cst.parse_module(text)
    except cst.ParserSyntaxError:
        return
    bound, _, _, _ = source._shape(text)
    assert bound >= _expression_depth(module), expression

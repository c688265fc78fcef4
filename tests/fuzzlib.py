"""Input generators and the crash oracle shared by tests/test_fuzz.py (small,
bounded example counts) and bench/fuzz.py (a long time-bounded run).

The oracle: linting any bytes returns well-formed findings, never raises,
never reports an internal error (LT001), and leaves the interpreter's
recursion limit as it found it. Generated code is prefixed with a comment
holding every rule's trigger words, so the prefilter lets every rule run.
"""

import random
import sys
import traceback
from pathlib import Path
from typing import List, Sequence

from hypothesis import strategies as st

from lintorch import engine, registry
from lintorch.rule import Finding

REPO = Path(__file__).resolve().parent.parent


def _all_rules():
    return registry.instantiate(registry.resolve_enabled(["ALL"], []))


RULES = _all_rules()
TRIGGERS = sorted({word for rule in RULES for word in rule.triggers})
HEADER = "# " + " ".join(TRIGGERS) + "\nimport torch\nimport torch.nn as nn\n"
KNOWN_CODES = frozenset(registry.known_codes())


def problems(data: bytes, path: str = "fuzz.py", fix: bool = False) -> List[str]:
    """What is wrong with linting ``data`` (empty: nothing); with ``fix``,
    also with fixing it (see :func:`fix_problems`)."""
    limit = sys.getrecursionlimit()
    try:
        findings = engine.lint_bytes(data, path, RULES)
        text_findings = None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            if not text.startswith("\ufeff") and not path.endswith(".ipynb"):
                text_findings = engine.lint_text(text, path, RULES)  # the flake8 plugin's path
    except Exception:  # the oracle: nothing may escape the engine
        return ["crash: " + traceback.format_exc()]
    out = []
    if sys.getrecursionlimit() != limit:
        out.append(f"recursion limit left at {sys.getrecursionlimit()} (was {limit})")
    for group in (findings, text_findings or []):
        for finding in group:
            if not isinstance(finding, Finding):
                out.append(f"not a Finding: {finding!r}")
                continue
            if finding.code == registry.INTERNAL_ERROR_CODE:
                out.append(f"internal error: {finding.message}")
            if finding.code not in KNOWN_CODES:
                out.append(f"unknown code {finding.code}")
            if finding.line < 1 or finding.column < 1 or finding.end_line < finding.line:
                out.append(f"bad position {finding}")
        if not path.endswith(".ipynb") and list(group) != sorted(group, key=Finding.sort_key):
            out.append("findings not sorted")  # (notebooks sort by cell)
    if fix:
        out += fix_problems(data, path)
    return out


def fix_problems(data: bytes, path: str = "fuzz.py") -> List[str]:
    """``--fix --unsafe-fixes`` on ``data``: must not raise; a file that did
    not parse is never changed; a changed file still decodes and parses."""
    from lintorch import fix, notebook, source

    try:
        if path.endswith(".ipynb"):
            outcome = fix.fix_notebook_bytes(data, path, RULES, unsafe=True)
        else:
            outcome = fix.fix_bytes(data, path, RULES, unsafe=True)
        if not outcome.changed:
            return []
        new = outcome.new_bytes()
    except Exception:
        return ["fix crash: " + traceback.format_exc()]
    out = []
    if path.endswith(".ipynb"):
        if isinstance(notebook.load(new), source.SourceError):
            out.append("fix produced a notebook that does not load")
        return out
    if isinstance(source.load(data)[1], source.SourceError):
        out.append("fix changed a file that does not parse")
    if isinstance(source.load(new)[1], source.SourceError):
        out.append("fix produced code that does not parse: " + source.load(new)[1].reason)
    return out


def seed_texts() -> List[str]:
    """Realistic starting points: every fixture (buggy and clean training
    scripts) and the rules' own examples."""
    texts = [p.read_text(encoding="utf-8") for p in sorted((REPO / "fixtures").rglob("*.py"))]
    for rule in RULES:
        for example in (*type(rule).bad, *type(rule).good):
            texts.append(getattr(example, "code", None) or str(example))
    return [t for t in texts if t.strip()]


# -- mutations (line level and byte level) -------------------------------------

_SNIPPETS = [
    "(", ")", "[", "]", "{", "}", ":", "\\", "\t", "    ", "\r", "\r\n", "\x0c", "\ufeff", "\u2028", "#", "'", '"',
    '"""', "'''", "f'{", "lambda: ", "async ", "await ", "yield ", "print ", "return", "else:", "except:",
    "def f(:", "class", "@", "*", "**", "=", ":=", "->", ";", ",", "...", "\x00", "\udcff", "é", "\U0001f600",
    "# noqa", "# noqa: LT102", "# -*- coding: latin-1 -*-", "# coding: utf-16", "loss.backward()",
    "optimizer.zero_grad()", "optimizer.step()", "nn.CrossEntropyLoss()", "torch.softmax(x, dim=1)",
    "for x in loader:", "with torch.no_grad():", "if True:", "while True:", "try:", "finally:",
    "match x:", "case _:", "type X = int", "def f[T](x: T): pass",
]


def mutate_lines(text: str, rnd: random.Random, count: int) -> str:
    lines = text.split("\n")
    for _ in range(count):
        op = rnd.randrange(7)
        i = rnd.randrange(len(lines) + 1)
        if op == 0 and lines:  # delete a line
            del lines[min(i, len(lines) - 1)]
        elif op == 1 and lines:  # duplicate a line
            j = min(i, len(lines) - 1)
            lines.insert(j, lines[j])
        elif op == 2 and len(lines) > 1:  # swap two lines
            j = rnd.randrange(len(lines))
            i = min(i, len(lines) - 1)
            lines[i], lines[j] = lines[j], lines[i]
        elif op == 3:  # insert a snippet inside a line
            if lines:
                j = min(i, len(lines) - 1)
                at = rnd.randrange(len(lines[j]) + 1)
                lines[j] = lines[j][:at] + rnd.choice(_SNIPPETS) + lines[j][at:]
            else:
                lines.append(rnd.choice(_SNIPPETS))
        elif op == 4 and lines:  # re-indent a line
            j = min(i, len(lines) - 1)
            lines[j] = rnd.choice(["", " ", "  ", "    ", "\t", "        "]) + lines[j].lstrip()
        elif op == 5:  # insert a line copied from elsewhere
            lines.insert(i, rnd.choice(lines) if lines else "")
        elif lines:  # cut a line short
            j = min(i, len(lines) - 1)
            lines[j] = lines[j][: rnd.randrange(len(lines[j]) + 1)]
    return "\n".join(lines)


def mutate_bytes(data: bytes, rnd: random.Random, count: int) -> bytes:
    buf = bytearray(data)
    for _ in range(count):
        op = rnd.randrange(4)
        i = rnd.randrange(len(buf) + 1)
        if op == 0 and buf:
            del buf[min(i, len(buf) - 1)]
        elif op == 1:
            buf[i:i] = bytes([rnd.randrange(256)])
        elif op == 2 and buf:
            buf[min(i, len(buf) - 1)] = rnd.randrange(256)
        else:
            buf[i:i] = rnd.choice([b"\r", b"\n", b"\r\n", b"\xef\xbb\xbf", b"\xff", b"\xc3", b"\x00", b"\\\n"])
    return bytes(buf)


def notebook_seeds() -> List[dict]:
    import json

    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted((REPO / "tests" / "data" / "notebooks").glob("*.ipynb"))]


def mutate_notebook(document: dict, seeds: Sequence[str], rnd: random.Random) -> bytes:
    """A notebook whose code cells are mutated fixtures, then perhaps its
    JSON damaged at the byte level."""
    import copy
    import json

    document = copy.deepcopy(document)
    for cell in document.get("cells", []):
        if cell.get("cell_type") == "code" and rnd.random() < 0.7:
            text = mutate_lines(rnd.choice(seeds), rnd, rnd.randint(0, 4))
            cell["source"] = text.splitlines(keepends=True) if rnd.random() < 0.5 else text
    data = json.dumps(document, indent=rnd.choice([None, 1, 2])).encode("utf-8")
    if rnd.random() < 0.3:
        data = mutate_bytes(data, rnd, rnd.randint(1, 3))
    return data


# -- hypothesis strategies -----------------------------------------------------


def grammar_python() -> st.SearchStrategy:
    """Syntactically valid Python from CPython's grammar (hypothesmith)."""
    import hypothesmith

    return hypothesmith.from_grammar().map(lambda code: (HEADER + code).encode("utf-8", "surrogatepass"))


def cst_python() -> st.SearchStrategy:
    """Valid Python built from libcst nodes (hypothesmith)."""
    import hypothesmith

    return hypothesmith.from_node().map(lambda code: (HEADER + code).encode("utf-8", "surrogatepass"))


def mutated_seeds(seeds: Sequence[str]) -> st.SearchStrategy:
    return st.builds(
        lambda seed, rnd, lines, raw: _mutate(seed, rnd, lines, raw),
        st.sampled_from(list(seeds)),
        st.randoms(use_true_random=False),
        st.integers(1, 6),
        st.integers(0, 3),
    )


def _mutate(seed: str, rnd: random.Random, lines: int, raw: int) -> bytes:
    text = mutate_lines(seed, rnd, lines)
    data = text.encode("utf-8", "surrogatepass")
    return mutate_bytes(data, rnd, raw) if raw else data


def noise() -> st.SearchStrategy:
    """Raw bytes and odd text after the trigger header."""
    alphabet = st.sampled_from(list("()[]{}:;,.=+-*/@\\'\"#\t\r\n\x0c abcxyz019_") + ["\u2028", "é", "\ufeff"])
    text = st.lists(alphabet, max_size=300).map("".join).map(lambda t: (HEADER + t).encode("utf-8"))
    raw = st.binary(max_size=600).map(lambda b: HEADER.encode() + b)
    return st.one_of(text, raw, st.binary(max_size=200))


def mutated_notebooks(seeds: Sequence[str]) -> st.SearchStrategy:
    return st.builds(
        lambda document, rnd: mutate_notebook(document, seeds, rnd),
        st.sampled_from(notebook_seeds()),
        st.randoms(use_true_random=False),
    )

"""Every fixture under fixtures/ states its expected findings inline
(`# expect: LT102`); this test fails on any missing or extra finding."""

import pytest

from conftest import FIXTURES, expectations, expected_severities, lint_text

# fixtures/probe/ and fixtures/diagnose/ hold scripts that are run (tests/test_probe.py,
# tests/test_diagnose.py), not static expectations; fixtures/projects/ holds
# multi-file projects (tests/test_projects.py).
FIXTURE_FILES = sorted(
    p for p in FIXTURES.rglob("*.py") if p.relative_to(FIXTURES).parts[0] not in ("probe", "diagnose", "projects"))


@pytest.mark.parametrize("path", FIXTURE_FILES, ids=lambda p: str(p.relative_to(FIXTURES)))
def test_fixture_findings_match_expectations(path):
    text = path.read_text(encoding="utf-8")
    expected = expectations(text)
    findings = lint_text(text, str(path))
    found_lines = {(f.line, f.code) for f in findings}
    expected_lines = {(line, code) for line, code, _ in expected}
    missing = expected_lines - found_lines
    extra = found_lines - expected_lines
    assert not missing and not extra, (
        f"missing: {sorted(missing)}\nextra: {sorted(extra)}\n"
        + "\n".join(f"  {f.line}:{f.column} {f.code} {f.message}" for f in findings)
    )
    by_line = {(f.line, f.code): f.column for f in findings}
    for line, code, column in expected:
        if column:
            assert by_line[(line, code)] == column, f"{code} on line {line}: column {by_line[(line, code)]} != {column}"
    severity = {(f.line, f.code): f.severity.value for f in findings}
    for key, wanted in expected_severities(text).items():
        assert severity[key] == wanted, f"{key[1]} on line {key[0]}: severity {severity[key]} != {wanted}"


def test_every_rule_has_bad_and_hard_negative_fixtures():
    from lintorch import registry

    for cls in registry.all_rules():
        folder = FIXTURES / cls.code
        assert folder.is_dir(), f"no fixtures/{cls.code}/"
        bad = list(folder.glob("bad_*.py"))
        good = list(folder.glob("good_*.py"))
        assert len(bad) >= 3, f"{cls.code}: {len(bad)} bad fixtures, want at least 3"
        assert len(good) >= 2, f"{cls.code}: {len(good)} hard-negative fixtures, want at least 2"
        for path in bad:
            assert any(code == cls.code for _, code, _ in expectations(path.read_text())), f"{path} expects no {cls.code}"
        for path in good:
            # A hard negative may still state an info finding: info is off by default.
            text = path.read_text()
            severities = expected_severities(text)
            shown = [line for line, code, _ in expectations(text) if code == cls.code and severities.get((line, code)) != "info"]
            assert not shown, f"{path} expects {cls.code} at default settings (lines {shown})"


def test_fixtures_exist():
    assert len(FIXTURE_FILES) >= 25


@pytest.mark.parametrize("path", FIXTURE_FILES, ids=lambda p: str(p.relative_to(FIXTURES)))
def test_trigger_words_never_hide_a_finding(path):
    """The prefilter skips a rule (or the whole parse) when none of its
    trigger words occurs. Running every rule regardless must find nothing
    more: a rule's trigger words are necessary for it to fire."""
    from lintorch import engine, registry

    text = path.read_text(encoding="utf-8")
    rules = registry.instantiate(registry.known_codes())
    prefiltered = engine.lint_text(text, str(path), rules)
    unfiltered = engine._lint_decoded(text, str(path), rules, True, False)
    assert prefiltered == unfiltered

"""Output formats for findings and rule documentation."""

import json
from collections import Counter
from typing import IO, Dict, Iterable, List, Sequence, Tuple

from lintorch import registry
from lintorch.rule import Finding, Severity


def format_text(finding: Finding) -> str:
    """``path:line:col: CODE message``: the form editors and CI parse
    (``path:cell N:line:col: ...`` for a notebook cell)."""
    if finding.cell is not None:
        return f"{finding.path}:cell {finding.cell}:{finding.line}:{finding.column}: {finding.code} {finding.message}"
    return f"{finding.path}:{finding.line}:{finding.column}: {finding.code} {finding.message}"


def write_text(findings: Sequence[Finding], stream: IO[str], files_checked: int) -> None:
    for finding in findings:
        stream.write(format_text(finding) + "\n")
    if findings:
        files = len({f.path for f in findings})
        noun = "finding" if len(findings) == 1 else "findings"
        file_noun = "file" if files == 1 else "files"
        stream.write(f"Found {len(findings)} {noun} in {files} {file_noun} ({files_checked} checked).\n")


def write_json(findings: Sequence[Finding], stream: IO[str]) -> None:
    json.dump([f.as_dict() for f in findings], stream, indent=2)
    stream.write("\n")


def write_statistics(findings: Sequence[Finding], stream: IO[str]) -> None:
    counts = Counter(f.code for f in findings)
    names: Dict[str, str] = registry.known_codes()
    width = max((len(str(n)) for n in counts.values()), default=1)
    for code, count in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
        stream.write(f"{count:>{width}}  {code}  {names.get(code, '')}\n")


# -- rule documentation -----------------------------------------------------


def severity_label(cls) -> str:
    """``warning`` or, for rules whose findings vary, ``warning (error ...)``."""
    return f"{cls.severity.value} ({cls.severity_cases})" if cls.severity_cases else cls.severity.value


class EngineCode:
    """LT000 and LT001: reported by the engine, not by a rule module, and
    documented like a rule (``lintorch rule LT000``, the README table, SARIF)."""

    severity = Severity.ERROR
    severity_cases = ""
    bad: Tuple = ()
    good: Tuple = ()

    def __init__(self, code: str, name: str, summary: str, symptom: str, explanation: str):
        self.code, self.name, self.summary, self.symptom = code, name, summary, symptom
        self._explanation = explanation

    def explanation(self) -> str:
        return self._explanation


ENGINE_CODES = (
    EngineCode(
        registry.UNPARSABLE_CODE,
        registry.UNPARSABLE_NAME,
        "a file that cannot be read, decoded or parsed",
        "none: the file is skipped",
        """\
**What it does.** Reports a file that lintorch could not analyse, with the
reason and its position: a syntax error (CPython's message and position),
bytes that are not valid in the file's encoding (PEP 263), a null byte, a
file or directory that cannot be read, a broken symlink, a FIFO or device
named `*.py`, code nested too deeply, a file over 2 MiB. Every file is
checked for syntax, including those no rule needs to parse. In a notebook,
a cell that does not parse is reported with its cell number and left out;
the other cells are analysed.

**Why is this bad?** No rule looked at the file (or the cell), so its
bugs, if it has any, are not reported. A syntax error stops Python too.

**Fix.** Correct the error the message names, or exclude the file
(`exclude`, `--extend-exclude`) when it is not Python (a template,
generated data).

**Fix safety.** `--fix` never changes such a file.""",
    ),
    EngineCode(
        registry.INTERNAL_ERROR_CODE,
        registry.INTERNAL_ERROR_NAME,
        "a bug inside lintorch while checking a file (please report it)",
        "none",
        """\
**What it does.** Reports an exception raised inside one of lintorch's
rules while it checked this file, naming the rule. The other rules still
ran, and their findings are reported.

**Why is this bad?** The named rule did not check this file, so a bug it
looks for may be missed there. The fault is lintorch's, not your code's.

**Fix.** Please report it with the file (or a small file that triggers
it): `lintorch --debug FILE` shows the traceback. Meanwhile, ignore the
named rule for that file (`per-file-ignores`) to keep CI green.

**Fix safety.** No fix.""",
    ),
)


def documented_code(selector: str):
    """The rule class, or the :class:`EngineCode`, for a code or name;
    raises :class:`registry.UnknownSelector`."""
    for doc in ENGINE_CODES:
        if selector.upper() == doc.code or selector.lower() == doc.name:
            return doc
    return registry.rule_by_selector(selector)


def rule_text(cls) -> str:
    lines = [f"{cls.code} {cls.name} ({severity_label(cls)})", "", cls.summary, ""]
    lines.append(f"Symptom: {cls.symptom}")
    lines.append("")
    lines.append(cls.explanation())
    for title, examples in (("Example (flagged)", cls.bad), ("Use instead", cls.good)):
        if examples:
            lines += ["", f"{title}:", ""]
            for example in examples[:2]:
                lines += ["    " + line if line else "" for line in example.code.splitlines()]
                lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def rule_markdown(cls) -> str:
    lines = [f"## {cls.code} `{cls.name}`", ""]
    lines += [f"**Severity:** {severity_label(cls)}  ", f"**Symptom:** {cls.symptom}", ""]
    lines += [cls.summary, "", cls.explanation(), ""]
    for title, examples in (("Example", cls.bad), ("Use instead", cls.good)):
        if examples:
            lines += [f"### {title}", ""]
            for example in examples[:2]:
                lines += ["```python", example.code.rstrip(), "```", ""]
    return "\n".join(lines)


def rule_table_markdown(classes: Iterable[type]) -> str:
    """The README's rule table, generated from rule metadata."""
    rows = ["| code | name | severity | symptom | what it flags |", "|---|---|---|---|---|"]
    for cls in (*ENGINE_CODES, *classes):
        rows.append(f"| {cls.code} | {cls.name} | {severity_label(cls)} | {cls.symptom} | {cls.summary} |")
    return "\n".join(rows) + "\n"


def rules_json(classes: Iterable[type]) -> List[dict]:
    return [
        {
            "code": cls.code,
            "name": cls.name,
            "severity": cls.severity.value,
            **({"severity_cases": cls.severity_cases} if cls.severity_cases else {}),
            "summary": cls.summary,
            "symptom": cls.symptom,
            "explanation": cls.explanation(),
        }
        for cls in classes
    ]

"""Messages that fit where they are read: a one-line message per finding,
its explanation (why, symptom, fix) in the full output, JSON, SARIF and
``lintorch rule``, and the concise line in flake8 and GitHub annotations."""

import io
import json
import re
import subprocess
import sys

import pytest

from conftest import FIXTURES, lint_text, write

#: The most characters a message may have (the issue asks for about 100).
MAX_MESSAGE = 100

ALL_FIXTURE_FILES = sorted(FIXTURES.glob("LT*/*.py"))


def _fixture_findings():
    for path in ALL_FIXTURE_FILES:
        yield from lint_text(path.read_text(encoding="utf-8"), str(path.relative_to(FIXTURES)))


def test_every_fixture_message_is_one_short_line_and_every_explanation_says_more():
    findings = [f for f in _fixture_findings() if f.code != "LT000"]
    assert len(findings) > 150  # every rule's bad fixtures
    assert {f.code for f in findings} >= {f"LT{n}" for n in (101, 201, 301, 401, 501, 601)}
    problems = []
    for f in findings:
        where = f"{f.path}:{f.line} {f.code}"
        if len(f.message) > MAX_MESSAGE:
            problems.append(f"{where}: message of {len(f.message)} characters: {f.message}")
        if "\n" in f.message or f.message != f.message.strip():
            problems.append(f"{where}: message not one trimmed line: {f.message!r}")
        if f.message.endswith("."):
            problems.append(f"{where}: message ends with a period: {f.message}")
        for text in (f.message, f.explanation):
            if re.search(r"\{[\w.]+\}", text):
                problems.append(f"{where}: unresolved placeholder (a string that is not an f-string?): {text}")
        if not f.explanation.endswith(".") or "\n" in f.explanation:
            problems.append(f"{where}: explanation not sentences on one line: {f.explanation!r}")
        if len(f.explanation) < 40 or f.explanation.startswith(f.message):
            problems.append(f"{where}: explanation repeats or adds nothing: {f.explanation!r}")
    assert not problems, "\n".join(problems)


def test_messages_are_specific_to_the_finding():
    """The key fact, with the line it points at, is in the concise message;
    the way the value got there is in the explanation."""
    [finding] = lint_text((FIXTURES / "LT102" / "bad_forward_returns_softmax.py").read_text(encoding="utf-8"))
    assert finding.message == "CrossEntropyLoss receives softmax output (Net.forward, line 14)"
    assert finding.explanation.startswith("The softmax comes from nn.Softmax() returned by Net.forward. ")
    assert "Pass the logits and drop the softmax before the loss." in finding.explanation


FULL_LT102 = """\
train.py:27:26: LT102 CrossEntropyLoss receives softmax output (Net.forward, line 14)
27 |         loss = criterion(outputs, targets)  # expect: LT102
   |                          ^^^^^^^
   = The softmax comes from nn.Softmax() returned by Net.forward. CrossEntropyLoss
     applies log_softmax to raw logits itself: the probabilities squash the gradients,
     so the loss barely changes and accuracy stays near chance. Pass the logits and drop
     the softmax before the loss.

Found 1 finding in 1 file (1 checked).
"""

TWO_OPTIMIZERS = """\
import torch

opt_d = torch.optim.SGD(critic.parameters(), lr=0.01)
opt_g = torch.optim.SGD(gen.parameters(), lr=0.01)

for x in loader:
    opt_d.zero_grad()
    loss_d = critic(x).mean() - critic(gen(z).detach()).mean()
    loss_d.backward()
    opt_d.step()
    loss_g = -critic(gen(z)).mean()
    loss_g.backward()
    opt_g.step()
"""


@pytest.mark.parametrize("flag", [("--output-format", "full"), ("--format", "full"), ("--show-source",)])
def test_full_output_snapshot(project, run_cli, flag):
    write(project / "train.py", (FIXTURES / "LT102" / "bad_forward_returns_softmax.py").read_text(encoding="utf-8"))
    code, out, err = run_cli("--isolated", "--no-cache", "--color", "never", *flag, "train.py")
    assert (code, err) == (1, "")
    assert out == FULL_LT102


def test_concise_output_snapshot_is_the_default(project, run_cli):
    write(project / "gan.py", TWO_OPTIMIZERS)
    expected = (
        "gan.py:13:5: LT201 opt_g steps in a training loop (line 6) that never calls opt_g.zero_grad()\n"
        "Found 1 finding in 1 file (1 checked).\n"
    )
    for flags in ((), ("--output-format", "concise"), ("--format", "text")):
        code, out, _ = run_cli("--isolated", "--no-cache", *flags, "gan.py")
        assert (code, out) == (1, expected)
    _, full, _ = run_cli("--isolated", "--no-cache", "--output-format", "full", "gan.py")
    assert full.splitlines()[:4] == [
        "gan.py:13:5: LT201 opt_g steps in a training loop (line 6) that never calls opt_g.zero_grad()",
        "13 |     opt_g.step()",
        "   |     ^^^^^^^^^^^^",
        "   = The loop clears the gradients of other optimizers only, so backward() keeps adding",
    ]
    assert "Call opt_g.zero_grad() before the backward()" in " ".join(line.strip() for line in full.splitlines())


def test_full_output_wraps_and_keeps_the_explanation_without_a_source_line():
    from lintorch import formats
    from lintorch.rule import Finding, Severity

    finding = Finding(
        "gone.py", 3, 1, 3, 5, "LT201", "missing-zero-grad", Severity.ERROR, "short message",
        explanation="word " * 60 + "end.",
    )
    stream = io.StringIO()
    formats.write_text([finding], stream, 1, full=True)
    lines = stream.getvalue().splitlines()
    assert lines[0] == "gone.py:3:1: LT201 short message"
    assert lines[1].startswith("  = word word") and all(line.startswith("    word") for line in lines[2:-2])
    assert max(len(line) for line in lines[1:-2]) <= formats.EXPLANATION_WIDTH
    assert " ".join(line.strip(" =") for line in lines[1:-2]).split() == ["word"] * 60 + ["end."]


def test_json_has_the_message_and_the_explanation(project, run_cli):
    write(project / "gan.py", TWO_OPTIMIZERS)
    _, out, _ = run_cli("--isolated", "--no-cache", "--format", "json", "gan.py")
    [item] = json.loads(out)
    assert list(item) == [
        "path", "line", "column", "end_line", "end_column", "code", "name", "severity", "message", "explanation",
    ]
    assert item["message"] == "opt_g steps in a training loop (line 6) that never calls opt_g.zero_grad()"
    assert item["explanation"].startswith("The loop clears the gradients of other optimizers only")


def test_cached_findings_keep_the_explanation(project, run_cli):
    write(project / "gan.py", TWO_OPTIMIZERS)
    first = run_cli("--isolated", "--format", "json", "gan.py")
    assert list((project / ".lintorch_cache").rglob("v*-2"))  # written, in the current row format
    second = run_cli("--isolated", "--format", "json", "gan.py")
    assert first == second and json.loads(second[1])[0]["explanation"].startswith("The loop clears")


def test_sarif_result_message_is_concise_with_the_explanation_as_markdown(project, run_cli):
    write(project / "train.py", (FIXTURES / "LT102" / "bad_forward_returns_softmax.py").read_text(encoding="utf-8"))
    _, out, _ = run_cli("--isolated", "--no-cache", "--format", "sarif", "train.py")
    [result] = json.loads(out)["runs"][0]["results"]
    assert result["message"]["text"] == "CrossEntropyLoss receives softmax output (Net.forward, line 14)"
    markdown = result["message"]["markdown"]
    head, body = markdown.split("\n\n")
    assert head == "CrossEntropyLoss receives softmax output (Net.forward, line 14)"
    # Markdown would read log\_softmax's underscores as emphasis: they are escaped.
    assert body.startswith("The softmax comes from nn.Softmax() returned by Net.forward. CrossEntropyLoss applies log\\_softmax")


def test_github_annotations_stay_one_concise_line(project, run_cli):
    write(project / "gan.py", TWO_OPTIMIZERS)
    _, out, _ = run_cli("--isolated", "--no-cache", "--format", "github", "gan.py")
    assert out.splitlines() == [
        "::error file=gan.py,line=13,col=5,endLine=13,endColumn=17,title=LT201 missing-zero-grad::"
        "opt_g steps in a training loop (line 6) that never calls opt_g.zero_grad()"
    ]


def test_flake8_shows_the_concise_message(tmp_path):
    pytest.importorskip("flake8")
    target = tmp_path / "train.py"
    target.write_bytes((FIXTURES / "LT102" / "bad_forward_returns_softmax.py").read_bytes())
    result = subprocess.run(
        [sys.executable, "-m", "flake8", "--select", "LT", "train.py"], capture_output=True, text=True, cwd=tmp_path
    )
    assert result.stdout.splitlines() == [
        "train.py:27:26: LT102 CrossEntropyLoss receives softmax output (Net.forward, line 14)"
    ], result.stderr


def test_rule_command_explains_and_lt401_says_backward_hooks_get_tuples(run_cli):
    code, out, _ = run_cli("rule", "LT401")
    assert code == 0
    assert "**Why is this bad?** A forward hook runs during the forward pass" in out
    flat = " ".join(out.split())
    assert "`grad_input` and `grad_output` are tuples of tensors: read `grad_output[0]`" in flat


def test_lt401_finding_says_backward_hooks_get_tuples():
    findings = [f for f in lint_text((FIXTURES / "LT401" / "bad_grad_named_params.py").read_text(encoding="utf-8"))]
    assert findings and all(f.code == "LT401" for f in findings)
    for finding in findings:
        assert "treats its arguments as gradients" in finding.message
        assert "with tuples of tensors, so read grad_output[0]" in finding.explanation


def test_cross_file_messages_are_short_too(tmp_path):
    """Findings that name another file of the project (``line 9 of
    models/classifier.py``) keep the one-line limit, not counting that
    file's path, which is the user's own."""
    import shutil

    shutil.copytree(FIXTURES / "projects", tmp_path / "projects")
    result = subprocess.run(
        [sys.executable, "-m", "lintorch", "--isolated", "--no-cache", "--select", "ALL", "--output-format", "json", "."],
        cwd=tmp_path / "projects", capture_output=True, text=True, timeout=300,
    )
    findings = [f for f in json.loads(result.stdout) if f["code"] != "LT000"]
    assert any(" of " in f["message"] and ".py)" in f["message"] for f in findings)  # some name another file
    problems = []
    for f in findings:
        other_file = re.search(r" of ([\w./-]+\.py)\)", f["message"])
        length = len(f["message"]) - (len(other_file.group(1)) if other_file else 0)
        if length > MAX_MESSAGE or "\n" in f["message"] or f["message"].endswith("."):
            problems.append(f"{f['path']}:{f['line']} {f['code']}: {f['message']}")
        if len(f["explanation"]) < 40 or not f["explanation"].endswith("."):
            problems.append(f"{f['path']}:{f['line']} {f['code']} explanation: {f['explanation']!r}")
    assert not problems, "\n".join(problems)

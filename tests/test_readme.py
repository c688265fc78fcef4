"""The README's rule table is generated from rule metadata."""

import re

from conftest import REPO
from lintorch import output, registry

TABLE_RE = re.compile(r"<!-- rules:start[^>]*-->\n(.*?)<!-- rules:end -->", re.S)


def test_readme_rule_table_is_up_to_date():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    match = TABLE_RE.search(readme)
    assert match, "README lacks the rules:start/rules:end markers"
    expected = output.rule_table_markdown(registry.all_rules())
    assert match.group(1) == expected, (
        "README rule table is stale: replace it with the output of `lintorch rule --all --format table`"
    )

"""Regenerate the README's rule table from rule metadata."""

import re
from pathlib import Path

from lintorch import output, registry

README = Path(__file__).resolve().parent.parent / "README.md"
TABLE_RE = re.compile(r"(<!-- rules:start[^>]*-->\n)(.*?)(<!-- rules:end -->)", re.S)

text = README.read_text(encoding="utf-8")
table = output.rule_table_markdown(registry.all_rules())
README.write_text(TABLE_RE.sub(lambda m: m.group(1) + table + m.group(3), text), encoding="utf-8")
print(f"rule table: {len(registry.all_rules())} rules")

"""Every written rule is cited by at least one test (specs/session.md, specs/protocol.md)."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TESTS = "\n".join(
    path.read_text(encoding="utf-8")
    for path in sorted((ROOT / "tests").glob("test_*.py"))
    if path.name != "test_specs.py"
)


def rules(spec: str) -> list[str]:
    text = (ROOT / "specs" / spec).read_text(encoding="utf-8")
    # session.md: "- **R5** ..."; protocol.md: "**P5 Title.** ..." and "### P6 `open`"
    found = re.findall(r"^(?:- \*\*|\*\*|### )([A-Z]\d+)\b", text, flags=re.MULTILINE)
    return list(dict.fromkeys(found))


@pytest.mark.parametrize("spec", ["session.md", "protocol.md"])
def test_every_rule_is_cited_by_a_test(spec: str) -> None:
    found = rules(spec)
    assert found, f"no rule IDs found in {spec}"
    uncited = [
        rule for rule in found if not re.search(rf"(\btest_{rule.lower()}_|\b{rule}\b)", TESTS)
    ]
    assert not uncited, f"rules of {spec} that no test cites: {uncited}"

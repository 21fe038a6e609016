"""The public API is what the docs say it is: one public ``__init__`` with ``__all__``."""

import re
from pathlib import Path

import fsm_session

ROOT = Path(__file__).resolve().parent.parent


def test_all_names_exist() -> None:
    for name in fsm_session.__all__:
        assert hasattr(fsm_session, name), name


def test_all_is_sorted_and_unique() -> None:
    assert list(fsm_session.__all__) == sorted(set(fsm_session.__all__))


def test_readme_imports_only_public_names() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    imported = re.findall(r"from fsm_session import ([\w, ]+)", readme)
    assert imported, "the README shows how to import the library"
    for group in imported:
        for name in (n.strip() for n in group.split(",")):
            assert name in fsm_session.__all__, name


def test_every_error_of_the_spec_is_exported() -> None:
    spec = (ROOT / "specs" / "session.md").read_text(encoding="utf-8")
    table = spec[spec.index("## Errors") : spec.index("## The SDK's names")]
    for name in re.findall(r"`(\w+)`", table):
        if name[0].isupper() and name not in ("ValueError", "TypeError"):
            assert name in fsm_session.__all__, name


def test_the_service_surface_is_what_the_readme_says() -> None:
    """Every public member of SessionService is in the README's table, and nothing more."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme[
        readme.index("<!-- service-surface:begin -->") : readme.index(
            "<!-- service-surface:end -->"
        )
    ]
    documented = set()
    for row in table.splitlines()[4:]:
        first = row.split("|")[1] if row.startswith("|") else ""
        documented.update(re.findall(r"`(\w+)", first))
    public = {name for name in dir(fsm_session.SessionService) if not name.startswith("_")}
    assert documented == public

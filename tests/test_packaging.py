"""What a package index and a fresh clone see: the README's links work off the repository, the
metadata is complete, the license and changelog are there, and ``make demo`` installs only what
the demo needs."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

import fsm_session

ROOT = Path(__file__).resolve().parent.parent
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def pyproject() -> dict[str, Any]:
    with (ROOT / "pyproject.toml").open("rb") as file:
        project: dict[str, Any] = tomllib.load(file)["project"]
    return project


def repository() -> str:
    source: str = pyproject()["urls"]["Source"]
    return source.rstrip("/")


def test_project_urls_name_the_repository_its_issues_and_changelog() -> None:
    urls = pyproject()["urls"]
    assert repository().startswith("https://github.com/")
    assert urls["Issues"] == f"{repository()}/issues"
    assert urls["Changelog"] == f"{repository()}/blob/main/CHANGELOG.md"


def test_readme_links_are_absolute_and_point_at_files_of_the_project() -> None:
    """On a package index the README is shown alone: a relative link or image breaks there."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = LINK.findall(readme)
    assert targets
    owner_repo = repository().removeprefix("https://github.com/")
    ours = (
        f"{repository()}/blob/main/",
        f"https://raw.githubusercontent.com/{owner_repo}/main/",
    )
    for target in targets:
        assert re.match(r"https?://", target), f"a relative link: {target}"
        for prefix in ours:
            if target.startswith(prefix):
                path = target.removeprefix(prefix).partition("#")[0]
                assert (ROOT / path).is_file(), f"{target} names no file of the project"


def test_the_license_file_is_the_mit_license_the_metadata_names() -> None:
    assert pyproject()["license"] == "MIT"
    assert pyproject()["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License") and "Permission is hereby granted" in text


def test_classifiers_match_the_supported_pythons() -> None:
    classifiers = pyproject()["classifiers"]
    minimum = pyproject()["requires-python"].removeprefix(">=")
    versions = sorted(
        (int(c.rsplit(".", 1)[1]) for c in classifiers if re.fullmatch(r".*:: 3\.\d+", c)),
    )
    assert versions and f"3.{versions[0]}" == minimum
    assert "Typing :: Typed" in classifiers and (ROOT / "fsm_session" / "py.typed").exists()
    assert not any(c.startswith("License ::") for c in classifiers)  # PEP 639: the SPDX field.


def test_the_changelog_has_a_section_for_this_version() -> None:
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert re.search(rf"^## \[{re.escape(fsm_session.__version__)}\]", changelog, re.MULTILINE)


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_demo_installs_the_package_without_extras(tmp_path: Path) -> None:
    """What ``make demo`` would run in a fresh clone, without running it."""
    done = subprocess.run(
        ["make", "--no-print-directory", "-n", "-B", "demo", f"VENV={tmp_path / 'venv'}"],
        cwd=ROOT,
        # Not as a sub-make of `make test`, whose flags would be inherited.
        env={k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    installs = [line for line in done.stdout.splitlines() if " pip install " in line]
    assert installs[-1].endswith(" -e ."), installs
    assert not any("[" in line for line in installs), installs
    assert done.stdout.splitlines()[-1].endswith("fsm-session demo")


def test_the_demo_imports_none_of_the_test_tools() -> None:
    """The demo runs on the run-time dependencies alone."""
    extras = {
        re.split(r"[<>=!~\[ ]", requirement)[0].replace("-", "_").lower()
        for requirement in pyproject()["optional-dependencies"]["test"]
    }
    probe = (
        "import io, sys, contextlib\n"
        "from fsm_session.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    status = main(['demo'])\n"
        f"extras = {sorted(extras)!r}\n"
        "print(status, sorted(m for m in sys.modules if m.split('.')[0] in extras))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "0 []\n"

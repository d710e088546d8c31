"""The README and its docs/ pages: every docs/ page is linked from the README, every relative
link and image of each page resolves, and every script in experiments/ answers --help."""

import re
import subprocess
import sys

import pytest

from conftest import REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)|src=\"([^\"]+)\"")
LIBRARIES = {"common.sh", "help.sh"}  # sourced by the study scripts, not run
SCRIPTS = sorted(p for p in (REPO / "experiments").iterdir()
                 if p.suffix in (".py", ".sh") and p.name not in LIBRARIES)


def relative_links(page):
    """The page's link and image targets that are files of the repository (no URL, no anchor)."""
    targets = [a or b for a, b in LINK.findall(page.read_text())]
    return [t.split("#")[0] for t in targets if not re.match(r"[a-z]+:", t) and t.split("#")[0]]


def test_every_docs_page_is_linked_from_the_readme():
    linked = {(REPO / t).resolve() for t in relative_links(REPO / "README.md")}
    assert [p.name for p in PAGES[1:] if p.resolve() not in linked] == []


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_resolves(page):
    missing = [t for t in relative_links(page) if not (page.parent / t).exists()]
    assert missing == []


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_every_experiment_script_answers_help(script):
    command = [sys.executable] if script.suffix == ".py" else ["bash"]
    done = subprocess.run([*command, str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "usage" in done.stdout.lower()

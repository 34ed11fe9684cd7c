"""The README and BENCHMARKS.md link into docs/ and into each other; GitHub renders them, and the
`mkdocs build --strict` (the last test here) checks only docs/, so their relative links are checked here too."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def github_anchor(heading: str) -> str:
    """GitHub's anchor for a heading (mkdocs.yml's toc slugify makes the same ones)."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"(?ms)^```.*?^```", "", path.read_text())
    return {github_anchor(h) for h in re.findall(r"(?m)^#{1,6} (.+)$", text)}


def relative_links(path: Path) -> list[str]:
    text = re.sub(r"(?ms)^```.*?^```", "", path.read_text())
    return [t for t in LINK.findall(text) if not re.match(r"[a-z]+:", t)]


@pytest.mark.parametrize("name", ["README.md", "BENCHMARKS.md"])
def test_every_relative_link_reaches_a_file_and_heading(name: str) -> None:
    source = ROOT / name
    broken = []
    for target in relative_links(source):
        file_part, _, anchor = target.partition("#")
        file = (source.parent / file_part) if file_part else source
        if not file.exists() or (anchor and file.suffix == ".md" and anchor not in anchors(file)):
            broken.append(target)
    assert not broken, f"{name}: broken links {broken}"


def test_the_check_catches_a_missing_heading(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# Where we depart from the papers\n\n[a](#where-we-depart-from-the-papers) [b](#gone)\n")
    targets = [t.partition("#")[2] for t in relative_links(page)]
    assert [t in anchors(page) for t in targets] == [True, False]


def test_the_guide_builds_with_no_broken_link_or_page_left_out_of_its_nav(tmp_path: Path) -> None:
    """mkdocs' strict build fails on a broken link, a missing anchor or a page not in `nav`. No
    `-q`: with it mkdocs 1.6 exits 0 even on those warnings."""
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert build.returncode == 0, build.stderr[-3000:]

"""docs/method.md is the repository's statement of the method: every citation of it resolves to one
of its sections, and nothing cites a file outside the repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
METHOD = ROOT / "docs" / "method.md"
CITATION = re.compile(r"docs/method\.md §(\d+(?:\.\d+)?)(?:\s*(?:-|and|to)\s*§?(\d+(?:\.\d+)?))?")
OUTSIDE = re.compile(r"PERL_SPEC|/work/|\.\./shared|reference/(?:perl_paper_notes|protocol)\.md|protocol\.md")


def _sources() -> list[Path]:
    files = [ROOT / "README.md", ROOT / "dvc.yaml", *sorted((ROOT / "docs").glob("*.md"))]
    for folder, pattern in (("src", "*.py"), ("tests", "*.py"), ("conf", "*.yml"), ("notebooks", "*.ipynb")):
        files += sorted((ROOT / folder).rglob(pattern))
    return [f for f in files if f.is_file() and f != Path(__file__).resolve()]


def _sections() -> set[str]:
    heads = re.findall(r"^#{2,3} (\d+(?:\.\d+)?)\.? ", METHOD.read_text(encoding="utf-8"), flags=re.M)
    return set(heads)


def test_method_doc_has_numbered_sections() -> None:
    sections = _sections()
    assert {str(n) for n in range(1, 9)} <= sections
    assert {"2.3", "2.4", "6.2", "6.7"} <= sections


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_citations_resolve_and_stay_inside_the_repository(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert not OUTSIDE.search(text), f"{path} cites a file outside the repository"
    sections = _sections()
    for match in CITATION.finditer(text):
        for number in filter(None, match.groups()):
            assert number in sections, f"{path}: docs/method.md §{number} does not exist"


def test_the_code_cites_the_method_doc() -> None:
    cited = [p for p in _sources() if "docs/method.md §" in p.read_text(encoding="utf-8")]
    assert len(cited) >= 10


def test_ci_runs_the_readme_test_command() -> None:
    """CI runs exactly what the README tells a contributor to run (lint, then every test)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    command = re.search(r"# 2\. .*\n(.*pytest.*)\n", readme).group(1)
    assert command.endswith("uv run --frozen pytest --durations=25")  # every log names its slowest tests
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert command.replace("pip install uv", "pip install --quiet uv") in ci
    assert not re.search(r"pytest.* (-m|-k) ", command)  # nothing is deselected in CI


def test_the_readme_is_short_and_its_links_resolve() -> None:
    """A newcomer reads the README in minutes; the rest lives in docs/, every link to it resolves."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 200
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(
            r"\]\(([\w./-]+\.(?:md|ipynb|yml|py))(?:#[^)]*)?\)", path.read_text(encoding="utf-8")
        ):
            assert (path.parent / target).exists(), f"{path.name} links to {target}, which does not exist"

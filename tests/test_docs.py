"""README.md, CHANGELOG.md and docs/**/*.md: every relative link resolves (file and #anchor, GitHub's heading slugs),
every `docs/...` path a command names exists, nothing points outside the repository, and no page narrates how the
project was developed."""

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PAGES = [REPO / "README.md", REPO / "CHANGELOG.md", *sorted((REPO / "docs").rglob("*.md"))]

FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(([^()\s]+)(?:\s+\"[^\"]*\")?\)")
DOCS_PATH = re.compile(r"(?<![\w./:-])docs/[\w.\-/]*")  # not `git show <commit>:docs/...`
OUTSIDE = re.compile(r"\.\./shared/|(?<![\w/])shared/\w|ROADMAP_SPEC")
# How the project was developed belongs in no page: sessions, issues, pilots named by number.
NARRATIVE = re.compile(r"\bsessions?\b|\bissue \d+|\bthe issue's\b|\bpilot P\d", re.IGNORECASE)


def heading_slugs(markdown: str) -> set[str]:
    """The #anchors GitHub gives a page's headings: lower case, punctuation dropped, spaces to hyphens, -1, -2 ...
    for repeats."""
    slugs, seen = set(), {}
    for line in FENCE.sub("", markdown).splitlines():
        match = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", match.group(1))  # a link's text stays, its target goes
        slug = re.sub(r"[^\w\- ]", "", text.replace("`", "").replace("*", "").strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        slugs.add(slug if count == 0 else f"{slug}-{count}")
    return slugs


def problems(page: Path, repo: Path) -> list[str]:
    """What is wrong with one page's links and paths, one line each."""
    markdown = page.read_text()
    found = [f"refers outside the repository: {m.group(0)!r}" for m in OUTSIDE.finditer(markdown)]
    found += [f"development narrative: {m.group(0)!r}" for m in NARRATIVE.finditer(markdown)]
    prose = CODE_SPAN.sub("", FENCE.sub("", markdown))
    for target in LINK.findall(prose):
        if re.match(r"[a-z][a-z+.-]*:", target):  # https:, mailto:
            continue
        path_part, _, anchor = target.partition("#")
        path = (page.parent / path_part).resolve() if path_part else page
        if not path.is_relative_to(repo.resolve()):
            found.append(f"link outside the repository: {target}")
        elif not path.exists():
            found.append(f"link to a missing file: {target}")
        elif anchor and (path.suffix != ".md" or anchor not in heading_slugs(path.read_text())):
            found.append(f"link to a missing anchor: {target}")
    for match in DOCS_PATH.finditer(markdown):
        named = match.group(0).rstrip(".")
        if not (repo / named).exists():
            found.append(f"names a path that does not exist: {named}")
    return found


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_link_and_path_of_the_page_resolves(page):
    assert page.is_file(), f"{page.relative_to(REPO)} is listed but missing"
    assert problems(page, REPO) == []


def test_the_checker_catches_what_it_should(tmp_path):
    (tmp_path / "docs" / "studies" / "a").mkdir(parents=True)
    (tmp_path / "docs" / "studies" / "a" / "results.csv").write_text("")
    (tmp_path / "docs" / "other.md").write_text("# Other page\n\n## The study: on `x`, 3 seeds (n = 3)\n\n## Again\n"
                                                "\n## Again\n")
    page = tmp_path / "docs" / "page.md"
    page.write_text(
        "# Page\n\n"
        "[fine](other.md) [fine](other.md#the-study-on-x-3-seeds-n--3) [fine](other.md#again-1) [fine](#page)\n"
        "![fine](studies/a/results.csv) [web](https://example.org/x#y) `[not a link](nowhere.md)`\n"
        "```bash\npython -m analysis docs/studies/a/results.csv   # [not a link](nowhere.md)\n```\n"
        "[broken](missing.md) [broken anchor](other.md#nope) [outside](../../elsewhere.md)\n"
        "see ../shared/ROADMAP_SPEC.md, as issue 19 asked in the session before\n"
        "`git show abc1234:docs/old/results.csv` reads a moved file from its commit\n"
        "```bash\npython -m analysis docs/a/results.csv\n```\n")
    assert problems(page, tmp_path) == [
        "refers outside the repository: '../shared/'",
        "refers outside the repository: 'ROADMAP_SPEC'",
        "development narrative: 'issue 19'",
        "development narrative: 'session'",
        "link to a missing file: missing.md",
        "link to a missing anchor: other.md#nope",
        "link outside the repository: ../../elsewhere.md",
        "names a path that does not exist: docs/a/results.csv",
    ]


def test_the_imagenet_study_commands_name_every_step_it_runs():
    import csv

    from roadmap import STEPS

    page = (REPO / "docs" / "distributed.md").read_text()
    loop = re.search(r"for step in (.*?); do", page, re.DOTALL).group(1).replace("\\\n", " ").split()
    assert loop == [step.name for step in STEPS]
    with open(REPO / "analysis" / "paper_roadmap.csv") as f:
        papers = [row["step"] for row in csv.DictReader(f) if row["roadmap"] == "tiny" and row["paper_acc1"]]
    only_paper = re.search(r"Only the paper's (\d+) steps: add `\+step=([\w,]+)`", page)
    assert int(only_paper.group(1)) == len(papers) and only_paper.group(2).split(",") == papers
    assert f"{len(STEPS)} steps" in page and f"**{3 * len(STEPS)} runs**" in page

"""Every Markdown file renders as meant (cmarkgfm, GitHub's own renderer): no heading that came
from inside what was meant as a code block, no broken relative link or anchor, and every
repository path the docs name exists."""

from __future__ import annotations

import html
import re
import subprocess
from pathlib import Path

import cmarkgfm
import pytest

ROOT = Path(__file__).resolve().parent.parent
_HEADING = re.compile(r"<h([1-6])>(.*?)</h\1>", re.DOTALL)
_LINK = re.compile(r'<a href="([^"]+)"')
_CODE = re.compile(r"<code>([^<]+)</code>")
_PATH = re.compile(
    r"^(?:proxy|hostinfo|tests|deploy|bench|scripts|docs)/[\w./-]*$|^(?:README\.md|pyproject\.toml|config\.example\.toml)$"
)
OTHER_PROJECTS = ROOT / "tests" / "data"
"""Attributions of data copied from other projects: the paths they name are those projects'."""


def markdown_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "*.md"], cwd=ROOT, capture_output=True, text=True, check=False)
    found = [ROOT / p for p in listed.stdout.split()] if listed.returncode == 0 else []
    found += [p for p in ROOT.glob("docs/*.md") if p not in found]  # new files not yet added
    return sorted(set(found) | {ROOT / "README.md"})


def render(path: Path) -> str:
    return str(cmarkgfm.github_flavored_markdown_to_html(path.read_text()))


def heading_texts(rendered: str) -> list[str]:
    return [html.unescape(re.sub(r"<[^>]+>", "", text)).strip() for _, text in _HEADING.findall(rendered)]


def slug(text: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    found = set()
    for text in heading_texts(render(path)):
        base = slug(text)
        n = seen.get(base, 0)
        found.add(base if n == 0 else f"{base}-{n}")
        seen[base] = n + 1
    return found


def meant_headings(source: str) -> list[str]:
    """The headings a writer meant: ``#`` lines outside every fence, wherever the fence is indented."""
    meant, fenced = [], False
    for line in source.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(r"#{1,6} ", line):
            meant.append(line.lstrip("#").strip())
    return meant


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_heading_comes_from_inside_a_code_block(path: Path) -> None:
    meant = {re.sub(r"[`*_]", "", h) for h in meant_headings(path.read_text())}
    for text in heading_texts(render(path)):
        assert re.sub(r"[`*_]", "", text) in meant, f"{path.name}: heading {text!r} came from inside a code block"


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_and_anchors_exist(path: Path) -> None:
    for href in _LINK.findall(render(path)):
        href = html.unescape(href)
        if re.match(r"^[a-z]+:", href):
            continue  # another site: not checked here (no network)
        target, _, anchor = href.partition("#")
        file = (path.parent / target).resolve() if target else path
        assert file.exists(), f"{path.name}: link to {target} which does not exist"
        if anchor and file.suffix == ".md":
            assert anchor in anchors(file), f"{path.name}: {href}: no such heading in {file.name}"


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_repository_path_named_exists(path: Path) -> None:
    if path.is_relative_to(OTHER_PROJECTS):
        return
    for code in _CODE.findall(render(path)):
        name = html.unescape(code).strip().rstrip("/").split(":")[0]
        if _PATH.match(name) and not re.search(r"[*<>{}]", name):
            assert (ROOT / name).exists() or (path.parent / name).exists(), f"{path.name}: `{name}` does not exist"


def test_the_configuration_reference_lists_every_key_with_its_default() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("config_reference", ROOT / "scripts" / "config_reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.table() in (ROOT / "docs" / "configuration.md").read_text()

"""The README's architecture map names every module the tree has, so it cannot drift."""

from __future__ import annotations

from tests.support import REPO


def test_the_architecture_map_names_every_module() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    start = readme.index("\ncluster/ ")
    block = readme[start : readme.index("```", start)]
    named = {line.split()[0] for line in block.splitlines() if line.strip()}
    modules = {
        path.name
        for package in ("cluster", "media")
        for path in (REPO / package).rglob("*.py")
        if path.name not in ("__init__.py", "__main__.py")
    }
    assert not modules - named, f"the README's map lacks {sorted(modules - named)}"

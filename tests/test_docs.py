"""The docs stand alone: links resolve, nothing points outside the repository, the front page is short,
lists every console script and shows the test command CI runs. Fast: no subprocess, no torch."""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Generated folders at the top level (run outputs, embedded data, benchmark results) and tool folders anywhere.
SKIP_TOP = {"outputs", "multirun", "data", "bench-results", "build", "dist", "wandb"}
SKIP_ANYWHERE = {".git", ".venv", "node_modules", ".pytest_cache", "__pycache__", ".mypy_cache", ".ruff_cache"}
TEXT_SUFFIXES = {".md", ".py", ".yaml", ".yml", ".toml", ".sh"}
TEXT_NAMES = {"Makefile"}
# Files of the steering folder beside the repository; spelled in parts so this line names none of them.
FORBIDDEN = tuple("".join(parts) for parts in (("..", "/shared"), ("REFERENCE", ".md"), ("DESIGN", ".md")))
THIS_FILE = Path(__file__).resolve()


def _files(select) -> list[Path]:
    """Files of the repository (walked, skipping generated and environment folders)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(ROOT):
        top = Path(dirpath) == ROOT
        dirnames[:] = [d for d in dirnames if d not in SKIP_ANYWHERE and not (top and d in SKIP_TOP)
                       and not d.endswith(".egg-info")]
        for name in filenames:
            path = Path(dirpath) / name
            if select(path):
                found.append(path)
    return sorted(found)


def _markdown_files() -> list[Path]:
    return _files(lambda p: p.suffix == ".md")


def _text_files() -> list[Path]:
    return _files(lambda p: p.suffix in TEXT_SUFFIXES or p.name in TEXT_NAMES or p.parent.name == ".ci")


# [text](target) and ![alt](target); the target ends at whitespace or ')'. Code spans and fenced
# blocks are removed first, so `[a](b)` inside backticks is not a link.
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
CODE_SPAN = re.compile(r"`[^`\n]*`")


def _links(text: str) -> list[str]:
    text = FENCE.sub("", text)
    text = CODE_SPAN.sub("", text)
    return LINK.findall(text)


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_markdown_files_found():
    names = {_rel(p) for p in _markdown_files()}
    assert "README.md" in names, names


@pytest.mark.parametrize("md", _markdown_files(), ids=_rel)
def test_relative_links_and_images_resolve(md: Path):
    broken = []
    for target in _links(md.read_text(encoding="utf-8")):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("#"):
            continue  # http(s), mailto, ...; in-page anchors
        path = target.split("#", 1)[0].split("?", 1)[0]
        if not path:
            continue
        resolved = (ROOT / path.lstrip("/")) if path.startswith("/") else (md.parent / path)
        if not resolved.exists():
            broken.append(target)
        elif ROOT not in resolved.resolve().parents and resolved.resolve() != ROOT:
            broken.append(f"{target} (outside the repository)")
    assert not broken, f"{_rel(md)}: broken relative links/images: {broken}"


def test_no_reference_outside_the_repository():
    offenders = []
    for path in _text_files():
        if path.resolve() == THIS_FILE:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for lineno, line in enumerate(text.splitlines(), 1):
            for needle in FORBIDDEN:
                if needle in line:
                    offenders.append(f"{_rel(path)}:{lineno}: {needle}")
    assert not offenders, "references to files outside the repository:\n" + "\n".join(offenders)


def test_readme_is_a_front_page():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 300, f"README.md has {len(lines)} lines; move details to the pages it links to"


def test_readme_lists_every_console_script():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = [name for name in scripts if not re.search(rf"`{re.escape(name)}`", readme)]
    assert scripts, "pyproject.toml has no [project.scripts]"
    assert not missing, f"README.md does not list console scripts {missing} from pyproject.toml [project.scripts]"


def test_readme_test_command_is_what_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    commands = [line.strip() for line in ci.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert "make test" in commands, f".ci/run does not call `make test`: {commands}"
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    fenced = "\n".join(block for block in re.findall(r"```[a-z]*\n(.*?)```", readme, re.S))
    shown = [line.split("#", 1)[0].strip() for line in fenced.splitlines()]
    assert "make test" in shown, "README.md does not show the test command `make test` (what .ci/run runs)"
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^test:", makefile, re.M), "Makefile has no `test` target"

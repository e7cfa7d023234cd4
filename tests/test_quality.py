"""Lint, type and structure checks run as part of the test suite, so CI fails on any.

ruff and mypy run from this interpreter's environment (``python -m``), so they are
found in a virtualenv that is not activated. ruff takes well under a second. mypy
takes about 15 s without its cache (``.mypy_cache``, under a second with it), so it
is started when this module is collected and runs beside the other tests; its test
only waits for the result.
"""

from __future__ import annotations

import ast
import atexit
import functools
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

from conftest import ROOT

PACKAGE = ROOT / "src" / "pipdetect"

UPWARD_IMPORTS_ALLOWED: set[str] = set()
"""Modules allowed to import a name from the package root: none."""


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=240)


def _start_mypy() -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "mypy", "--no-error-summary", "src/pipdetect"], cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    atexit.register(lambda: proc.poll() is None and proc.kill())  # if its test never ran
    return proc


_MYPY = _start_mypy()


def test_ruff_clean():
    if importlib.util.find_spec("ruff") is None:
        pytest.fail("ruff is not installed: pip install '.[test]'")
    result = _run(sys.executable, "-m", "ruff", "check", "src", "tests", "models", "examples",
                  "training")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_clean():
    out, _ = _MYPY.communicate(timeout=240)
    assert _MYPY.returncode == 0, out


# --------------------------------------------------------------------------- imports


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[str, str, int]]:
    """Every import of pipdetect in ``path``, also inside functions and TYPE_CHECKING:
    (module imported, name imported or "", line)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            out += [(a.name, "", node.lineno) for a in node.names
                     if a.name.split(".")[0] == "pipdetect"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] == "pipdetect":
                out += [(target, a.name, node.lineno) for a in node.names]
    return out


@functools.cache
def _graph() -> dict[str, dict[str, list[tuple[str, int]]]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, dict[str, list[tuple[str, int]]]] = {m: {} for m in modules}
    for mod, path in modules.items():
        for target, name, line in _imports(path):
            # "from . import zoo" imports the submodule pipdetect.zoo
            full = f"{target}.{name}" if name and f"{target}.{name}" in modules else target
            graph[mod].setdefault(full, []).append((name, line))
    return graph


def test_no_import_cycles_between_modules():
    """Counting lazy and TYPE_CHECKING imports too; the package root (a facade that
    imports everything lazily) is left out, and nothing may import from it."""
    full = _graph()
    graph = {m: {t for t in deps if t in full and t != "pipdetect"}
             for m, deps in full.items() if m != "pipdetect"}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt):], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for mod in sorted(graph):
        if mod not in state:
            visit(mod, [mod])
    assert cycles == []


def test_no_module_imports_from_the_package_root():
    upward = {mod: lines for mod, deps in _graph().items() if mod != "pipdetect"
              for target, lines in deps.items() if target == "pipdetect"}
    assert set(upward) <= UPWARD_IMPORTS_ALLOWED, upward


def test_no_module_uses_another_modules_private_names():
    """No ``from .x import _y`` and no ``obj._y`` on anything but ``self`` / ``cls``
    (private modules such as ``_version`` may be imported inside the package)."""
    found = []
    for path in PACKAGE.rglob("*.py"):
        mod = _module_name(path)
        for target, name, line in _imports(path):
            if name.startswith("_") and not name.startswith("__"):
                found.append(f"{mod}:{line} imports {target}.{name}")
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_")
                    and not node.attr.startswith("__")
                    and not (isinstance(node.value, ast.Name)
                             and node.value.id in ("self", "cls", "pickle"))):
                found.append(f"{mod}:{node.lineno} uses {ast.unparse(node)}")
    assert found == []


def test_detector_does_not_know_the_front_ends():
    """track.py and results.py see the detector only through its stage API
    (pipdetect.stages), and the detector never imports results or the CLI; its
    ``track`` method delegates to pipdetect.track lazily, which is no cycle because
    track.py does not import the detector."""
    graph = _graph()
    for front in ("pipdetect.track", "pipdetect.results"):
        assert "pipdetect.detector" not in graph[front], front
        assert "pipdetect.stages" in graph[front], front
    assert not {"pipdetect.results", "pipdetect.cli"} & set(graph["pipdetect.detector"])


# --------------------------------------------------------------------------- version


def test_version_is_written_once():
    import pipdetect
    from pipdetect._version import __version__

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"]
    assert "version" in project["project"]["dynamic"]
    attr = project["tool"]["setuptools"]["dynamic"]["version"]["attr"]
    assert attr == "pipdetect._version.__version__"
    assert pipdetect.__version__ == __version__
    assert re.fullmatch(r"\d+\.\d+\.\d+([.-]?\w+)?", __version__)
    written = [p for p in PACKAGE.rglob("*.py")
               if re.search(r"^__version__\s*=", p.read_text("utf-8"), re.M)]
    assert written == [PACKAGE / "_version.py"]


# --------------------------------------------------------------------------- design notes


def test_citations_of_the_design_notes_point_at_real_sections():
    """Code and tests cite docs/design.md by section ("docs/design.md §3"); the old
    citations of an out-of-tree design file are gone (benchmarks/ and convert/ are
    checked by their owners)."""
    design = (ROOT / "docs" / "design.md").read_text("utf-8")
    sections = {int(n) for n in re.findall(r"^## (\d+)\. ", design, re.M)}
    cited, stale = set(), []
    for folder in ("src", "tests", "models", "examples", "docs"):
        for path in (ROOT / folder).rglob("*"):
            if path.suffix not in (".py", ".md") or "convert" in path.parts:
                continue
            text = path.read_text("utf-8")
            if re.search(r"(?<!docs/)" + "DESIGN" + r"\.md", text):
                stale.append(str(path.relative_to(ROOT)))
            cited |= {int(n) for n in re.findall(r"docs/design\.md\s+§(\d+)", text)}
    assert stale == []
    assert cited and cited <= sections, cited - sections

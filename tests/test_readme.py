"""The README is a front page and docs/ holds the rest: short, linked, and in step.

* the README stays <= 300 lines and says the important things in its first screen;
* every relative link and #anchor in the README and in docs/ resolves;
* the README's accuracy and speed tables are the docs' tables, row for row;
* the speed table of docs/accuracy-and-speed.md is what benchmarks/results.json (the last
  full bench.py run) says, and docs/video.md's speed table what video_results.json says;
* nobody is told to ``pip install "pipdetect[...]"``: pipdetect is not on a package index.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conftest import ROOT, load_script

README = ROOT / "README.md"
DOCS = ROOT / "docs"
ACCURACY_AND_SPEED = DOCS / "accuracy-and-speed.md"
PAGES = [README, *sorted(DOCS.glob("*.md"))]


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    return text[start:] if end < 0 else text[start:end]


def _table_rows(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines()
            if line.startswith("|") and not set(line) <= set("|-: ")]


def _speed_table() -> dict[str, str]:
    section = _section(ACCURACY_AND_SPEED.read_text(), "## ResNet-18")
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and re.search(r"\d", cells[1]):
            rows[cells[0]] = cells[1]
    return rows


def test_speed_table_matches_results_json() -> None:
    results = json.loads((ROOT / "benchmarks" / "results.json").read_text())
    face = results["models"]["r18-wflw"]["per_face_ms"]
    photo = results["photos"]["photos"]["640x480, 1 face"]
    expected = {
        "session.run": face["raw"],
        "pipdetect, box given": face["box"],
        "PyTorch reference": face["torch"],
        "int8": face["int8_box"],
        "face detection included": photo["r18-wflw"]["ms"],
        "detection_size=320": photo["r18-wflw, detection_size=320"]["ms"],
    }
    rows = _speed_table()
    for key, value in expected.items():
        (row,) = [v for k, v in rows.items() if key in k]
        assert float(row.strip("*")) == round(value, 1), (key, row, value)
    (dlib,) = [v for k, v in rows.items() if "dlib" in k]
    assert dlib == (f"{photo['dlib (upsample 0)']['ms']:.1f} / "
                    f"{photo['dlib (upsample 1)']['ms']:.1f}")
    section = _section(ACCURACY_AND_SPEED.read_text(), "## ResNet-18")[:1500]
    assert results["meta"]["cpu_summary"] in section, "the page must name the CPU of the table"


def test_default_model_speed_table_matches_results_json() -> None:
    """The speed table of the default model's section (docs, and the README's copy) is the
    last full bench.py run: the bundled fp32 model (bench.py times its own int8 copy of every
    model, so it measures the fp32 one the default was quantised from), the ResNet-18 300W
    model and dlib on the same photo, on the CPU the page names; no estimated figure."""
    results = json.loads((ROOT / "benchmarks" / "results.json").read_text())
    photo = results["photos"]["photos"]["640x480, 1 face"]
    models = results["models"]
    expected = {
        "fp32 EfficientNet-Lite0 (`pipnet-lite0-300w`)": (
            models["pipnet-lite0-300w"]["per_face_ms"]["box"], photo["pipnet-lite0-300w"]["ms"],
            models["pipnet-lite0-300w"]["file_mb"]),
        "ResNet-18": (models["r18-300w"]["per_face_ms"]["box"], photo["r18-300w"]["ms"],
                      models["r18-300w"]["file_mb"]),
    }
    for page in (ACCURACY_AND_SPEED, README):
        heading = "## The default model" if page == ACCURACY_AND_SPEED else "## Speed"
        section = _section(page.read_text(), heading)
        assert results["meta"]["cpu_summary"] in " ".join(section.split()), page.name
        rows = {cells[0]: cells[1:] for cells in (
            [c.strip().strip("*") for c in line.strip().strip("|").split("|")]
            for line in _table_rows(section))}
        for name, (face, whole, mb) in expected.items():
            (cells,) = [v for k, v in rows.items() if k.startswith(name)]
            assert cells[:3] == [f"{face:.1f}", f"{whole:.1f}", f"{mb:.1f} MB"], (name, cells)
        (dlib,) = [v for k, v in rows.items() if k.startswith("dlib")]
        assert dlib[1] == f"{photo['dlib (upsample 0)']['ms']:.1f}", dlib
    for page in [*PAGES, ROOT / "benchmarks" / "README.md", ROOT / "training" / "README.md"]:
        # how estimated figures were marked; "the estimated probability" (confidence) and
        # "estimated from the landmarks" (pose) are methods, not figures
        found = re.findall(r"\(estimated|estimated,? not re-measured|estimated\)|"
                           r"\bestimated from th(?:e|at) (?:run|tuning)", page.read_text())
        assert not found, f"{page.name}: every figure is measured, found {found}"


def test_video_speed_table_matches_video_results_json() -> None:
    """docs/video.md's tracking speed table is benchmarks/video_bench.py's rendering of the
    "speed" section of benchmarks/video_results.json, which names the CPU."""
    bench = load_script(ROOT / "benchmarks" / "video_bench.py")
    results = json.loads((ROOT / "benchmarks" / "video_results.json").read_text())
    table = bench.speed_markdown(results)
    assert table in (DOCS / "video.md").read_text(), (
        "docs/video.md's speed table differs from benchmarks/video_results.json: "
        "python benchmarks/video_bench.py --speed --update-docs")
    if "speed" in results:
        assert results["speed"]["cpu_summary"] in table


@pytest.mark.parametrize(("results_file", "script", "table"), [
    ("photo_results.json", "photo_bench.py", "whole-photo"),
    ("heads_results.json", "heads_bench.py", "neighbour-heads"),
    ("threads_results.json", "threads_bench.py", "thread-settings"),
    ("isa_results.json", "isa_bench.py", "AVX2-kernels"),
])
def test_benchmark_table_matches_its_json(results_file: str, script: str, table: str) -> None:
    """docs/accuracy-and-speed.md's whole-photo tables (pipdetect against dlib, int8) and
    its table of the neighbour heads at the selected cells against full maps are what
    benchmarks/photo_bench.py and heads_bench.py printed into their JSON, CPU named."""
    results = json.loads((ROOT / "benchmarks" / results_file).read_text())
    assert results["cpu"] in results["markdown"]
    assert results["markdown"] in ACCURACY_AND_SPEED.read_text(), (
        f"docs/accuracy-and-speed.md's {table} table differs from "
        f"benchmarks/{results_file}: paste the markdown of the last {script} run")


def test_readme_is_a_front_page() -> None:
    text = README.read_text()
    assert len(text.splitlines()) <= 300
    first_screen = " ".join(text[: text.index("## What it is")].split())
    assert "research use only" in first_screen.lower()
    assert 'pip install ".[convert]"' in first_screen and "not published on PyPI" in first_screen
    assert "zoo is not published" in first_screen
    for heading in ("## Python API in one screen", "## Command line in one screen",
                    "## Accuracy", "## Speed"):
        assert heading in text, heading
    for heading in ("## Python API in one screen", "## Command line in one screen"):
        assert len(_section(text, heading).splitlines()) <= 50, f"{heading}: one screen"


def test_readme_tables_are_the_docs_tables() -> None:
    """The README's accuracy and speed tables are copies of the docs' (one source of truth)."""
    readme, docs = README.read_text(), ACCURACY_AND_SPEED.read_text()
    for heading in ("## Accuracy", "## Speed"):
        rows = _table_rows(_section(readme, heading))
        assert len(rows) >= 3, heading
        missing = [row for row in rows if row not in docs]
        assert not missing, f"README {heading} rows not in {ACCURACY_AND_SPEED.name}: {missing}"


def _anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    out = set()
    in_code = False
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            out.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return out


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_resolve(page: Path) -> None:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        file, _, anchor = target.partition("#")
        dest = (page.parent / file).resolve() if file else page
        if not dest.exists():
            broken.append(target)
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(target)
    assert not broken, f"{page.name}: broken links {broken}"


def test_every_docs_page_is_in_the_index() -> None:
    index = (DOCS / "README.md").read_text()
    for page in DOCS.glob("*.md"):
        if page.name != "README.md":
            assert f"]({page.name})" in index, f"docs/README.md does not list {page.name}"


def test_nobody_installs_from_a_package_index() -> None:
    """pipdetect is not on PyPI: extras install from the checkout, ".[convert]"."""
    files = [*PAGES, *(ROOT / "src").rglob("*.py"), *(ROOT / "examples").glob("*.py"),
             *(ROOT / "training").glob("*.md"), *(ROOT / "benchmarks").glob("*.md"),
             *(ROOT / "models").glob("*.md")]
    offenders = [str(f.relative_to(ROOT)) for f in files
                 if re.search(r"pip install ['\"]?pipdetect\b", f.read_text())]
    assert not offenders, offenders


def test_every_public_name_is_in_the_api_page() -> None:
    """docs/api.md is the reference: every name of ``pipdetect.__all__`` appears there."""
    import pipdetect

    page = (DOCS / "api.md").read_text()
    missing = [name for name in pipdetect.__all__ if f"`{name}" not in page]
    assert not missing, f"docs/api.md does not mention {missing}"


def test_the_first_five_minutes_of_the_api_page_run(tmp_path: Path) -> None:
    """The API page's first code block runs as written, from the checkout, and prints what
    its comments say."""
    import subprocess
    import sys

    page = (DOCS / "api.md").read_text()
    code = page[page.index("## First five minutes"):].split("```python\n", 1)[1].split("```")[0]
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Face(68 points 300w68, box=(" in out and "(1, 68, 2)" in out
    assert "no face found" in out
    assert not re.findall(r"\d\.\d{4,}", out), out

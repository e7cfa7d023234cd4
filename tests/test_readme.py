"""The README's speed table says what benchmarks/results.json (the last full bench.py run) says."""

from __future__ import annotations

import json
import re

from conftest import ROOT


def _speed_table() -> dict[str, str]:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Speed") :]
    section = section[: section.index("\n## ", 4)]
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
    section = (ROOT / "README.md").read_text().split("## Speed", 1)[1][:1500]
    assert "AMD EPYC Zen 4" in section, "the README must name the CPU the table was measured on"

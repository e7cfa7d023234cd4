"""benchmarks/bench.py --quick runs end to end on a tiny model and writes the JSON it documents.

No timing asserts: speed is reported by the benchmark, not tested.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from modelfactory import make_spec, random_model

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "bench.py"


def test_quick_run_writes_the_report(tmp_path, wflw_meanface):
    model = random_model(tmp_path / "tiny.onnx", make_spec(wflw_meanface))
    out = tmp_path / "results.json"
    md = tmp_path / "table.md"
    done = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--model", str(model), "--no-dlib",
         "--no-torch", "--out", str(out), "--markdown", str(md), "--workdir", str(tmp_path)],
        capture_output=True, text=True, timeout=240, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert {"meta", "models", "photos", "cold_start", "memory", "targets", "markdown"} <= set(
        report)
    meta = report["meta"]  # every figure names the CPU it was measured on
    cpu = meta["cpu_info"]
    assert {"model", "cores", "avx2", "avx512", "vnni", "amx", "int8_u8s8_saturates",
            "onnxruntime"} <= set(cpu)
    assert cpu["model"] == meta["cpu"] and cpu["cores"] == meta["cores"] >= 1
    assert cpu["onnxruntime"] == meta["onnxruntime"] and meta["cpu_summary"]
    assert "| CPU | cores | AVX2 | AVX-512 | VNNI | AMX |" in report["markdown"]
    assert f"| {meta['cpu']} | {meta['cores']} |" in done.stdout
    result = report["models"]["tiny"]
    per_face = result["per_face_ms"]
    for key in ("raw", "raw_ort_defaults", "box", "decoder_b1", "decoder_b64",
                "overhead_ratio", "decoder_pct_of_model", "int8_raw", "int8_box"):
        assert per_face[key] > 0, key
    assert "torch" not in per_face  # --no-torch (and a model file has no PyTorch twin)
    assert set(result["batches"]) == {"1", "4", "16", "64"}
    assert all(v["pipdetect_faces_per_s"] > 0 for v in result["batches"].values())
    assert result["int8_drift"]["faces"] >= 1
    assert result["int8_weights"] == {"reduce_range": True, "weight_range": [-64, 64]}
    photos = report["photos"]["photos"]
    assert len(photos) == 4 and all(row["tiny"]["ms"] > 0 for row in photos.values())
    assert photos["640x480, 1 face"]["tiny"]["faces"] == 1
    assert photos["640x480, 1 face"]["tiny, detection_size=320"]["faces"] == 1
    assert report["photos"]["dlib_skipped"] == "--no-dlib"
    reach = report["photos"]["face_reach_px"]  # YuNet only (--no-dlib)
    assert set(reach) == {"YuNet, detection_size=640", "YuNet, detection_size=320"}
    assert reach["YuNet, detection_size=640"] <= reach["YuNet, detection_size=320"]
    cold = report["cold_start"]
    assert cold["faces"] == 1 and cold["peak_rss_mb"] > 0 and cold["import_pipdetect_ms"] > 0
    assert len(report["targets"]) == 8
    assert {t["met"] for t in report["targets"]} <= {True, False, None}
    assert md.read_text().strip() == report["markdown"].strip()
    assert "| tiny |" in done.stdout


def test_heads_bench_rebuilds_the_full_map_form_exactly(tmp_path, wflw_meanface):
    """benchmarks/heads_bench.py times a model against its full-map form: the form it
    rebuilds is the network with the neighbour heads as full 1x1 convolutions, output for
    output (checked against a stand-in model written in that form with the same weights)."""
    import numpy as np

    from conftest import load_script
    from pipdetect.model import load_model

    heads_bench = load_script(BENCH.parent / "heads_bench.py")
    spec = make_spec(wflw_meanface[:19], num_nb=4, input_size=(96, 160), stride=32)
    at_cell = random_model(tmp_path / "cell.onnx", spec, seed=5, neighbours_at_cell=True)
    heads_bench.full_maps(at_cell, tmp_path / "rebuilt.onnx")
    rebuilt = load_model(tmp_path / "rebuilt.onnx")
    full = load_model(random_model(tmp_path / "full.onnx", spec, seed=5))
    assert not rebuilt.neighbours_at_cell
    x = np.random.default_rng(0).normal(size=(2, 3, 96, 160)).astype(np.float32)
    for got, want in zip(rebuilt.run(x), full.run(x), strict=True):
        np.testing.assert_array_equal(got, want)

"""Thread settings of pipdetect's two onnxruntime sessions, side by side on whole photos.

    python benchmarks/threads_bench.py --out benchmarks/threads_results.json
    python benchmarks/threads_bench.py --photos 10 --rounds 2      # a quick look

A whole photo runs two sessions one after the other: the face detector (YuNet), then
the landmark network. Whether their worker threads spin-wait for work, and when they
stop, decides how much of the two cores each gets. Spinning pools of one process
interfere with each other, so every setting runs in a child process of its own: each
round starts one child per setting, in a fresh random order, and each child reports
its best of ``--passes`` passes over the photos (``detect``, default settings otherwise).

Settings (landmark session; face-detector session):

* ``pipdetect``: as shipped (``pipdetect.model._session_options``): the landmark
  workers spin within a run and stop when it ends (``session.force_spinning_stop``);
  the face detector's never spin; both one thread per physical core;
* ``never spin, face detector on 1 thread``: pipdetect 0.3.0's settings;
* ``never spin``: both one thread per core, workers never spin;
* ``both spin within runs``: both spin within a run and stop when it ends;
* ``onnxruntime's default``: both spin, also for a while after each run;
* ``one shared pool``: ``pipdetect.set_global_threads(2)``, both sessions on
  onnxruntime's global pool, whose spinning the Python API cannot set (it spins, also
  after each run).

Reported per setting: ms per photo (median over rounds, and the slowest round: a
process whose threads contend shows there), time over ``pipdetect``'s (median of the
per-round ratios), process CPU time per photo (all threads); ms per face for the
photo's first face cut out by its box (``predict_crops``: one pass of the landmark
network alone, as in most frames of tracking) and its ratio; and the CPU time the
process used in the idle second after its last call. Photos: the one-face set of
``photo_bench.py`` (LFPW test photos scaled to 640 px, ``--data``, read in place), or the
bundled astronaut when that folder is absent. Names the CPU; prints Markdown;
``--out`` writes JSON.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import bench  # noqa: E402

SETTINGS: dict[str, dict[str, dict[str, Any]] | None] = {
    "pipdetect": None,
    "never spin, face detector on 1 thread": {
        "landmarks": {"spin": "0"}, "faces": {"spin": "0", "threads": 1}},
    "never spin": {"landmarks": {"spin": "0"}, "faces": {"spin": "0"}},
    "both spin within runs": {"landmarks": {"spin": "1", "stop": "1"},
                              "faces": {"spin": "1", "stop": "1"}},
    "onnxruntime's default": {"landmarks": {"spin": "1"}, "faces": {"spin": "1"}},
    "one shared pool (set_global_threads(2))": {"global": 2},
}
"""Per setting, the options of each session (``None``: pipdetect's own)."""
BASE = "pipdetect"


def photos(data: Path, count: int) -> tuple[list[np.ndarray], str]:
    """The photos every child times, and what they are."""
    sys.path.insert(0, str(HERE))
    sys.path.insert(0, str(ROOT / "training"))
    if data.is_dir():
        import photo_bench

        one_face = next(iter(photo_bench.photo_sets(data, count).values()))
        return [p for p, _ in one_face], f"{len(one_face)} LFPW test photos scaled to 640 px"
    import cv2

    astronaut = cv2.imread(str(ROOT / "examples" / "astronaut.jpg"), cv2.IMREAD_COLOR)
    return [astronaut], "examples/astronaut.jpg (512x512; no --data folder)"


def child(setting: str, data: Path, count: int, passes: int) -> dict[str, Any]:
    """Time one setting in this process (a fresh one: the sessions are made here)."""
    import pipdetect.model as model

    chosen = SETTINGS[setting]
    if chosen is not None and "global" in chosen:
        import pipdetect

        pipdetect.set_global_threads(chosen["global"])
    elif chosen is not None:  # benchmark only: replace pipdetect's options by the setting's
        original = model._session_options

        def options(ort: Any, threads: int | None, *, spin: bool = True) -> Any:
            made = original(ort, threads, spin=spin)
            mine = chosen["landmarks" if spin else "faces"]
            made.add_session_config_entry("session.intra_op.allow_spinning", mine["spin"])
            made.add_session_config_entry("session.force_spinning_stop", mine.get("stop", "0"))
            if "threads" in mine:
                made.intra_op_num_threads = mine["threads"]
            return made

        model._session_options = options  # type: ignore[assignment]
    from pipdetect import LandmarkDetector

    images, _ = photos(data, count)
    det = LandmarkDetector()
    crops = []  # each photo's first face, cut out by its box: one network pass each
    for image, faces in zip(images, map(det.detect, images), strict=True):
        if faces:
            x1, y1, x2, y2 = (max(0, round(v)) for v in faces[0].box)
            crops.append(image[y1 : y2 + 1, x1 : x2 + 1])
    best, best_crop, cpu = float("inf"), float("inf"), []
    for _ in range(passes):
        c0, t0 = time.process_time(), time.perf_counter()
        for image in images:
            det.detect(image)
        best = min(best, (time.perf_counter() - t0) / len(images))
        cpu.append((time.process_time() - c0) / len(images))
        t0 = time.perf_counter()
        for crop in crops:  # the landmark network alone, as in most frames of tracking
            det.predict_crops(crop)
        best_crop = min(best_crop, (time.perf_counter() - t0) / max(1, len(crops)))
    c0 = time.process_time()
    time.sleep(1.0)
    return {"ms_per_photo": best * 1000, "cpu_ms_per_photo": float(np.median(cpu)) * 1000,
            "ms_per_crop": best_crop * 1000, "idle_cpu_ms": (time.process_time() - c0) * 1000}


def default_model() -> str:
    """The name of the model ``LandmarkDetector()`` runs."""
    from pipdetect.zoo import DEFAULT_MODEL

    return DEFAULT_MODEL


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "lfpw_test")
    p.add_argument("--photos", type=int, default=30)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--passes", type=int, default=3)
    p.add_argument("--out", type=Path, default=None, help="write the JSON report here")
    p.add_argument("--child", choices=list(SETTINGS), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.data, args.photos, args.passes)))
        return 0

    from pipdetect._cpu import cpu_info, cpu_summary

    load_before = os.getloadavg()[0]
    rng = np.random.default_rng(0)
    names = list(SETTINGS)
    runs: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    for r in range(args.rounds):
        for i in rng.permutation(len(names)):
            cmd = [sys.executable, __file__, "--child", names[i], "--data", str(args.data),
                   "--photos", str(args.photos), "--passes", str(args.passes)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True)
            runs[names[i]].append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"round {r + 1}/{args.rounds}: "
              + ", ".join(f"{n} {runs[n][-1]['ms_per_photo']:.1f}" for n in names),
              file=sys.stderr, flush=True)
    base = np.array([x["ms_per_photo"] for x in runs[BASE]])
    base_crop = np.array([x["ms_per_crop"] for x in runs[BASE]])
    results = {}
    for name in names:
        ms = np.array([x["ms_per_photo"] for x in runs[name]])
        crop = np.array([x["ms_per_crop"] for x in runs[name]])
        results[name] = {
            "ms_per_photo": round(float(np.median(ms)), 2),
            "slowest_round_ms": round(float(ms.max()), 2),
            "time_over_pipdetect": round(float(np.median(ms / base)), 3),
            "ms_per_crop": round(float(np.median(crop)), 2),
            "crop_time_over_pipdetect": round(float(np.median(crop / base_crop)), 3),
            "cpu_ms_per_photo": round(float(np.median([x["cpu_ms_per_photo"]
                                                       for x in runs[name]])), 1),
            "idle_cpu_ms": round(float(np.median([x["idle_cpu_ms"] for x in runs[name]])), 1),
            "settings": SETTINGS[name],
            "rounds_ms": [round(float(v), 2) for v in ms],
        }
    report: dict[str, Any] = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join(["threads_bench.py", *(argv if argv is not None else sys.argv[1:])]),
        "cpu": cpu_summary(), "cpu_info": cpu_info(), "photos": photos(args.data, args.photos)[1],
        "model": default_model(),
        "rounds": args.rounds, "passes": args.passes, "results": results,
        "load_average_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }
    return bench.finish(report, markdown, args.out)


def markdown(report: dict[str, Any]) -> str:
    lines = [f"Measured {report['date']} on {report['cpu']}: `{report['model']}`, "
             f"{report['photos']}, "
             f"{report['rounds']} rounds, each setting in a process of its own per round "
             f"(best of {report['passes']} passes); load average before / after "
             f"{report['load_average_before_after']}.", "",
             "| setting | ms per photo | slowest round | time / pipdetect's | "
             "CPU ms per photo | one face's crop: ms | time / pipdetect's | "
             "CPU in the idle second after |",
             "|---|---|---|---|---|---|---|---|"]
    for name, r in report["results"].items():
        label = f"**{name}** (as shipped)" if name == BASE else name
        lines.append(f"| {label} | {r['ms_per_photo']:.1f} | {r['slowest_round_ms']:.1f} | "
                     f"{r['time_over_pipdetect']:.2f} | {r['cpu_ms_per_photo']:.1f} | "
                     f"{r['ms_per_crop']:.1f} | {r['crop_time_over_pipdetect']:.2f} | "
                     f"{r['idle_cpu_ms']:.0f} ms |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

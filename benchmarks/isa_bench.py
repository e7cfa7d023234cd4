"""fp32 and int8 with AVX-512 hidden: the kernels an AVX2-only CPU runs, timed on this CPU.

    python benchmarks/isa_bench.py --out benchmarks/isa_results.json
    python benchmarks/isa_bench.py --photos 10 --rounds 1          # a quick look

On x86, onnxruntime (MLAS), NumPy and OpenCV choose their kernels from what the CPUID
instruction reports. Linux can make CPUID trap in a process (``arch_prctl(ARCH_SET_CPUID,
0)``, on CPUs with CPUID faulting: the ``cpuid_fault`` flag of /proc/cpuinfo).
``hide_avx512.c``, compiled here and preloaded into a child process, answers every CPUID
with the AVX-512, VNNI, AVX-VNNI and AMX bits cleared, so each library in that process
takes the path it takes on an AVX2-only CPU (checked: NumPy reports no AVX-512 there, and
onnxruntime lays out its convolution weights as it does under valgrind, which emulates an
AVX2 CPU). The cores stay this CPU's: the figures are the AVX2 kernels' speed on these
cores, not an AVX2-only CPU's speed. They tell whether int8 beats fp32 with the kernels
such a CPU runs, and whether the landmarks depend on the kernels.

Each round starts one child per mode (``native``, ``AVX2 kernels``) in a fresh random
order; in a child the pipelines take turns every round (``bench.Timer``):

* ``pipdetect fp32`` (``pipnet-lite0-300w``) and ``pipdetect int8``
  (``pipnet-lite0-300w-int8``, the default model): ``detect(photo)``, default settings;
* one face's crop through each network (``predict_crops``), as in most frames of tracking;
* ``dlib`` (HOG upsample 0 + 68 points), when installed: its kernels are fixed when it is
  built, so hiding AVX-512 does not change them.

Photos: the one-face set of ``photo_bench.py`` (LFPW test photos scaled to 640 px,
``--data``, read in place), or the bundled astronaut when that folder is absent. Reported
per mode: medians over rounds; int8's speed-up over fp32 and dlib's time over each
(medians of paired per-round ratios); the largest difference of any landmark from the
native run's (pixels). Names the CPU; prints Markdown; ``--out`` writes JSON.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import bench  # noqa: E402

MODES = ("native", "AVX2 kernels")
INT8 = "pipnet-lite0-300w-int8"
FP32 = "pipnet-lite0-300w"


def hide_avx512_library(workdir: Path) -> tuple[Path | None, str | None]:
    """Compile ``hide_avx512.c``: (the .so, None) or (None, why it cannot be used here)."""
    if os.uname().machine != "x86_64":
        return None, f"not an x86-64 CPU ({os.uname().machine})"
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return None, "no /proc/cpuinfo (not Linux)"
    if "avx512f" not in flags:
        return None, "this CPU has no AVX-512: the native run is already the AVX2 one"
    if "cpuid_fault" not in flags:
        return None, "this CPU or kernel has no CPUID faulting (cpuid_fault)"
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        return None, "no C compiler (gcc)"
    out = workdir / "hide_avx512.so"
    subprocess.run([compiler, "-O2", "-shared", "-fPIC", "-o", str(out),
                    str(HERE / "hide_avx512.c")], check=True)
    return out, None


def child(data: Path, count: int, rounds: int, out: Path) -> dict[str, Any]:
    """Time the pipelines in this process; landmarks go to ``out`` (.npz)."""
    import photo_bench
    from numpy._core._multiarray_umath import __cpu_features__ as features

    from pipdetect import LandmarkDetector

    if data.is_dir():
        images = [p for p, _ in next(iter(photo_bench.photo_sets(data, count).values()))]
    else:
        import cv2

        images = [cv2.imread(str(ROOT / "examples" / "astronaut.jpg"), cv2.IMREAD_COLOR)]
    dets = {"pipdetect fp32": LandmarkDetector(FP32), "pipdetect int8": LandmarkDetector(INT8)}
    found = {k: [d.detect(img) for img in images] for k, d in dets.items()}
    crops = []  # each photo's first face (fp32's), cut out by its box
    for image, faces in zip(images, found["pipdetect fp32"], strict=True):
        if faces:
            x1, y1, x2, y2 = (max(0, round(v)) for v in faces[0].box)
            crops.append(image[y1 : y2 + 1, x1 : x2 + 1])
    run: dict[str, Any] = {}
    for name, det in dets.items():
        run[name] = lambda det=det: [det.detect(img) for img in images]
        run[f"{name}, one crop"] = lambda det=det: [det.predict_crops(c) for c in crops]
    dlib_run, _ = bench.dlib_pipeline()
    if dlib_run is not None:
        run["dlib"] = lambda: [dlib_run(img, 0) for img in images]
    samples = bench.Timer(rounds, block=0.0).run(run)
    per = {"pipdetect fp32": len(images), "pipdetect int8": len(images), "dlib": len(images),
           "pipdetect fp32, one crop": max(1, len(crops)),
           "pipdetect int8, one crop": max(1, len(crops))}
    np.savez(out, **{f"{k}|{i}|{j}": f.landmarks for k, faces in found.items()
                     for i, fs in enumerate(faces) for j, f in enumerate(fs)})
    return {"ms": {k: [s * 1000 / per[k] for s in v] for k, v in samples.items()},
            "sees": {k: bool(features.get(k)) for k in ("AVX2", "FMA3", "AVX512F",
                                                         "AVX512VNNI", "AVX512_SKX")}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "lfpw_test")
    p.add_argument("--photos", type=int, default=30)
    p.add_argument("--rounds", type=int, default=4, help="child processes per mode")
    p.add_argument("--inner", type=int, default=3, help="timed rounds inside each child")
    p.add_argument("--out", type=Path, default=None, help="write the JSON report here")
    p.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.data, args.photos, args.inner, args.child)))
        return 0

    from pipdetect._cpu import cpu_info, cpu_summary

    load_before = os.getloadavg()[0]
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="isa-bench-") as tmp:
        library, skipped = hide_avx512_library(Path(tmp))
        modes = list(MODES) if library is not None else ["native"]
        runs: dict[str, list[dict[str, Any]]] = {m: [] for m in modes}
        landmarks: dict[str, dict[str, np.ndarray]] = {}
        for r in range(args.rounds):
            for i in rng.permutation(len(modes)):
                mode = modes[i]
                env = dict(os.environ)
                if mode != "native":
                    env["LD_PRELOAD"] = str(library)
                out = Path(tmp) / f"{r}-{i}.npz"
                cmd = [sys.executable, __file__, "--child", str(out), "--data", str(args.data),
                       "--photos", str(args.photos), "--inner", str(args.inner)]
                done = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
                runs[mode].append(json.loads(done.stdout.strip().splitlines()[-1]))
                with np.load(out) as z:
                    landmarks.setdefault(mode, {k: z[k] for k in z.files})
            bench.log(f"round {r + 1}/{args.rounds}")
    results = {}
    for mode in modes:
        ms = {k: np.concatenate([np.asarray(x["ms"][k]) for x in runs[mode]])
              for k in runs[mode][0]["ms"]}
        row: dict[str, Any] = {
            "sees": runs[mode][0]["sees"],
            "ms": {k: round(float(np.median(v)), 2) for k, v in ms.items()},
            "int8_speed_up": round(float(np.median(ms["pipdetect fp32"]
                                                   / ms["pipdetect int8"])), 3),
            "int8_speed_up_one_crop": round(float(np.median(
                ms["pipdetect fp32, one crop"] / ms["pipdetect int8, one crop"])), 3),
        }
        if "dlib" in ms:
            row["dlib_over"] = {k: round(float(np.median(ms["dlib"] / ms[k])), 3)
                                for k in ("pipdetect fp32", "pipdetect int8")}
        native, mine = landmarks["native"], landmarks[mode]
        same_faces = native.keys() == mine.keys()
        row["same_faces_as_native"] = same_faces
        row["largest_landmark_difference_px"] = (
            max((float(np.abs(native[k] - mine[k]).max()) for k in native), default=0.0)
            if same_faces else None)
        results[mode] = row
    report: dict[str, Any] = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join(["isa_bench.py", *(argv if argv is not None else sys.argv[1:])]),
        "cpu": cpu_summary(), "cpu_info": cpu_info(), "rounds": args.rounds,
        "inner_rounds": args.inner, "avx2_mode_skipped": skipped,
        "photos": (f"{args.photos} LFPW test photos scaled to 640 px" if args.data.is_dir()
                   else "examples/astronaut.jpg"),
        "results": results,
        "load_average_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }
    return bench.finish(report, markdown, args.out)


def markdown(report: dict[str, Any]) -> str:
    lines = [f"Measured {report['date']} on {report['cpu']}: {report['photos']}; "
             f"{report['rounds']} processes per mode taking turns, {report['inner_rounds']} "
             f"interleaved rounds in each; load average before / after "
             f"{report['load_average_before_after']}.", ""]
    if report["avx2_mode_skipped"]:
        lines += [f"AVX2 kernels not measured: {report['avx2_mode_skipped']}.", ""]
    lines += ["| kernels | fp32 ms per photo | int8 ms per photo | int8 speed-up | "
              "fp32 ms per crop | int8 ms per crop | int8 speed-up | dlib ms per photo | "
              "dlib time / fp32's | dlib time / int8's | landmarks against native |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for mode, r in report["results"].items():
        ms, dlib = r["ms"], r.get("dlib_over")
        diff = ("-" if mode == "native" else "other faces" if r["largest_landmark_difference_px"]
                is None else f"≤ {r['largest_landmark_difference_px']:.2g} px")
        lines.append(
            f"| {mode} | {ms['pipdetect fp32']:.1f} | {ms['pipdetect int8']:.1f} | "
            f"{r['int8_speed_up']:.2f}x | {ms['pipdetect fp32, one crop']:.1f} | "
            f"{ms['pipdetect int8, one crop']:.1f} | {r['int8_speed_up_one_crop']:.2f}x | "
            + (f"{ms['dlib']:.1f} | {dlib['pipdetect fp32']:.2f}x | "
               f"{dlib['pipdetect int8']:.2f}x" if dlib else "- | - | -")
            + f" | {diff} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

"""A folder of images -> a Parquet dataset of facial landmarks, on Ray Data.

    pip install ".[ray]"          # in the pipdetect checkout
    python examples/ray_batch.py photos/ -o landmarks/                    # default model
    python examples/ray_batch.py photos/ -o landmarks/ --model my.onnx --actors 4 --threads 1
    python examples/ray_batch.py --benchmark                              # numbers, see below

The images are those the command line reads from the folder (by extension, sorted;
sub-folders only with ``-r``); other files are left alone, not counted as failures.
A local Ray instance is started quietly (warnings only, bound to 127.0.0.1) unless
Ray is already running. One row per image, the CLI's JSON document of it (source,
width, height, model, scheme, num_landmarks, faces with box, crop, score, landmarks
and per-landmark scores) plus ``error``; read it back with ``pandas.read_parquet("landmarks/")``.
Bad files become rows with ``error`` set; the exit status is 1 if any failed.

``--benchmark`` makes ~200 photos from the bundled astronaut (scaled, flipped,
tiled with 2 faces, brightness changes; JPEG) and times the same folder with
the single-process CLI, the Python API (``detect_batch``) and Ray Data with 1
actor and one actor per core (1 thread each), in interleaved rounds. Without
``--model`` it builds a ResNet-18 WFLW PIP-Net with random weights through
``pipdetect.convert`` (needs ``torch``; same size and speed as the official
model, no accuracy). The numbers of a run are in ``docs/scaling.md``.

Settings: ``--threads`` onnxruntime threads per actor, ``--actors`` actors;
keep ``actors x threads <= CPU cores`` (each actor reserves ``threads`` CPUs).
The read and write tasks are given 0 CPUs (they only move bytes; decoding is
done by the actors), so they can run while the actors hold every core.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def start_ray(num_cpus: int | None = None) -> bool:
    """Start a quiet local Ray instance bound to 127.0.0.1, unless Ray is already running
    (then it is used as it is). Returns whether this call started it."""
    import ray

    if ray.is_initialized():
        return False
    ray.init(address="local", num_cpus=num_cpus, include_dashboard=False,
             _node_ip_address="127.0.0.1",  # a local instance listens on loopback only
             log_to_driver=False, logging_level="error")
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)  # no INFO line per dataset
    # nor a warning that the progress bars, switched off just above, are off
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)
    return True


def run_ray(
    folder: Path, output: Path, model: str | None, *, actors: int, threads: int, batch_size: int,
    recursive: bool = False,
) -> float:
    """Landmark the images of ``folder`` into Parquet at ``output``; returns the wall time in
    seconds. The images are those the command line would read (``find_images``: by
    extension, sub-folders only when ``recursive``); other files are not read."""
    import ray

    from pipdetect.integrations.ray import detect_landmarks
    from pipdetect.video import find_images

    start = time.perf_counter()
    paths = [str(p) for p in find_images(folder, recursive)]
    # Reads and writes get 0 CPUs (the actors hold the cores; these only move bytes)
    # and at most one task per actor (0-CPU tasks would otherwise each start a worker).
    ds = ray.data.read_binary_files(paths, include_paths=True, num_cpus=0, concurrency=actors)
    landmarks = detect_landmarks(ds, model, actors=actors, threads=threads, batch_size=batch_size)
    landmarks.write_parquet(str(output), ray_remote_args={"num_cpus": 0}, concurrency=actors)
    return time.perf_counter() - start


def run_cli(folder: Path, output: Path, model: str, *, threads: int | None) -> float:
    """The single-process command line on the same folder (one JSON file per image)."""
    cmd = [sys.executable, "-m", "pipdetect", str(folder), "-o", str(output), "-q", "-m", model]
    if threads is not None:
        cmd += ["--threads", str(threads)]
    start = time.perf_counter()
    subprocess.run(cmd, check=False, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def run_api(folder: Path, model: str, *, threads: int, batch_size: int) -> float:
    """The Python API in one process: detect_batch over batches of ``batch_size`` files."""
    from pipdetect import LandmarkDetector

    start = time.perf_counter()
    det = LandmarkDetector(model, threads=threads)
    from pipdetect.video import find_images

    paths = find_images(folder)
    for i in range(0, len(paths), batch_size):
        det.detect_batch(paths[i : i + batch_size])
    return time.perf_counter() - start


def make_photos(folder: Path, count: int, seed: int = 0) -> None:
    """``count`` JPEG photos derived from the bundled astronaut, some with two faces."""
    rng = np.random.default_rng(seed)
    base = cv2.imread(str(HERE / "astronaut.jpg"))
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        img = base[:, ::-1] if rng.random() < 0.5 else base
        side = int(rng.integers(320, 900))
        img = cv2.resize(img, (side, side), interpolation=cv2.INTER_AREA)
        if rng.random() < 0.25:
            img = np.hstack([img, img[:, ::-1]])
        img = cv2.convertScaleAbs(img, alpha=float(rng.uniform(0.7, 1.2)), beta=0)
        cv2.imwrite(str(folder / f"photo_{i:04d}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 90])


def random_r18_model(workdir: Path) -> str:
    """A ResNet-18 WFLW PIP-Net with random weights, converted by pipdetect.convert."""
    try:
        import torch
    except ImportError:
        sys.exit("--benchmark without --model needs torch (pip install torch) to build a model")
    sys.path.insert(0, str(ROOT / "tests"))
    from pipdetect.convert import convert_checkpoint
    from torch_reference import make_pipnet

    pth, onnx = workdir / "random-r18.pth", workdir / "random-r18-wflw.onnx"
    torch.save(make_pipnet("resnet18", 98, 10, seed=0).state_dict(), pth)
    convert_checkpoint(pth, onnx, backbone="resnet18", dataset="WFLW", name="random-r18-wflw")
    return str(onnx)


def benchmark(args: argparse.Namespace) -> int:
    import ray

    work = Path(tempfile.mkdtemp(prefix="pipdetect-ray-bench-"))
    folder = work / "photos"
    make_photos(folder, args.count)
    one = work / "one"
    one.mkdir()
    first = sorted(folder.iterdir())[0]
    (one / first.name).write_bytes(first.read_bytes())
    model = args.model or random_r18_model(work)
    cores = os.cpu_count() or 1
    print(f"{args.count} photos in {folder}, model {model}, {cores} CPU cores")
    print("load average before: {:.1f} {:.1f} {:.1f}".format(*os.getloadavg()))

    started = start_ray(num_cpus=cores)
    bs = args.batch_size
    variants: dict[str, Callable[[Path], float]] = {
        "CLI, 1 thread": lambda o: run_cli(folder, o, model, threads=1),
        f"CLI, default threads ({cores})": lambda o: run_cli(folder, o, model, threads=None),
        "API detect_batch, 1 thread": lambda o: run_api(folder, model, threads=1, batch_size=bs),
        "Ray, 1 actor x 1 thread": lambda o: run_ray(
            folder, o, model, actors=1, threads=1, batch_size=bs
        ),
        f"Ray, {args.actors} actors x 1 thread": lambda o: run_ray(
            folder, o, model, actors=args.actors, threads=1, batch_size=bs
        ),
        # Fixed cost: starting an actor and loading the model, for one photo.
        "Ray, 1 actor, 1 photo only": lambda o: run_ray(
            one, o, model, actors=1, threads=1, batch_size=bs
        ),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    for r in range(args.repeats):  # interleaved, so a busy neighbour hits all alike
        for v, (name, fn) in enumerate(variants.items()):
            times[name].append(fn(work / f"out-{r}-{v}"))
            print(f"  round {r + 1}: {name}: {times[name][-1]:.1f} s", flush=True)
    if started:
        ray.shutdown()

    print(f"\n| variant | wall time (median of {args.repeats}) | images/s |")
    print("|---|---|---|")
    for name, ts in times.items():
        med = statistics.median(ts)
        count = 1 if name.endswith("1 photo only") else args.count
        print(f"| {name} | {med:.1f} s | {count / med:.1f} |")
    print("load average after: {:.1f} {:.1f} {:.1f}".format(*os.getloadavg()))
    shutil.rmtree(work, ignore_errors=True)
    print("\n(wall time includes model loading and, for Ray, starting the actors)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", type=Path, help="folder of images")
    parser.add_argument("-r", "--recursive", action="store_true",
                        help="also the images of sub-folders (as pipdetect -r)")
    parser.add_argument("-o", "--output", type=Path, default=Path("landmarks"))
    parser.add_argument("--model", default=None, help="model file or zoo name")
    parser.add_argument(
        "--actors", type=int, default=max(1, os.cpu_count() or 1), help="default: one per core"
    )
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime threads per actor")
    parser.add_argument("--batch-size", type=int, default=16, help="images per actor call")
    parser.add_argument("--benchmark", action="store_true", help="time API vs Ray (see docs)")
    parser.add_argument("--count", type=int, default=200, help="photos for --benchmark")
    parser.add_argument("--repeats", type=int, default=3, help="rounds for --benchmark")
    args = parser.parse_args(argv)
    if args.benchmark:
        return benchmark(args)
    if args.folder is None or not args.folder.is_dir():
        parser.error("give a folder of images (or --benchmark)")
    from pipdetect.video import find_images

    if not find_images(args.folder, args.recursive):
        print(f"no images in {args.folder}" + ("" if args.recursive else
              " (sub-folders are read with -r)"), file=sys.stderr)
        return 1

    import ray

    started = start_ray()
    try:
        seconds = run_ray(args.folder, args.output.resolve(), args.model, actors=args.actors,
                          threads=args.threads, batch_size=args.batch_size,
                          recursive=args.recursive)
    finally:
        if started:
            ray.shutdown()
    import pyarrow.parquet as pq

    table = pq.read_table(args.output, columns=["source", "faces", "error"]).to_pandas()
    failed = table["error"].notna()
    faces = int(table["faces"].dropna().map(len).sum())
    print(
        f"{len(table)} images, {faces} faces, {int(failed.sum())} failed, "
        f"{seconds:.1f} s -> {args.output}/"
    )
    for _, row in table[failed].iterrows():
        print(f"  {row['source']}: {row['error']}")
    return 1 if failed.any() else 0


if __name__ == "__main__":
    sys.exit(main())

"""Command line: ``pipdetect IMAGE|FOLDER|VIDEO ...`` and ``pipdetect convert ...``.

Exit status: 0 when every input was processed, 1 when some input failed (each
failure is reported on stderr and skipped), 2 for usage errors and when no model
could be loaded. The result formats are documented in :mod:`pipdetect.results`.

The parts, in the order a run uses them: :func:`build_parser` (arguments),
``_plan`` (inputs and where their results go: ``_Plan``), ``_load_detector``, one
runner per input kind (``_Images``; ``_Video`` for video files and ``_run_camera``
for the live preview), ``_Output`` (the writers: stdout, one file, one file per
input) and ``_Report`` (failures as they happen, the summary line at the end);
``_run`` wires them together.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from .detector import LandmarkDetector

__all__ = ["build_parser", "main"]

PROG = "pipdetect"

_EXAMPLES = """\
examples:
  pipdetect photo.jpg                          # landmarks of each face as JSON on stdout
  pipdetect photos/ -o results/ --draw         # JSON per image + annotated copies
  pipdetect clip.mp4 -o clip.json --draw clip_out.mp4
  pipdetect --camera 0                         # live preview (needs a display)
  pipdetect photo.jpg --points 68 --format csv
  pipdetect convert epoch59.pth --backbone resnet18 --dataset WFLW -o model.onnx

output:
  Without -o, results go to stdout (JSON or CSV). -o FILE.json/.csv/.npy writes one
  file (several inputs: a JSON array, or all CSV rows); -o DIR writes one file per
  input (DIR/<name>.json ...). Coordinates are original-image pixels, x right, y down,
  pixel centres at integers. JSON schema: python -c "import pipdetect.results as r;
  help(r)" or the README.

exit status: 0 all inputs done, 1 some input failed (reported and skipped),
  2 usage error or no model.
"""

_GET_A_MODEL = """\
Without --model pipdetect uses its bundled default model (no network needed). For
another model, either
  * pass --model with the path of a pipdetect .onnx file, or the name of a zoo model
    (pipdetect --list-models; downloaded once from the Hugging Face Hub once the zoo is
    published, which it is not yet), or
  * convert an official PIP-Net checkpoint yourself (no PyTorch needed):
      pipdetect convert epoch59.pth --backbone resnet18 --dataset WFLW -o model.onnx
    then run with --model model.onnx (see: pipdetect convert --help)."""

_DRAWABLE = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
_VIDEO_OUT = {".mp4", ".avi", ".mov", ".mkv", ".m4v"}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "convert":
        from .convert.cli import main as convert_main

        return convert_main(args[1:])
    try:
        return _run(args)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


# --------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``pipdetect`` (``pipdetect convert`` has its own)."""
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Facial landmarks with PIP-Net on onnxruntime: images, folders, videos "
        "and cameras. (Converting checkpoints: pipdetect convert --help.)",
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="*", metavar="INPUT",
                   help="image files, folders of images, or video files")
    p.add_argument("--camera", type=int, metavar="INDEX", default=None,
                   help="track faces live from camera INDEX (0: the default camera) in a "
                        "preview window; q or Esc quits. Needs a display")
    p.add_argument("--version", action="store_true", help="print the version and exit")
    p.add_argument("--list-models", action="store_true",
                   help="list the bundled default model and the zoo's names, and exit")

    out = p.add_argument_group("output")
    out.add_argument("-o", "--output", metavar="PATH", default=None,
                     help="file (.json, .csv, .npy) or folder to write results to "
                          "(default: stdout)")
    out.add_argument("--format", choices=("json", "csv", "npy"), default=None,
                     help="result format (default: from the -o file name, else json)")
    out.add_argument("--draw", nargs="?", const=True, default=None, metavar="PATH",
                     help="also write annotated images / videos: to PATH (a file for one "
                          "input, a folder for several) or, without PATH, as "
                          "<name>_landmarks.<ext> next to the results (or here)")
    out.add_argument("--draw-boxes", action="store_true", help="draw face boxes too")
    out.add_argument("--points", default=None, metavar="N|SCHEME",
                     help="return another landmark scheme, e.g. 68 (or 300w68) for the "
                          "68-point subset of a 98-point model")
    out.add_argument("-r", "--recursive", action="store_true",
                     help="look for images in sub-folders of folder inputs too")
    out.add_argument("-q", "--quiet", action="store_true",
                     help="no progress bar or summary (errors are still reported)")

    model = p.add_argument_group("model and face detection")
    model.add_argument("-m", "--model", default=None, metavar="FILE|NAME",
                       help="pipdetect .onnx file or model name (default: the bundled "
                            "pipnet-lite0-300w, no network needed)")
    model.add_argument("--threads", type=_positive_int, default=None, metavar="N",
                       help="onnxruntime threads (default: one per core)")
    model.add_argument("--batch-size", type=_positive_int, default=16, metavar="N",
                       help="faces per network call (default 16)")
    model.add_argument("--score-threshold", type=_fraction, default=0.6, metavar="S",
                       help="face detector confidence threshold in [0, 1] (default 0.6)")
    model.add_argument("--nms-threshold", type=_fraction, default=0.3, metavar="IOU",
                       help="face detector overlap (IoU) above which boxes merge (default 0.3)")
    model.add_argument("--max-faces", type=_positive_int, default=None, metavar="N",
                       help="keep at most N faces per image, the largest (default: all)")
    model.add_argument("--detection-size", type=_positive_int, default=640, metavar="PIXELS",
                       help="downscale images to this longest side for face detection only "
                            "(default 640; raise it for small faces in big photos)")
    model.add_argument("--box", type=_box, default=None, metavar="X1,Y1,X2,Y2",
                       help="face box in pixels: skip face detection (images) or start "
                            "tracking there (videos)")

    _add_video_options(p.add_argument_group("video"))
    return p


def _add_video_options(video: Any) -> None:
    """The options of video files and cameras (tracking and smoothing)."""
    from .track import DEFAULT_BETA, DEFAULT_MIN_CUTOFF

    video.add_argument("--no-track", action="store_true",
                       help="detect faces on every frame instead of tracking them (slower; "
                            "no track ids, no smoothing)")
    video.add_argument("--redetect-interval", type=_non_negative_int, default=10, metavar="N",
                       help="run the face detector at least every N frames to find new faces "
                            "(default 10; 0: only when a face is lost)")
    video.add_argument("--min-confidence", type=float, default=0.25, metavar="S",
                       help="mean landmark score below which a tracked face counts as lost "
                            "(default 0.25)")
    video.add_argument("--no-smooth", action="store_true",
                       help="no temporal smoothing of landmarks")
    video.add_argument("--smoothing", choices=("smooth", "responsive"), default="smooth",
                       help="smoothing preset (default smooth: about 4x less jitter on a still "
                            "face, no measured lag on pans; responsive: follows sudden motion "
                            "and expressions sooner); see benchmarks/video_bench.py")
    video.add_argument("--min-cutoff", type=float, default=None, metavar="HZ",
                       help="use the per-coordinate One Euro filter of earlier versions with "
                            f"this cutoff at rest, Hz (its default {DEFAULT_MIN_CUTOFF:g}; "
                            "lower is smoother)")
    video.add_argument("--beta", type=float, default=None, metavar="B",
                       help="use the per-coordinate One Euro filter of earlier versions with "
                            f"this speed coefficient per face size (its default "
                            f"{DEFAULT_BETA:g}; higher lags less)")


def _bounded(cast: Callable[[str], Any], low: float, high: float, what: str) -> Any:
    """An argparse ``type=`` that parses with ``cast`` and checks ``low <= value <= high``."""

    def parse(text: str) -> Any:
        try:
            value = cast(text)
        except ValueError:
            value = None
        if value is None or not low <= value <= high:  # NaN fails the comparison too
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


_positive_int = _bounded(int, 1, math.inf, "a positive integer")
_non_negative_int = _bounded(int, 0, math.inf, "an integer >= 0")
_fraction = _bounded(float, 0.0, 1.0, "a number in [0, 1]")


def _box(text: str) -> tuple[float, float, float, float]:
    try:
        values = [float(v) for v in text.replace(" ", "").split(",")]
    except ValueError:
        values = []
    if len(values) != 4 or not (values[2] > values[0] and values[3] > values[1]):
        raise argparse.ArgumentTypeError(
            f"expected X1,Y1,X2,Y2 pixels with X2 > X1 and Y2 > Y1, got {text!r}"
        )
    return values[0], values[1], values[2], values[3]


# --------------------------------------------------------------------------- console
class _Console:
    """Messages on stderr: errors always; progress (on a terminal) and summary unless quiet."""

    def __init__(self, quiet: bool, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.bar = not quiet and bool(getattr(self.stream, "isatty", lambda: False)())
        self._shown = False
        self._last = 0.0

    def error(self, message: str) -> None:
        self.clear()
        print(f"{PROG}: {message}", file=self.stream)

    def info(self, message: str) -> None:
        if not self.quiet:
            self.clear()
            print(message, file=self.stream)

    def progress(self, done: int, total: int | None, unit: str, label: str = "") -> None:
        """A one-line bar, redrawn at most 10 times a second (terminals only)."""
        if not self.bar:
            return
        now = time.monotonic()
        if now - self._last < 0.1 and (total is None or done < total):
            return
        self._last = now
        width = 30
        if total:
            filled = min(width, round(width * done / total))
            text = f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {unit}"
        else:
            text = f"{done} {unit}"
        if label:
            text += f"  {label}"
        self.stream.write("\r" + text[:120].ljust(80))
        self.stream.flush()
        self._shown = True

    def clear(self) -> None:
        if self._shown:
            self.stream.write("\r" + " " * 80 + "\r")
            self.stream.flush()
            self._shown = False


# --------------------------------------------------------------------------- report
class _Report:
    """What was done and what failed: failures go to the console at once, the counts
    to the summary line at the end."""

    def __init__(self, console: _Console) -> None:
        self.console = console
        self.images = 0
        self.videos = 0
        self.frames = 0
        self.detector_frames = 0
        self.faces = 0
        self.failed: list[str] = []

    def fail(self, name: str, reason: str) -> None:
        self.failed.append(name)
        if reason.startswith(f"{name}: "):
            reason = reason[len(name) + 2 :]
        self.console.error(f"skipping {name}: {reason}")

    def fail_with(self, name: str, exc: BaseException) -> None:
        """:meth:`fail` with the first line of an exception's message."""
        text = str(exc).strip() or type(exc).__name__
        self.fail(name, text.splitlines()[0])

    def summary(self, seconds: float) -> None:
        parts = []
        if self.images:
            parts.append(f"{self.images} image{'s' * (self.images != 1)}")
        if self.videos:
            parts.append(f"{self.videos} video{'s' * (self.videos != 1)} ({self.frames} "
                         f"frames, face detector on {self.detector_frames})")
        parts.append(f"{self.faces} face{'s' * (self.faces != 1)}")
        if self.failed:
            parts.append(f"{len(self.failed)} failed")
        per = f"{1000 * seconds / self.faces:.1f} ms per face, " if self.faces else ""
        self.console.info(f"{PROG}: {', '.join(parts)}; {per}{seconds:.2f} s in all")


# --------------------------------------------------------------------------- planning
@dataclass
class _Item:
    path: Path
    kind: str  # "image" | "video"
    rel: Path  # name relative to its folder input (for output names)


CAMERA_ITEM = _Item(Path("camera.mp4"), "video", Path("camera"))
"""What output names are made from for --camera (index -1)."""


class _UsageError(Exception):
    pass


@dataclass
class _Plan:
    """The inputs to process and where each one's results and drawings go."""

    items: list[_Item]
    many: bool
    """Several inputs (or a folder): -o FILE holds an array, --draw PATH is a folder."""
    fmt: str  # "json" | "csv" | "npy"
    out_mode: str  # "stdout" | "file" | "dir"
    out: Path | None
    draw: str | bool | None  # --draw: a path, True (next to the results) or None
    out_names: list[Path] = field(default_factory=list)
    """Output stems, one per item (``a`` for a.jpg, ``a.jpg`` when a.png exists too)."""

    def __post_init__(self) -> None:
        rels = [it.rel for it in self.items]
        stems = [r.with_suffix("") for r in rels]
        counts: dict[Path, int] = {}
        for s in stems:
            counts[s] = counts.get(s, 0) + 1
        self.out_names = [s if counts[s] == 1 else r for s, r in zip(stems, rels, strict=True)]

    def result_path(self, index: int) -> Path | None:
        """The file of item ``index``'s results with -o DIR (``-1``: the camera), else None."""
        if self.out_mode != "dir" or self.out is None:
            return None
        if index < 0:
            return self.out / f"camera.{self.fmt}"
        name = self.out_names[index]
        return self.out / name.parent / f"{name.name}.{self.fmt}"

    def draw_path(self, index: int, item: _Item) -> Path | None:
        """Where item ``index``'s drawing goes (``-1``: the camera), or None without --draw."""
        if self.draw is None:
            return None
        ext = item.path.suffix.lower()
        if item.kind == "video":
            ext = ext if ext in _VIDEO_OUT else ".mp4"
        else:
            ext = ext if ext in _DRAWABLE else ".png"
        name = self.out_names[index] if index >= 0 else Path("camera")
        file_name = name.parent / f"{name.name}_landmarks{ext}"
        if isinstance(self.draw, str):
            return Path(self.draw) if not self.many else Path(self.draw) / file_name
        if self.out_mode == "dir" and self.out is not None:
            base = self.out
        elif self.out_mode == "file" and self.out is not None:
            base = self.out.parent
        else:
            base = Path(".")
        return base / file_name

    def check_not_input(self, target: Path) -> None:
        if target.resolve() in {it.path.resolve() for it in self.items}:
            raise OSError(f"refusing to overwrite the input {target} with a drawing")


def _find_inputs(opts: argparse.Namespace, report: _Report) -> list[_Item]:
    """Files named on the command line and images in folders given (missing ones fail)."""
    from .video import IMAGE_EXTENSIONS, is_video_path

    items: list[_Item] = []
    for text in opts.inputs:
        path = Path(text)
        if path.is_dir():
            pattern = "**/*" if opts.recursive else "*"
            found = sorted(
                p for p in path.glob(pattern)
                if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
            )
            if not found:
                report.fail(str(path), "no images in this folder"
                            + ("" if opts.recursive else " (use -r for sub-folders)"))
            items += [_Item(p, "image", p.relative_to(path)) for p in found]
        elif not path.exists():
            report.fail(str(path), "no such file or folder")
        else:
            kind = "video" if is_video_path(path) else "image"
            items.append(_Item(path, kind, Path(path.name)))
    return items


def _plan(opts: argparse.Namespace, report: _Report) -> _Plan:
    """Inputs and output layout; raises :class:`_UsageError` for impossible outputs."""
    items = _find_inputs(opts, report)
    many = (len(opts.inputs) + (opts.camera is not None) > 1
            or any(Path(text).is_dir() for text in opts.inputs))
    out = None if opts.output is None else Path(opts.output)
    suffix = out.suffix.lower().lstrip(".") if out is not None else ""
    fmt = opts.format or (suffix if suffix in ("json", "csv", "npy") else "json")
    if out is None:
        mode = "stdout"
        if fmt == "npy":
            raise _UsageError("--format npy writes files: give -o FILE.npy or -o FOLDER")
    elif out.is_dir() or str(opts.output).endswith(("/", os.sep)) or not suffix:
        mode = "dir"
    else:
        mode = "file"
        if fmt == "npy" and many:
            raise _UsageError("one .npy file holds one input's landmarks: use -o FOLDER "
                              "for several inputs")
    return _Plan(items, many, fmt, mode, out, opts.draw)


# --------------------------------------------------------------------------- writers
class _Output:
    """Result documents to files or stdout: at once with -o DIR, else gathered and
    written by :meth:`finish` (one document, a JSON array, or CSV rows)."""

    def __init__(self, plan: _Plan) -> None:
        self.plan = plan
        self.records: list[dict[str, Any]] = []

    def emit(self, index: int, record: dict[str, Any]) -> None:
        """Item ``index``'s document (``-1``: the camera's)."""
        path = self.plan.result_path(index)
        if path is None:
            self.records.append(record)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        self._write(path, [record], single=True)

    def finish(self) -> None:
        plan, records = self.plan, self.records
        if plan.out_mode == "dir":
            return
        if plan.fmt == "npy" and not records:
            return
        if plan.fmt == "csv" and not records:
            if plan.out_mode == "file" and plan.out is not None:
                plan.out.parent.mkdir(parents=True, exist_ok=True)
                plan.out.write_text("", encoding="utf-8")
            return
        single = not plan.many and len(records) == 1
        if plan.out_mode == "file" and plan.out is not None:
            plan.out.parent.mkdir(parents=True, exist_ok=True)
            self._write(plan.out, records, single)
        elif records or plan.many:
            self._write(None, records, single)

    def _write(self, path: Path | None, records: list[dict[str, Any]], single: bool) -> None:
        from .results import csv_text, dumps, save_npy

        if self.plan.fmt == "npy":
            assert path is not None
            save_npy(path, records[0])
            return
        if self.plan.fmt == "csv":
            text = csv_text(records)
        else:
            text = dumps(records[0] if single else records) + "\n"
        if path is None:
            sys.stdout.write(text)
            sys.stdout.flush()
        else:
            path.write_text(text, encoding="utf-8")


# --------------------------------------------------------------------------- runners
@dataclass
class _Job:
    """What every runner needs: options, plan, detector, report and output."""

    opts: argparse.Namespace
    plan: _Plan
    det: LandmarkDetector
    report: _Report
    output: _Output

    @property
    def boxes(self) -> list[tuple[float, float, float, float]] | None:
        """--box as the one face box of an image or a first frame."""
        return None if self.opts.box is None else [self.opts.box]


class _Images:
    """Image inputs, in groups sent through the network together (``detect_batch``)."""

    def __init__(self, job: _Job) -> None:
        self.job = job
        self.index_of = {id(it): i for i, it in enumerate(job.plan.items)}

    def run(self, images: list[_Item]) -> None:
        from .errors import PipdetectError
        from .image import load_image

        job = self.job
        group = max(1, min(32, job.det.batch_size))
        for start in range(0, len(images), group):
            chunk = images[start : start + group]
            loaded = []
            for item in chunk:
                try:
                    loaded.append((item, load_image(item.path)))
                except (PipdetectError, OSError, ValueError) as exc:
                    job.report.fail_with(str(item.path), exc)
            if loaded:
                self._detect(loaded)
            job.report.console.progress(start + len(chunk), len(images), "images",
                                        f"{job.report.faces} faces")

    def _detect(self, loaded: list[tuple[_Item, Any]]) -> None:
        """Faces of loaded images, together; one by one if that fails (to name the bad one)."""
        from .errors import PipdetectError

        det, points = self.job.det, self.job.opts.points
        boxes = None if self.job.boxes is None else [self.job.boxes] * len(loaded)
        try:
            results = det.detect_batch([img for _, img in loaded], boxes=boxes, points=points)
        except (PipdetectError, ValueError):
            results = None
        for k, (item, img) in enumerate(loaded):
            try:
                faces = results[k] if results is not None else det.detect(
                    img, boxes=None if boxes is None else boxes[k], points=points)
                self._done(self.index_of[id(item)], item, img, faces)
            except (PipdetectError, OSError, ValueError) as exc:
                self.job.report.fail_with(str(item.path), exc)

    def _done(self, index: int, item: _Item, img: Any, faces: list[Any]) -> None:
        from .results import image_record

        job = self.job
        record = image_record(job.det, faces, size=(img.shape[1], img.shape[0]),
                              source=item.path, points=job.opts.points)
        job.output.emit(index, record)
        target = job.plan.draw_path(index, item)
        if target is not None:
            import cv2

            from .draw import draw_faces

            job.plan.check_not_input(target)
            target.parent.mkdir(parents=True, exist_ok=True)
            if not cv2.imwrite(str(target), draw_faces(img, faces, boxes=job.opts.draw_boxes)):
                raise OSError(f"could not write the annotated image {target}")
        job.report.images += 1
        job.report.faces += len(faces)


class _Video:
    """One video file or camera: frames tracked (or detected each), drawn, recorded."""

    def __init__(self, job: _Job, index: int, item: _Item, source: Any, kind: str) -> None:
        self.job = job
        self.index = index  # into the plan's items; -1 for the camera
        self.item = item
        self.source = source  # a path or a camera index
        self.kind = kind  # "video" | "camera"
        self.name = str(item.path) if kind == "video" else str(source)
        self.frames: list[dict[str, Any]] = []
        self.detector_frames = 0

    def run(self, show: bool = False) -> None:
        """Process every frame (until q / Esc in the preview with ``show``), then emit."""
        from .results import video_record

        stream, info = _frames(self.job, self.source)
        target = self.job.plan.draw_path(self.index, self.item)
        if target is not None:
            self.job.plan.check_not_input(target)
        size = (info.width or 0, info.height or 0)
        writer = None
        try:
            for faces in stream:
                size = (faces.image.shape[1], faces.image.shape[0])
                self._record(faces)
                if target is not None or show:
                    drawn = self._draw(faces)
                    if target is not None:
                        writer = writer or self._open_writer(target, info.fps, size)
                        writer.write(drawn)
                    if show and not _show(drawn):
                        break
                self._progress(info.frame_count)
        finally:
            if writer is not None:
                writer.release()
            close = getattr(stream, "close", None)
            if close is not None:
                close()
        self._count()
        source = f"camera:{self.source}" if self.kind == "camera" else self.name
        self.job.output.emit(self.index, video_record(
            self.job.det, self.frames, size=size, fps=info.fps, source=source,
            kind=self.kind, points=self.job.opts.points))

    def _record(self, faces: Any) -> None:
        from .results import frame_record

        self.frames.append(frame_record(faces))
        self.detector_frames += bool(faces.detected)
        self.job.report.faces += len(faces)

    def _progress(self, frame_count: int | None) -> None:
        report = self.job.report
        report.console.progress(len(self.frames), frame_count, "frames",
                                f"{report.faces} faces  {Path(self.name).name}")

    def _draw(self, faces: Any) -> Any:
        from .draw import draw_faces

        return draw_faces(faces.image, faces, boxes=self.job.opts.draw_boxes)

    @staticmethod
    def _open_writer(target: Path, fps: float, size: tuple[int, int]) -> Any:
        from .video import open_writer

        return open_writer(target, fps, size)

    def _count(self) -> None:
        if not self.frames:
            raise OSError("no frame could be read")
        report = self.job.report
        report.videos += 1
        report.frames += len(self.frames)
        report.detector_frames += self.detector_frames


def _frames(job: _Job, source: Any) -> tuple[Any, Any]:
    """(iterator of FrameFaces, VideoInfo) of a video path or camera index: tracked, or
    with --no-track detected on every frame."""
    from .track import FrameFaces
    from .video import open_frames

    o, det, boxes = job.opts, job.det, job.boxes
    frames, info = open_frames(source)
    if o.no_track:
        def detect_each() -> Any:
            for i, frame in enumerate(frames):
                faces = det.detect(frame, boxes=boxes, points=o.points)
                yield FrameFaces(faces, frame, i, i / info.fps, True)

        return detect_each(), info
    return det.track(
        frames, boxes=boxes, points=o.points, fps=info.fps,
        redetect_interval=o.redetect_interval, min_confidence=o.min_confidence,
        smoothing=False if o.no_smooth else o.smoothing,
        **{k: v for k, v in (("min_cutoff", o.min_cutoff), ("beta", o.beta)) if v is not None},
    ), info


def _run_videos(job: _Job) -> None:
    from .errors import PipdetectError

    for index, item in enumerate(job.plan.items):
        if item.kind == "video":
            try:
                _Video(job, index, item, item.path, "video").run()
            except (PipdetectError, OSError, ValueError) as exc:
                job.report.fail_with(str(item.path), exc)


def _run_camera(job: _Job, camera: int) -> int:
    """--camera: a live preview (q or Esc quits); 2 when no window can be shown."""
    from .errors import PipdetectError

    problem = _no_display()
    if problem:
        job.report.console.error(f"--camera needs a display to show the preview: {problem}")
        return 2
    try:
        _Video(job, -1, CAMERA_ITEM, camera, "camera").run(show=True)
    except (PipdetectError, OSError, ValueError) as exc:
        job.report.fail_with(f"camera {camera}", exc)
    finally:
        import cv2

        cv2.destroyAllWindows()
    return 0


def _show(image: Any) -> bool:
    """Show a preview frame; False once q or Esc is pressed."""
    import cv2

    cv2.imshow(f"{PROG} (q to quit)", image)
    return (cv2.waitKey(1) & 0xFF) not in (ord("q"), 27)


# --------------------------------------------------------------------------- top level
def _run(argv: list[str]) -> int:
    """The whole command: parse, plan, load the model, run every input, write, summarise."""
    parser = build_parser()
    try:
        opts = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code or 0)
    console = _Console(opts.quiet)
    if opts.version:
        from ._version import __version__

        print(f"{PROG} {__version__}")
        return 0
    if opts.list_models:
        return _list_models(console)
    if not opts.inputs and opts.camera is None:
        parser.print_usage(sys.stderr)
        console.error("nothing to do: give images, folders or videos, or --camera N")
        return 2
    report = _Report(console)
    try:
        plan = _plan(opts, report)
    except _UsageError as exc:
        console.error(str(exc))
        return 2
    det = _load_detector(opts, console)
    if det is None:
        return 2
    try:
        det.output_scheme(opts.points)
    except ValueError as exc:
        console.error(f"--points {opts.points}: {exc}")
        return 2
    job = _Job(opts, plan, det, report, _Output(plan))
    start = time.perf_counter()
    if opts.camera is not None and _run_camera(job, opts.camera):
        return 2
    _Images(job).run([it for it in plan.items if it.kind == "image"])
    _run_videos(job)
    job.output.finish()
    report.summary(time.perf_counter() - start)
    return 1 if report.failed else 0


def _list_models(console: _Console) -> int:
    try:
        from .zoo import list_models
    except ImportError as exc:  # pragma: no cover - the zoo ships with pipdetect
        console.error(f"the model zoo is not available: {exc}")
        return 2
    for info in list_models():
        nme = "" if info.nme is None else f"NME {info.nme:g}% ({info.nme_normalisation})"
        where = "bundled (default)" if info.bundled else "zoo, not yet published"
        print(f"{info.name:28} {info.num_landmarks:4d} points  {info.dataset:20} "
              f"{info.backbone:18} {where:23} {nme}")
    return 0


def _load_detector(o: argparse.Namespace, console: _Console) -> LandmarkDetector | None:
    from .detector import LandmarkDetector
    from .errors import PipdetectError

    try:
        return LandmarkDetector(
            o.model, threads=o.threads, score_threshold=o.score_threshold,
            nms_threshold=o.nms_threshold, max_faces=o.max_faces,
            detection_size=o.detection_size, batch_size=o.batch_size,
        )
    except (PipdetectError, OSError, ImportError, ValueError) as exc:
        what = f"model {o.model!r}" if o.model else "the default model"
        console.error(f"cannot load {what}: {exc}\n\n{_GET_A_MODEL}")
        return None


def _no_display() -> str | None:
    """Why no preview window can be shown here, or None if one can."""
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        return "no DISPLAY or WAYLAND_DISPLAY is set (a headless machine or SSH session)"
    import cv2

    try:
        cv2.namedWindow(PROG)
        cv2.destroyWindow(PROG)
    except cv2.error:
        return ("this OpenCV build has no GUI support (opencv-python-headless); install "
                "opencv-python for previews")
    return None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

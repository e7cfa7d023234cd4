"""Command line: ``pipdetect IMAGE|FOLDER|VIDEO ...`` and ``pipdetect convert ...``.

Exit status: 0 when every input was processed, 1 when some input failed (each
failure is reported on stderr and skipped), 2 for usage errors and when no model
could be loaded. The result formats are documented in :mod:`pipdetect.results`.
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
        return _Run(args).run()
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


# --------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``pipdetect`` (``pipdetect convert`` has its own)."""
    from .track import DEFAULT_BETA, DEFAULT_MIN_CUTOFF

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

    video = p.add_argument_group("video")
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
    video.add_argument("--min-cutoff", type=float, default=DEFAULT_MIN_CUTOFF, metavar="HZ",
                       help="smoothing: One Euro cutoff at rest, Hz (default "
                            f"{DEFAULT_MIN_CUTOFF:g}; lower is smoother)")
    video.add_argument("--beta", type=float, default=DEFAULT_BETA, metavar="B",
                       help="smoothing: One Euro speed coefficient per face size (default "
                            f"{DEFAULT_BETA:g}; higher lags less on fast motion)")
    return p


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


# --------------------------------------------------------------------------- run
@dataclass
class _Item:
    path: Path
    kind: str  # "image" | "video"
    rel: Path  # name relative to its folder input (for output names)


@dataclass
class _Stats:
    images: int = 0
    videos: int = 0
    frames: int = 0
    detector_frames: int = 0
    faces: int = 0
    failed: list[str] = field(default_factory=list)


class _UsageError(Exception):
    pass


class _Run:
    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self.stats = _Stats()
        self.records: list[dict[str, Any]] = []

    # ---------------------------------------------------------------- top level
    def run(self) -> int:
        parser = build_parser()
        try:
            self.opts = opts = parser.parse_args(self.argv)
        except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
            return int(exc.code or 0)
        self.console = _Console(opts.quiet)
        if opts.version:
            from ._version import __version__

            print(f"{PROG} {__version__}")
            return 0
        if opts.list_models:
            return self._list_models()
        if not opts.inputs and opts.camera is None:
            parser.print_usage(sys.stderr)
            self.console.error("nothing to do: give images, folders or videos, or --camera N")
            return 2
        try:
            self._plan()
        except _UsageError as exc:
            self.console.error(str(exc))
            return 2
        det = self._load_detector()
        if det is None:
            return 2
        self.det = det
        try:
            self.subset_scheme = det.output_scheme(opts.points)
        except ValueError as exc:
            self.console.error(f"--points {opts.points}: {exc}")
            return 2
        start = time.perf_counter()
        if opts.camera is not None:
            status = self._camera(opts.camera)
            if status:
                return status
        images = [it for it in self.items if it.kind == "image"]
        self._images(images)
        for item in self.items:
            if item.kind == "video":
                self._video(item)
        self._finish()
        self._summary(time.perf_counter() - start)
        return 1 if self.stats.failed else 0

    def _list_models(self) -> int:
        try:
            from .zoo import list_models
        except ImportError as exc:  # pragma: no cover - the zoo ships with pipdetect
            self.console.error(f"the model zoo is not available: {exc}")
            return 2
        for info in list_models():
            nme = "" if info.nme is None else f"NME {info.nme:g}% ({info.nme_normalisation})"
            where = "bundled (default)" if info.bundled else "zoo, not yet published"
            print(f"{info.name:28} {info.num_landmarks:4d} points  {info.dataset:20} "
                  f"{info.backbone:18} {where:23} {nme}")
        return 0

    def _load_detector(self) -> LandmarkDetector | None:
        from .detector import LandmarkDetector
        from .errors import PipdetectError

        o = self.opts
        try:
            return LandmarkDetector(
                o.model, threads=o.threads, score_threshold=o.score_threshold,
                nms_threshold=o.nms_threshold, max_faces=o.max_faces,
                detection_size=o.detection_size, batch_size=o.batch_size,
            )
        except (PipdetectError, OSError, ImportError, ValueError) as exc:
            what = f"model {o.model!r}" if o.model else "the default model"
            self.console.error(f"cannot load {what}: {exc}\n\n{_GET_A_MODEL}")
            return None

    # ---------------------------------------------------------------- planning
    def _plan(self) -> None:
        from .video import IMAGE_EXTENSIONS, is_video_path

        o = self.opts
        items: list[_Item] = []
        self.many = len(o.inputs) + (o.camera is not None) > 1
        for text in o.inputs:
            path = Path(text)
            if path.is_dir():
                self.many = True
                pattern = "**/*" if o.recursive else "*"
                found = sorted(
                    p for p in path.glob(pattern)
                    if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                )
                if not found:
                    self._fail(str(path), "no images in this folder"
                               + ("" if o.recursive else " (use -r for sub-folders)"))
                items += [_Item(p, "image", p.relative_to(path)) for p in found]
            elif not path.exists():
                self._fail(str(path), "no such file or folder")
            else:
                kind = "video" if is_video_path(path) else "image"
                items.append(_Item(path, kind, Path(path.name)))
        self.items = items

        fmt = o.format
        out = None if o.output is None else Path(o.output)
        suffix = out.suffix.lower().lstrip(".") if out is not None else ""
        if fmt is None:
            fmt = suffix if suffix in ("json", "csv", "npy") else "json"
        self.fmt = fmt
        if out is None:
            self.out_mode = "stdout"
            if fmt == "npy":
                raise _UsageError("--format npy writes files: give -o FILE.npy or -o FOLDER")
        elif out.is_dir() or str(o.output).endswith(("/", os.sep)) or not suffix:
            self.out_mode = "dir"
        else:
            self.out_mode = "file"
            if fmt == "npy" and self.many:
                raise _UsageError("one .npy file holds one input's landmarks: use -o FOLDER "
                                  "for several inputs")
        self.out = out
        self.out_names = self._unique_names([it.rel for it in items])

    @staticmethod
    def _unique_names(rels: list[Path]) -> list[Path]:
        """Output stems: ``a`` for a.jpg, ``a.jpg`` when a.jpg and a.png both exist."""
        stems = [r.with_suffix("") for r in rels]
        counts: dict[Path, int] = {}
        for s in stems:
            counts[s] = counts.get(s, 0) + 1
        return [s if counts[s] == 1 else r for s, r in zip(stems, rels, strict=True)]

    def _result_path(self, index: int) -> Path | None:
        if self.out_mode != "dir" or self.out is None:
            return None
        name = self.out_names[index]
        return self.out / name.parent / f"{name.name}.{self.fmt}"

    def _draw_path(self, index: int, item: _Item) -> Path | None:
        draw = self.opts.draw
        if draw is None:
            return None
        ext = item.path.suffix.lower()
        if item.kind == "video":
            ext = ext if ext in _VIDEO_OUT else ".mp4"
        else:
            ext = ext if ext in _DRAWABLE else ".png"
        name = self.out_names[index] if index >= 0 else Path("camera")
        file_name = name.parent / f"{name.name}_landmarks{ext}"
        if isinstance(draw, str):
            return Path(draw) if not self.many else Path(draw) / file_name
        if self.out_mode == "dir" and self.out is not None:
            base = self.out
        elif self.out_mode == "file" and self.out is not None:
            base = self.out.parent
        else:
            base = Path(".")
        return base / file_name

    # ---------------------------------------------------------------- failures
    def _fail(self, name: str, reason: str) -> None:
        self.stats.failed.append(name)
        if reason.startswith(f"{name}: "):
            reason = reason[len(name) + 2 :]
        self.console.error(f"skipping {name}: {reason}")

    @staticmethod
    def _reason(exc: BaseException) -> str:
        text = str(exc).strip() or type(exc).__name__
        return text.splitlines()[0]

    # ---------------------------------------------------------------- images
    def _images(self, images: list[_Item]) -> None:
        from .errors import PipdetectError
        from .image import load_image

        if not images:
            return
        index_of = {id(it): i for i, it in enumerate(self.items)}
        group = max(1, min(32, self.det.batch_size))
        done = 0
        for start in range(0, len(images), group):
            chunk = images[start : start + group]
            loaded = []
            for item in chunk:
                try:
                    loaded.append((item, load_image(item.path)))
                except (PipdetectError, OSError, ValueError) as exc:
                    self._fail(str(item.path), self._reason(exc))
            if loaded:
                boxes = None if self.opts.box is None else [[self.opts.box]] * len(loaded)
                try:
                    results = self.det.detect_batch([img for _, img in loaded], boxes=boxes,
                                                    points=self.opts.points)
                except (PipdetectError, ValueError):
                    results = None
                for k, (item, img) in enumerate(loaded):
                    try:
                        faces = (results[k] if results is not None else self.det.detect(
                            img, boxes=None if boxes is None else boxes[k],
                            points=self.opts.points))
                        self._image_done(index_of[id(item)], item, img, faces)
                    except (PipdetectError, OSError, ValueError) as exc:
                        self._fail(str(item.path), self._reason(exc))
            done += len(chunk)
            self.console.progress(done, len(images), "images", f"{self.stats.faces} faces")

    def _image_done(self, index: int, item: _Item, img: Any, faces: list[Any]) -> None:
        from .results import image_record

        record = image_record(self.det, faces, size=(img.shape[1], img.shape[0]),
                              source=item.path, points=self.opts.points)
        self._emit(index, record)
        target = self._draw_path(index, item)
        if target is not None:
            import cv2

            from .draw import draw_faces

            self._check_not_input(target)
            target.parent.mkdir(parents=True, exist_ok=True)
            if not cv2.imwrite(str(target), draw_faces(img, faces, boxes=self.opts.draw_boxes)):
                raise OSError(f"could not write the annotated image {target}")
        self.stats.images += 1
        self.stats.faces += len(faces)

    def _check_not_input(self, target: Path) -> None:
        inputs = {it.path.resolve() for it in self.items}
        if target.resolve() in inputs:
            raise OSError(f"refusing to overwrite the input {target} with a drawing")

    # ---------------------------------------------------------------- videos
    def _video(self, item: _Item) -> None:
        from .errors import PipdetectError

        index = self.items.index(item)
        try:
            self._track(index, item, item.path, "video")
        except (PipdetectError, OSError, ValueError) as exc:
            self._fail(str(item.path), self._reason(exc))

    def _frames(self, source: Any) -> tuple[Any, Any]:
        """(iterator of FrameFaces, VideoInfo) for a path or camera index."""
        from .track import FrameFaces
        from .video import open_frames

        o = self.opts
        frames, info = open_frames(source)
        if o.no_track:
            def detect_each() -> Any:
                for i, frame in enumerate(frames):
                    faces = self.det.detect(frame, boxes=None if o.box is None else [o.box],
                                            points=o.points)
                    yield FrameFaces(faces, frame, i, i / info.fps, True)

            return detect_each(), info
        return self.det.track(
            frames, boxes=None if o.box is None else [o.box], points=o.points, fps=info.fps,
            redetect_interval=o.redetect_interval, min_confidence=o.min_confidence,
            smoothing=not o.no_smooth, min_cutoff=o.min_cutoff, beta=o.beta,
        ), info

    def _track(self, index: int, item: _Item | None, source: Any, kind: str,
               show: bool = False) -> None:
        from .draw import draw_faces
        from .results import frame_record, video_record
        from .video import open_writer

        stream, info = self._frames(source)
        target = self._draw_path(
            index, item if item is not None else _Item(Path("camera.mp4"), "video", Path("camera"))
        )
        if target is not None:
            self._check_not_input(target)
        writer = None
        frames: list[dict[str, Any]] = []
        size = (info.width or 0, info.height or 0)
        name = str(source) if item is None else str(item.path)
        detector_frames = 0
        try:
            for faces in stream:
                frames.append(frame_record(faces))
                size = (faces.image.shape[1], faces.image.shape[0])
                detector_frames += bool(faces.detected)
                self.stats.faces += len(faces)
                if target is not None or show:
                    drawn = draw_faces(faces.image, faces, boxes=self.opts.draw_boxes)
                    if target is not None:
                        if writer is None:
                            writer = open_writer(target, info.fps, size)
                        writer.write(drawn)
                    if show and not self._show(drawn):
                        break
                self.console.progress(len(frames), info.frame_count, "frames",
                                      f"{self.stats.faces} faces  {Path(name).name}")
        finally:
            if writer is not None:
                writer.release()
            close = getattr(stream, "close", None)
            if close is not None:
                close()
        if not frames:
            raise OSError("no frame could be read")
        self.stats.videos += 1
        self.stats.frames += len(frames)
        self.stats.detector_frames += detector_frames
        record = video_record(self.det, frames, size=size, fps=info.fps,
                              source=f"camera:{source}" if kind == "camera" else name,
                              kind=kind, points=self.opts.points)
        self._emit(index, record)

    # ---------------------------------------------------------------- camera
    def _camera(self, index: int) -> int:
        from .errors import PipdetectError

        problem = _no_display()
        if problem:
            self.console.error(f"--camera needs a display to show the preview: {problem}")
            return 2
        try:
            self._track(-1, None, index, "camera", show=True)
        except (PipdetectError, OSError, ValueError) as exc:
            self._fail(f"camera {index}", self._reason(exc))
        finally:
            import cv2

            cv2.destroyAllWindows()
        return 0

    @staticmethod
    def _show(image: Any) -> bool:
        import cv2

        cv2.imshow(f"{PROG} (q to quit)", image)
        return (cv2.waitKey(1) & 0xFF) not in (ord("q"), 27)

    # ---------------------------------------------------------------- output
    def _emit(self, index: int, record: dict[str, Any]) -> None:
        path = self._result_path(index) if index >= 0 else None
        if path is None and self.out_mode == "dir" and self.out is not None:
            path = self.out / f"camera.{self.fmt}"
        if path is None:
            self.records.append(record)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        self._write(path, [record], single=True)

    def _write(self, path: Path | None, records: list[dict[str, Any]], single: bool) -> None:
        from .results import csv_text, dumps, save_npy

        if self.fmt == "npy":
            assert path is not None
            save_npy(path, records[0])
            return
        if self.fmt == "csv":
            text = csv_text(records)
        else:
            text = dumps(records[0] if single else records) + "\n"
        if path is None:
            sys.stdout.write(text)
            sys.stdout.flush()
        else:
            path.write_text(text, encoding="utf-8")

    def _finish(self) -> None:
        if self.out_mode == "dir":
            return
        records = self.records
        if self.fmt == "npy" and not records:
            return
        if self.fmt == "csv" and not records:
            if self.out_mode == "file" and self.out is not None:
                self.out.parent.mkdir(parents=True, exist_ok=True)
                self.out.write_text("", encoding="utf-8")
            return
        single = not self.many and len(records) == 1
        if self.out_mode == "file" and self.out is not None:
            self.out.parent.mkdir(parents=True, exist_ok=True)
            self._write(self.out, records, single)
        elif records or self.many:
            self._write(None, records, single)

    def _summary(self, seconds: float) -> None:
        s = self.stats
        parts = []
        if s.images:
            parts.append(f"{s.images} image{'s' * (s.images != 1)}")
        if s.videos:
            parts.append(f"{s.videos} video{'s' * (s.videos != 1)} ({s.frames} frames, face "
                         f"detector on {s.detector_frames})")
        parts.append(f"{s.faces} face{'s' * (s.faces != 1)}")
        if s.failed:
            parts.append(f"{len(s.failed)} failed")
        per = f"{1000 * seconds / s.faces:.1f} ms per face, " if s.faces else ""
        self.console.info(f"{PROG}: {', '.join(parts)}; {per}{seconds:.2f} s in all")


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

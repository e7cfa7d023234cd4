"""Command line: ``pipdetect IMAGE|FOLDER|VIDEO ...`` and ``pipdetect convert ...``.

Exit status: 0 when every input was processed, 1 when some input failed (each
failure is one line on stderr, whatever the input did, and the others go on), 2
for usage errors (contradictory options, an output that is or links to an input)
and when no model could be loaded. The result formats are documented in
:mod:`pipdetect.results`; users' documentation: docs/cli.md.

The parts, in the order a run uses them: :func:`build_parser` (arguments),
``_plan`` (options checked, inputs in the order given, where their results go, no
output over an input: ``_Plan``), ``_load_detector``, ``_run_inputs`` with one
runner per input kind (``_Images``; ``_Video`` for video files and the camera's
live preview), ``_Output`` (results in input order, written whole or not at all
through :class:`pipdetect.results.ResultsFile`) and ``_Report`` (failures as they
happen, the summary line at the end); ``_run`` wires them together.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import time
import warnings
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
  Without -o (or with -o -), results go to stdout (JSON or CSV). -o FILE.json/.csv/.npy
  writes one file (several inputs: a JSON array, or all CSV rows); -o DIR/ writes one
  file per input (DIR/<name>.json ...). Results keep the order of the inputs. Files are
  written beside the target and renamed over it when complete: a failed run never
  leaves one cut, and if the disk fills up the finished results are kept in
  FILE.partial. A failed input has its place too: a JSON document {"kind": "error",
  "source": ..., "error": ...}, a CSV row with its "error" column (with -o DIR/ no
  file). CSV has a row per face and per image or frame without a face. No output may
  be, or link to, an input.
  Coordinates are original-image pixels, x right, y down, pixel centres at integers.
  JSON schema: python -c "import pipdetect.results as r; help(r)" or docs/cli.md.

exit status: 0 all inputs done, 1 some input failed (each reported in one line and
  skipped; a video that ends before its declared length counts too), 2 usage error
  or no model.
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
    from .zoo import DEFAULT_MODEL

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
                   help="list the models you can name (the bundled ones), and exit")
    p.add_argument("--all", action="store_true",
                   help="with --list-models: also the names of the model zoo, which is not "
                        "published yet (they do not work until it is)")

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
                            f"{DEFAULT_MODEL}, no network needed)")
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
    model.add_argument("--min-confidence", type=_fraction, default=None, metavar="P",
                       help="leave out detected faces whose confidence (the probability that "
                            "their landmarks are right) is below P, and lose tracked faces "
                            "below it (default: the model's calibrated threshold; 0 keeps "
                            "every face; faces of --box are always kept)")
    model.add_argument("--orientation-search", choices=("auto", "always", "off"),
                       default="auto",
                       help="faces at any roll: auto (default) searches turned crops and "
                            "the turned image only where no confident face is found upright; "
                            "always also where one is; off for images known to be upright")
    model.add_argument("--flip-test", action="store_true", help="the accurate setting: also "
                       "run each face's mirror image and average (about 2x the network time)")
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
    video.add_argument("--redetect-interval", type=_non_negative_int, default=None, metavar="N",
                       help="run the face detector at least every N frames to find new faces "
                            "(default 10; 0: only when a face is lost)")
    video.add_argument("--no-smooth", action="store_true",
                       help="no temporal smoothing of landmarks")
    video.add_argument("--smoothing", choices=("smooth", "responsive"), default=None,
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

    def fail(self, name: str, problem: str | BaseException) -> str:
        """Report one input's failure in one line; returns the reason given."""
        reason = problem if isinstance(problem, str) else _reason(problem)
        self.failed.append(name)
        if reason.startswith(f"{name}: "):
            reason = reason[len(name) + 2 :]
        self.console.error(f"skipping {name}: {reason}")
        return reason

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


def _reason(exc: BaseException) -> str:
    """One line about an exception: its message's first line, with the type when the
    error is not one of pipdetect's or the usual I/O and value errors."""
    from .errors import PipdetectError

    text = (str(exc).strip() or type(exc).__name__).splitlines()[0]
    if isinstance(exc, MemoryError):
        return f"not enough memory to process it ({text})"
    if not isinstance(exc, (PipdetectError, OSError, ValueError)):
        return f"{type(exc).__module__.split('.')[0]}.{type(exc).__name__}: {text}"
    return text


# --------------------------------------------------------------------------- planning
@dataclass
class _Item:
    path: Path
    kind: str  # "image" | "video" | "camera" | "missing" (fails with `error`)
    rel: Path  # name relative to its folder input (for output names)
    scanned: bool = False  # found in a folder (not named on the command line)
    error: str = ""


class _UsageError(Exception):
    pass


@dataclass
class _Plan:
    """The inputs to process, in the order given, and where their results and drawings go."""

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
        """The file of item ``index``'s results with -o DIR, else None."""
        if self.out_mode != "dir" or self.out is None:
            return None
        name = self.out_names[index]
        return self.out / name.parent / f"{name.name}.{self.fmt}"

    def draw_path(self, index: int) -> Path | None:
        """Where item ``index``'s drawing goes, or None without --draw."""
        item = self.items[index]
        if self.draw is None:
            return None
        ext = item.path.suffix.lower()
        if item.kind in ("video", "camera"):
            ext = ext if ext in _VIDEO_OUT else ".mp4"
        else:
            ext = ext if ext in _DRAWABLE else ".png"
        name = self.out_names[index]
        file_name = name.parent / f"{name.name}_landmarks{ext}"
        if isinstance(self.draw, str):
            return Path(self.draw) if not self.many else Path(self.draw) / file_name
        if self.out_mode == "dir" and self.out is not None:
            base = self.out
        elif self.out_mode == "file" and self.out is not None and not (
                self.out.exists() and not self.out.is_file()):  # not beside /dev/null
            base = self.out.parent
        else:
            base = Path(".")
        return base / file_name

    def targets(self) -> list[Path]:
        """Every file this run may write: -o FILE, results per input, drawings."""
        found = [self.out] if self.out_mode == "file" and self.out is not None else []
        for i, item in enumerate(self.items):
            if item.kind != "missing":
                found += [p for p in (self.result_path(i), self.draw_path(i)) if p is not None]
        return found


def _identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of the file a path leads to (through links), None if there is none."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def _check_options(o: argparse.Namespace) -> None:
    """Refuse options that contradict each other (raises :class:`_UsageError`)."""
    suffix = "" if o.output in (None, "-") else Path(o.output).suffix.lower().lstrip(".")
    one_euro = o.min_cutoff is not None or o.beta is not None
    tracking = [name for name, given in (
        ("--redetect-interval", o.redetect_interval is not None), ("--no-smooth", o.no_smooth),
        ("--smoothing", o.smoothing is not None), ("--min-cutoff", o.min_cutoff is not None),
        ("--beta", o.beta is not None)) if given]
    problems = [
        (o.format and suffix in ("json", "csv", "npy") and suffix != o.format,
         f"--format {o.format} contradicts -o {o.output}: name the file .{o.format} or drop "
         "--format"),
        (o.no_smooth and (o.smoothing or one_euro),
         "--no-smooth contradicts --smoothing, --min-cutoff and --beta: give one or the other"),
        (o.smoothing and one_euro,
         "--smoothing picks a preset; --min-cutoff and --beta pick the One Euro filter of "
         "earlier versions: give one or the other"),
        (o.no_track and tracking,
         f"--no-track detects faces on every frame: {', '.join(tracking)} only apply to tracking"),
        (o.camera is not None and o.inputs,
         "--camera runs alone: give either --camera or inputs, not both"),
        (o.draw_boxes and o.draw is None and o.camera is None,
         "--draw-boxes changes drawings: add --draw"),
    ]
    for contradiction, message in problems:
        if contradiction:
            raise _UsageError(message)


def _find_inputs(opts: argparse.Namespace) -> list[_Item]:
    """The inputs in the order given: files named, then the images of folders (sorted).
    Missing inputs and empty folders become "missing" items, which fail in their turn."""
    from .video import find_images, is_video_path

    if opts.camera is not None:
        return [_Item(Path("camera.mp4"), "camera", Path("camera"))]
    items: list[_Item] = []
    for text in opts.inputs:
        path = Path(text)
        if path.is_dir():
            found = find_images(path, opts.recursive)
            if not found:
                why = "no images in this folder" + ("" if opts.recursive else
                                                    " (use -r for sub-folders)")
                items.append(_Item(path, "missing", Path(path.name), error=why))
            items += [_Item(p, "image", p.relative_to(path), scanned=True) for p in found]
        elif not path.exists():
            items.append(_Item(path, "missing", Path(path.name), error="no such file or folder"))
        else:
            items.append(_Item(path, "video" if is_video_path(path) else "image", Path(path.name)))
    return items


def _plan(opts: argparse.Namespace) -> _Plan:
    """Inputs and output layout; raises :class:`_UsageError` for impossible outputs."""
    _check_options(opts)
    items = _find_inputs(opts)
    many = len(opts.inputs) > 1 or any(Path(text).is_dir() for text in opts.inputs)
    out = None if opts.output in (None, "-") else Path(opts.output)
    suffix = out.suffix.lower().lstrip(".") if out is not None else ""
    fmt = opts.format or (suffix if suffix in ("json", "csv", "npy") else "json")
    if out is None:
        mode = "stdout"
        if fmt == "npy":
            raise _UsageError("--format npy writes files: give -o FILE.npy or -o FOLDER")
    elif out.is_dir() or str(opts.output).endswith(("/", os.sep)) or not (
            suffix or out.exists()):
        mode = "dir"
    else:
        mode = "file"  # a file name, or an existing non-folder such as /dev/null
        if fmt == "npy" and many:
            raise _UsageError("one .npy file holds one input's landmarks: use -o FOLDER "
                              "for several inputs")
    plan = _Plan(items, many, fmt, mode, out, opts.draw)
    # outputs of an earlier run found in a folder are not inputs of this one
    written = {_identity(p) for p in plan.targets()} - {None}
    if any(it.scanned and _identity(it.path) in written for it in items):
        plan = _Plan([it for it in items if not (it.scanned and _identity(it.path) in written)],
                     many, fmt, mode, out, opts.draw)
    _check_targets(plan)
    return plan


def _check_targets(plan: _Plan) -> None:
    """Refuse any output that is, or links to, an input (it would be destroyed)."""
    inputs = {_identity(it.path): it.path for it in plan.items if it.kind != "missing"}
    for target in plan.targets():
        source = inputs.get(_identity(target)) if os.path.lexists(target) else None
        if source is not None:
            what = "is" if Path(target).absolute() == source.absolute() else "links to"
            raise _UsageError(f"refusing to overwrite an input: the output {target} {what} "
                              f"the input {source}; choose another -o or --draw")


# --------------------------------------------------------------------------- writers
class _Output:
    """Result documents in the order of the inputs: to stdout or one -o FILE (a
    :class:`~pipdetect.results.ResultsFile`: streamed into a temporary file beside
    it, renamed over it at the end), or one file per input with -o DIR (each atomic)."""

    def __init__(self, plan: _Plan, num_landmarks: int, report: _Report) -> None:
        from .results import ResultsFile

        self.plan, self.num_landmarks, self.report = plan, num_landmarks, report
        self.pending: dict[int, dict[str, Any]] = {}
        self.next = 0
        self.written = 0  # documents of inputs done
        self.broken = False  # the output failed: the run stops
        self.sink: ResultsFile | None = None
        if plan.out_mode != "dir":
            sys.stdout.flush()
            self.sink = ResultsFile(plan.out if plan.out is not None else sys.stdout.buffer,
                                    plan.fmt, many=plan.many, num_landmarks=num_landmarks)

    def put(self, index: int, record: dict[str, Any]) -> None:
        """Item ``index``'s document, or its :func:`~pipdetect.results.error_record`."""
        self.pending[index] = record
        while self.next in self.pending and not self.broken:
            self._write(self.next, self.pending.pop(self.next))
            self.next += 1

    def _write(self, index: int, record: dict[str, Any]) -> None:
        from .results import ResultsFile

        failed = "error" in record
        path = self.plan.result_path(index)
        try:
            if self.sink is not None and (self.plan.fmt != "npy" or not failed):
                self.sink.add(record)  # a failed input too, as JSON or CSV
            elif path is not None and not failed:
                with ResultsFile(path, self.plan.fmt, many=False) as single:
                    single.add(record)
        except OSError as exc:
            if self.sink is None:
                self.report.fail(str(self.plan.items[index].path), f"cannot write {path}: {exc}")
                return
            self._broke(exc)
        self.written += not failed

    def finish(self) -> None:
        """Put -o FILE in place, unless no input succeeded (then it is left as it was)."""
        if self.sink is None or self.broken:
            return
        if self.plan.out_mode == "file" and not self.written:
            self.sink.discard()
            self.report.console.error(f"no input succeeded: {self.plan.out} left as it was")
            return
        try:
            self.sink.commit()
        except OSError as exc:
            self._broke(exc)

    def interrupted(self) -> None:
        """Ctrl-C: -o FILE is left as it was, the results finished are kept beside it."""
        if self.sink is not None and self.plan.out is not None and not self.broken:
            self.sink.keep_partial()
            if self.sink.partial is not None:
                self.report.console.error(f"{self.plan.out} left as it was; the "
                                          f"{self.sink.count} results finished are kept in "
                                          f"{self.sink.partial}")

    def _broke(self, exc: OSError) -> None:
        self.broken = True
        where = "standard output" if self.plan.out is None else str(self.plan.out)
        message = f"cannot write the results to {where}: {exc.strerror or exc}"
        if self.plan.out is not None:
            message += f"; {where} is left as it was"
        if self.sink is not None and self.sink.partial is not None:
            message += (f"; the {self.sink.count} results finished are kept in "
                        f"{self.sink.partial}")
        self.report.console.error(message + "; stopping")
        if self.plan.out is None:  # a closed pipe: no more writes, no noise at exit
            with contextlib.suppress(OSError, ValueError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


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

    def fail(self, index: int, problem: str | BaseException) -> None:
        """Input ``index`` failed: one line on stderr, its error document in the output."""
        from .results import error_record

        path = self.plan.items[index].path
        self.output.put(index, error_record(path, self.report.fail(str(path), problem)))


GROUP_PIXELS = 24_000_000
"""Images are loaded and sent through the network in groups of at most this many pixels
in all (about 72 MB of BGR pixels; one larger image is a group of its own), so a folder of
big photos holds no more in memory than one of small ones."""


def _run_inputs(job: _Job) -> None:
    """Every input in the order given: runs of images in groups, videos one by one."""
    items = job.plan.items
    group = max(1, min(32, job.det.batch_size))
    images = _Images(job, sum(it.kind == "image" for it in items))
    i = 0
    while i < len(items) and not job.output.broken:
        if items[i].kind == "image":
            j = i
            while j < len(items) and j - i < group and items[j].kind == "image":
                j += 1
            images.run(range(i, j))
            i = j
            continue
        if items[i].kind == "missing":
            job.fail(i, items[i].error)
        else:
            _Video(job, i).run(show=items[i].kind == "camera")
        i += 1
    if i < len(items):
        job.report.console.error(f"{len(items) - i} inputs not processed")


class _Images:
    """Image inputs, in groups sent through the network together (``detect_batch``)."""

    def __init__(self, job: _Job, total: int) -> None:
        self.job = job
        self.total = total
        self.done = 0

    def run(self, indices: range) -> None:
        from .image import load_image

        job = self.job
        loaded: list[tuple[int, Any]] = []
        pixels = 0
        for i in indices:
            try:
                img = load_image(job.plan.items[i].path)
            except Exception as exc:  # each input fails alone, whatever it does
                job.fail(i, exc)
                continue
            if loaded and pixels + img.shape[0] * img.shape[1] > GROUP_PIXELS:
                self._detect(loaded)  # a group holds a bounded number of pixels
                loaded, pixels = [], 0
            loaded.append((i, img))
            pixels += img.shape[0] * img.shape[1]
        if loaded:
            self._detect(loaded)
        self.done += len(indices)
        job.report.console.progress(self.done, self.total, "images",
                                    f"{job.report.faces} faces")

    def _detect(self, loaded: list[tuple[int, Any]]) -> None:
        """Faces of loaded images, together; one by one if that fails (to name the bad one)."""
        det, points = self.job.det, self.job.opts.points
        boxes = None if self.job.boxes is None else [self.job.boxes] * len(loaded)
        try:
            results = det.detect_batch([img for _, img in loaded], boxes=boxes, points=points)
        except Exception:
            results = None
        for k, (index, img) in enumerate(loaded):
            try:
                faces = results[k] if results is not None else det.detect(
                    img, boxes=None if boxes is None else boxes[k], points=points)
                self._done(index, img, faces)
            except Exception as exc:
                self.job.fail(index, exc)

    def _done(self, index: int, img: Any, faces: list[Any]) -> None:
        from .results import image_record, replacing

        job = self.job
        record = image_record(job.det, faces, size=(img.shape[1], img.shape[0]),
                              source=job.plan.items[index].path, points=job.opts.points)
        target = job.plan.draw_path(index)
        if target is not None:
            import cv2

            with replacing(target) as tmp:
                if not cv2.imwrite(str(tmp), _draw(job, faces, img)):
                    raise OSError(f"could not write the annotated image {target}")
        job.output.put(index, record)
        job.report.images += 1
        job.report.faces += len(faces)


class _Video:
    """One video file or camera: frames tracked (or detected each), drawn, recorded."""

    def __init__(self, job: _Job, index: int) -> None:
        self.job = job
        self.index = index  # into the plan's items
        self.item = job.plan.items[index]
        self.camera = self.item.kind == "camera"
        self.source: Any = job.opts.camera if self.camera else self.item.path
        self.name = f"camera {self.source}" if self.camera else str(self.item.path)
        self.frames: list[dict[str, Any]] = []
        self.detector_frames = 0
        self.total: int | None = None  # frames the source declares

    def run(self, show: bool = False) -> None:
        """Process every frame (until q / Esc in the preview with ``show``), then emit;
        failures (and a file that ends before its declared length) are reported."""
        from .results import video_record

        try:
            size, fps, short = self._process(show)
        except Exception as exc:  # each input fails alone, whatever it does
            self.job.fail(self.index, exc)
            return
        report = self.job.report
        report.videos += 1
        report.frames += len(self.frames)
        report.detector_frames += self.detector_frames
        self.job.output.put(self.index, video_record(
            self.job.det, self.frames, size=size, fps=fps, kind=self.item.kind,
            source=f"camera:{self.source}" if self.camera else self.name,
            points=self.job.opts.points))
        if short is not None:
            self.job.report.fail(self.name, f"the video ended after {len(self.frames)} of its "
                                 f"{short} frames (truncated or damaged); the frames read are "
                                 "in the results")

    def _process(self, show: bool) -> tuple[tuple[int, int], float, int | None]:
        """((width, height), fps, declared frame count if the file ended early, else None)."""
        from .results import replacing
        from .video import VideoTruncatedWarning, open_writer

        stream, frames, info = _frames(self.job, self.source)
        self.total = info.frame_count
        target = self.job.plan.draw_path(self.index)
        size = (info.width or 0, info.height or 0)
        with contextlib.ExitStack() as stack:
            stack.callback(getattr(stream, "close", lambda: None))
            if show:
                import cv2

                stack.callback(cv2.destroyAllWindows)
            tmp = stack.enter_context(replacing(target)) if target is not None else None
            writers: list[Any] = []  # opened at the first frame, released before the rename
            stack.callback(lambda: [w.release() for w in writers])
            stack.enter_context(warnings.catch_warnings())
            warnings.simplefilter("ignore", VideoTruncatedWarning)
            for faces in stream:
                size = (faces.image.shape[1], faces.image.shape[0])
                self._record(faces)
                drawn = _draw(self.job, faces, faces.image) if tmp is not None or show else None
                if tmp is not None:
                    writers += [] if writers else [open_writer(tmp, info.fps, size)]
                    writers[0].write(drawn)
                if show and not _show(drawn):
                    break
            if not self.frames:
                raise OSError("no frame could be read")
        return size, info.fps, frames.declared if getattr(frames, "ended_early", False) else None

    def _record(self, faces: Any) -> None:
        from .results import frame_record

        self.frames.append(frame_record(faces))
        self.detector_frames += bool(faces.detected)
        report = self.job.report
        report.faces += len(faces)
        report.console.progress(len(self.frames), self.total, "frames",
                                f"{report.faces} faces  {Path(self.name).name}")



def _draw(job: _Job, faces: Any, image: Any) -> Any:
    """``image`` with ``faces`` drawn (and their boxes with --draw-boxes)."""
    from .draw import draw_faces

    return draw_faces(image, faces, boxes=job.opts.draw_boxes)


def _frames(job: _Job, source: Any) -> tuple[Any, Any, Any]:
    """(iterator of FrameFaces, the frames it reads, VideoInfo) of a video path or camera
    index: tracked, or with --no-track detected on every frame."""
    from .track import FrameFaces
    from .video import open_frames

    o, det, boxes = job.opts, job.det, job.boxes
    frames, info = open_frames(source)
    if o.no_track:
        def detect_each() -> Any:
            for i, frame in enumerate(frames):
                faces = det.detect(frame, boxes=boxes, points=o.points)
                yield FrameFaces(faces, frame, i, i / info.fps, True)

        return detect_each(), frames, info
    return det.track(
        frames, boxes=boxes, points=o.points, fps=info.fps,
        redetect_interval=10 if o.redetect_interval is None else o.redetect_interval,
        smoothing=False if o.no_smooth else o.smoothing or True,
        **{k: v for k, v in (("min_cutoff", o.min_cutoff), ("beta", o.beta)) if v is not None},
    ), frames, info


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
    if opts.list_models or opts.all:
        return _list_models(opts, console)
    if not opts.inputs and opts.camera is None:
        parser.print_usage(sys.stderr)
        console.error("nothing to do: give images, folders or videos, or --camera N")
        return 2
    try:
        plan = _plan(opts)
    except _UsageError as exc:
        console.error(str(exc))
        return 2
    problem = None if opts.camera is None else _no_display()
    if problem:
        console.error(f"--camera needs a display to show the preview: {problem}")
        return 2
    det = _load_detector(opts, console)
    if det is None:
        return 2
    try:
        _, subset = det.output_scheme(opts.points)
    except ValueError as exc:
        console.error(f"--points {opts.points}: {exc}")
        return 2
    report = _Report(console)
    try:
        output = _Output(plan, det.num_landmarks if subset is None else len(subset), report)
    except OSError as exc:
        console.error(f"cannot write the results to {plan.out}: {exc}")
        return 2
    job = _Job(opts, plan, det, report, output)
    start = time.perf_counter()
    try:
        _run_inputs(job)
    except KeyboardInterrupt:
        output.interrupted()
        raise
    output.finish()
    report.summary(time.perf_counter() - start)
    return 1 if report.failed or output.broken else 0


def _list_models(o: argparse.Namespace, console: _Console) -> int:
    """The models a user can name, with a header; the unpublished zoo only with --all."""
    from .zoo import DEFAULT_MODEL, list_models

    if not o.list_models:
        console.error("--all only changes --list-models: pipdetect --list-models --all")
        return 2
    models = list_models()
    shown = [m for m in models if o.all or m.published]
    rows = [("name", "points", "trained on", "backbone", "NME", "status")]
    for m in shown:
        nme = "" if m.nme is None else f"{m.nme:.2f} % {m.nme_normalisation}".strip()
        status = ("bundled, the default" if m.name == DEFAULT_MODEL
                  else "bundled" if m.bundled
                  else "published" if m.published else "unpublished")
        rows.append((m.name, str(m.num_landmarks), m.dataset, m.backbone, nme, status))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.rjust(w) if i == 1 else c.ljust(w)
                        for i, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip())
    hidden = len(models) - len(shown)
    if hidden:
        print(f"\n{hidden} more names belong to the model zoo, which is not published yet;\n"
              "they work once it is (--list-models --all lists them). Until then, convert\n"
              "an official checkpoint yourself: pipdetect convert --help")
    elif o.all and any(not m.published for m in models):
        print("\nunpublished: a name of the model zoo, which is not published yet; it works\n"
              "once it is. Until then, convert the official checkpoint yourself\n"
              "(pipdetect convert --help) and pass the file with -m FILE.")
    return 0


def _load_detector(o: argparse.Namespace, console: _Console) -> LandmarkDetector | None:
    from .detector import LandmarkDetector
    from .errors import PipdetectError

    try:
        return LandmarkDetector(
            o.model, threads=o.threads, score_threshold=o.score_threshold,
            nms_threshold=o.nms_threshold, max_faces=o.max_faces,
            detection_size=o.detection_size, batch_size=o.batch_size,
            min_confidence=o.min_confidence, orientation_search=o.orientation_search,
            flip_test=o.flip_test,
        )
    except (PipdetectError, OSError, ImportError, ValueError) as exc:
        what = f"model {o.model!r}" if o.model else "the default model"
        hint = ("\n\nThen run with --model FILE.onnx, the file convert wrote."
                if "pipdetect convert" in str(exc) else f"\n\n{_GET_A_MODEL}")
        console.error(f"cannot load {what}: {exc}{hint}")
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

"""Model names: the default model inside the package, and the zoo of official PIP-Net models.

The default model (:data:`DEFAULT_MODEL`, ``pipnet-lite0-300w-int8``) is the int8
copy of pipdetect's own PIP-Net, which ``training/train.py`` trained and
``training/release_int8.py`` quantised. It ships inside the wheel
(``pipdetect/assets/pipnet-lite0-300w-int8.onnx``, facts in
``pipnet-lite0-300w-int8.json``), beside the fp32 network it was quantised from
(``pipnet-lite0-300w``): both need no network and no cache.

The zoo names the official PIP-Net checkpoints converted with ``pipdetect
convert``. They are downloaded on first use once someone holding the files
publishes them; until then no zoo file is published and a zoo name fails with
a message that says how to convert the checkpoint yourself.

The catalogue of official checkpoints ships inside the package
(``pipdetect/assets/zoo.json``, a copy of ``models/catalogue.json`` in the
repository). The converted ONNX files live in one Hugging Face Hub model
repository (:data:`DEFAULT_REPO_ID`), next to a ``manifest.json`` that gives the
size and SHA-256 of every file. :func:`resolve_model` turns a model name into a
local file:

1. download ``manifest.json`` at the requested revision (``main`` by default)
   with :func:`huggingface_hub.hf_hub_download`, which caches it in the
   standard Hub cache;
2. download the model file at the *commit* the manifest came from, so both
   always belong together even while the repository changes;
3. check the file's size and SHA-256: first against the catalogue shipped in
   the package (``size`` and ``sha256`` of the entry, written by
   ``models/publish.py --record`` when the zoo is published; ``null`` until then),
   then against the manifest. Trust rests in the installed package; the
   repository's manifest is a second check (and the only one for entries the
   catalogue does not pin yet). A manifest that contradicts the catalogue is
   refused before anything is downloaded. A damaged cached copy is deleted and
   fetched once more; if it is still wrong, a
   :class:`~pipdetect.errors.DownloadError` says so.

Hub conventions apply: files go to the Hub cache (``HF_HUB_CACHE``, default
``$HF_HOME/hub``, default ``~/.cache/huggingface/hub``), ``HF_ENDPOINT`` selects
a mirror, and ``HF_HUB_OFFLINE=1`` uses the cache only. These variables are
read when :func:`resolve_model` is called (``huggingface_hub`` itself reads them
once, at import), so setting them in a running program works too.
``PIPDETECT_REPO`` and ``PIPDETECT_REVISION`` override the zoo's repository id
and revision (a branch, tag or commit hash).

A whole resolution holds a file lock in the cache (``.locks/pipdetect/``, a
:class:`filelock.FileLock`, which comes with ``huggingface_hub``), so threads and
processes asking for the same model at once download it once and never delete a
file another one is checking.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import errno
import hashlib
import json
import logging
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import DownloadError, ModelNotFoundError

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_REPO_ID",
    "ENV_REPO",
    "ENV_REVISION",
    "MANIFEST_FILE",
    "FileRecord",
    "ModelInfo",
    "build_manifest",
    "file_sha256",
    "get_model_info",
    "list_models",
    "parse_manifest",
    "resolve_model",
    "unpublished_message",
]

logger = logging.getLogger("pipdetect")

DEFAULT_MODEL = "pipnet-lite0-300w-int8"
"""The model ``LandmarkDetector()`` uses when given no model: bundled, no network.

PIP-Net with an EfficientNet-Lite0 backbone (ImageNet weights), 68 points
(``300w68``), trained by pipdetect on the 2,009 300-W training faces we hold
(``training/README.md``), then quantised to int8 (``training/release_int8.py``: 7-bit
weights, its first three convolutions and its output heads in float) with its own
confidence calibration and output offset. Research use only, like its training data.
"""

BUNDLED = (DEFAULT_MODEL, "pipnet-lite0-300w")
"""Models inside the package, the default first: ``assets/<name>.onnx`` with its facts in
``assets/<name>.json``.

``pipnet-lite0-300w`` is the fp32 network the default was quantised from: the same
network with a slightly smaller error, slower where measured (a Zen 4, with its AVX-512
VNNI kernels and with the AVX2 kernels an AVX2-only CPU runs), for callers who want exact
float arithmetic (docs/models.md)."""

DEFAULT_REPO_ID = "pipdetect/pipnet"
"""Hub model repository holding the converted zoo (override: ``PIPDETECT_REPO``)."""

ENV_REPO = "PIPDETECT_REPO"
ENV_REVISION = "PIPDETECT_REVISION"
MANIFEST_FILE = "manifest.json"
MANIFEST_VERSION = 1

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")
_CHUNK = 1 << 20


# --------------------------------------------------------------------------- catalogue


@dataclass(frozen=True)
class ModelInfo:
    """One model of the zoo, as listed by :func:`list_models`."""

    name: str
    """Name to pass to ``LandmarkDetector`` (e.g. ``"pipnet-r18-wflw"``)."""
    dataset: str
    """Training-set preset (see :mod:`pipdetect.presets`)."""
    backbone: str
    num_landmarks: int
    file: str
    """File name in the Hub repository."""
    nme: float | None
    """Published normalised mean error in percent (lower is better); ``None`` if none."""
    nme_normalisation: str
    benchmark: str | None
    """Test set and normalisation behind :attr:`nme`."""
    training: str
    """``"supervised"`` or ``"GSSL"`` (generalizable semi-supervised learning)."""
    size: int | None
    """Size of the ONNX file in bytes, once published; ``None`` until then."""
    license: str
    note: str | None = None
    bundled: bool = False
    """``True`` for a model inside the package (no download); ``False`` for the zoo."""
    sha256: str | None = None
    """SHA-256 (lower-case hex) of the ONNX file, once published; downloads must match it
    (and :attr:`size`). ``None`` until then (the zoo's manifest is then the only check)."""

    @property
    def published(self) -> bool:
        """``True`` for a model you can use by name: bundled, or a zoo file whose size and
        SHA-256 pipdetect's catalogue records. The zoo is not published yet: its names say
        ``False``."""
        return self.bundled or self.sha256 is not None


@lru_cache(maxsize=1)
def _catalogue() -> dict[str, Any]:
    text = resources.files("pipdetect").joinpath("assets", "zoo.json").read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


@cache
def _bundled_facts(name: str) -> dict[str, Any]:
    text = resources.files("pipdetect").joinpath("assets", f"{name}.json").read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def _infos() -> dict[str, ModelInfo]:
    out = {}
    for name in BUNDLED:
        m = _bundled_facts(name)
        out[name] = ModelInfo(
            name=name, dataset=m["dataset"], backbone=m["backbone"],
            num_landmarks=int(m["num_landmarks"]), file=m["file"], nme=m.get("nme"),
            nme_normalisation=m.get("nme_normalisation") or "", benchmark=m.get("benchmark"),
            training=m.get("training", "supervised"), size=m.get("size"), license=m["license"],
            note=m.get("note"), bundled=True, sha256=m.get("sha256"),
        )
    for m in _catalogue()["models"]:
        out[m["name"]] = ModelInfo(
            name=m["name"],
            dataset=m["dataset"],
            backbone=m["backbone"],
            num_landmarks=int(m["num_landmarks"]),
            file=m["file"],
            nme=m.get("nme"),
            nme_normalisation=m.get("nme_normalisation") or "",
            benchmark=m.get("benchmark"),
            training=m.get("training", "supervised"),
            size=m.get("size"),
            license=m.get("license") or _catalogue()["license"]["summary"],
            note=m.get("note"),
            sha256=m.get("sha256"),
        )
    return out


def list_models() -> list[ModelInfo]:
    """Every model name: the bundled models first (the default, then the fp32 model it was
    quantised from), then the zoo in catalogue order.

    Nothing is downloaded: this reads the facts shipped with pipdetect. Zoo
    models (``bundled=False``) can be used once their files are published.
    """
    return list(_infos().values())


def _normalise_name(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def get_model_info(name: str) -> ModelInfo:
    """The catalogue entry of model ``name`` (case-insensitive, ``_`` counts as ``-``).

    Raises :class:`~pipdetect.errors.ModelNotFoundError`, with the closest names,
    for a name that is not in the zoo.
    """
    infos = _infos()
    key = _normalise_name(name)
    if key in infos:
        return infos[key]
    close = difflib.get_close_matches(key, list(infos), n=3, cutoff=0.6)
    hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
    raise ModelNotFoundError(
        f"unknown model {name!r}; {hint}known models: {', '.join(infos)} "
        "(see pipdetect.list_models()). To use a model file of your own, pass its path "
        "(a file ending in .onnx; convert PyTorch checkpoints with `pipdetect convert`)."
    )


# --------------------------------------------------------------------------- manifest


@dataclass(frozen=True)
class FileRecord:
    """What the manifest promises about one file of the zoo."""

    size: int
    """Bytes."""
    sha256: str
    """Lower-case hex digest."""


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file as lower-case hex, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def build_manifest(files: Iterable[str | os.PathLike[str]]) -> dict[str, Any]:
    """The ``manifest.json`` content for ``files``: ``{"files": {name: {size, sha256}}}``.

    Files are keyed by their base name (the zoo repository is flat).
    """
    records = {}
    for f in sorted(Path(p) for p in files):
        records[f.name] = {"size": f.stat().st_size, "sha256": file_sha256(f)}
    return {"manifest_version": MANIFEST_VERSION, "files": records}


def parse_manifest(text: str, source: str = MANIFEST_FILE) -> dict[str, FileRecord]:
    """Read a ``manifest.json``; raises :class:`ValueError` naming the problem."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{source} is not valid JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("files"), dict):
        raise ValueError(f"{source} has no 'files' object")
    if data.get("manifest_version") != MANIFEST_VERSION:
        raise ValueError(
            f"{source} has manifest_version {data.get('manifest_version')!r}; this pipdetect "
            f"reads version {MANIFEST_VERSION} (upgrade pipdetect)"
        )
    out = {}
    for name, rec in data["files"].items():
        size = rec.get("size") if isinstance(rec, dict) else None
        sha = rec.get("sha256") if isinstance(rec, dict) else None
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ValueError(f"{source}: entry {name!r} has no valid 'size'")
        if not isinstance(sha, str) or not _SHA256.match(sha):
            raise ValueError(f"{source}: entry {name!r} has no valid 'sha256'")
        out[str(name)] = FileRecord(size=size, sha256=sha)
    return out


CATALOGUE = "pipdetect's catalogue (pipdetect/assets/zoo.json)"
"""How messages name the catalogue shipped in the package."""
MANIFEST = f"the zoo's {MANIFEST_FILE}"
"""How messages name the repository's manifest."""

Problem = tuple[str, str]
"""What is wrong with a file, and what it was checked against (:data:`CATALOGUE` ...)."""


def _check_file(
    path: Path, size: int | None, sha256: str | None, against: str
) -> Problem | None:
    """``None`` if ``path`` has ``size`` bytes and digest ``sha256`` (``None``: not
    checked), else what is wrong with it."""
    try:
        actual = path.stat().st_size
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})", against
    if size is not None and actual != size:
        return f"has {actual} bytes instead of {size}", against
    if sha256 is not None:
        digest = file_sha256(path)
        if digest != sha256:
            return f"has sha256 {digest[:16]}... instead of {sha256[:16]}...", against
    return None


def _pinned(info: ModelInfo) -> tuple[int | None, str | None]:
    """The size and SHA-256 the packaged catalogue records for a zoo file (or None)."""
    sha = info.sha256.lower() if isinstance(info.sha256, str) else None
    if sha is not None and not _SHA256.match(sha):
        raise DownloadError(
            f"{CATALOGUE} records an invalid sha256 {info.sha256!r} for {info.file}: this "
            "pipdetect installation is damaged; reinstall it"
        )
    size = info.size if isinstance(info.size, int) and not isinstance(info.size, bool) else None
    return size, sha


def _agree(info: ModelInfo, record: FileRecord, req: _Request) -> None:
    """Refuse a manifest that describes another file than the packaged catalogue."""
    size, sha = _pinned(info)
    if (size is None or size == record.size) and (sha is None or sha == record.sha256):
        return
    raise DownloadError(
        f"{MANIFEST} of {req.repo_id} (revision {req.revision}) describes {info.file} as "
        f"{record.size} bytes, sha256 {record.sha256[:16]}..., but {CATALOGUE} of this "
        f"pipdetect release records {size} bytes, sha256 {(sha or '?')[:16]}...; the file "
        "was not downloaded. The repository no longer holds the file this release was "
        "published with (or was tampered with): use the pipdetect release that matches "
        "it, or pass the path of a model file you trust."
    )


# --------------------------------------------------------------------------- resolution


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def _default_cache_dir() -> Path:
    """The Hub cache, with the environment read now (same precedence as huggingface_hub)."""
    from huggingface_hub import constants

    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.path.expandvars(os.environ[var])).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.path.expandvars(os.environ["HF_HOME"])).expanduser() / "hub"
    return Path(constants.HF_HUB_CACHE).expanduser()


@dataclass(frozen=True)
class _Request:
    repo_id: str
    revision: str
    cache_dir: Path
    endpoint: str
    offline: bool
    model_file: str
    """The zoo file the user asked for (error messages name it, not the manifest)."""
    unreachable: str | None = None
    """Why the Hub could not be reached (then only the cache is used), or ``None``."""

    @property
    def storage(self) -> Path:
        """The repository's folder in the Hub cache."""
        return self.cache_dir / ("models--" + self.repo_id.replace("/", "--"))

    def url(self, filename: str, revision: str | None = None) -> str:
        return f"{self.endpoint}/{self.repo_id}/resolve/{revision or self.revision}/{filename}"

    def by_hand(self) -> str:
        model = self.model_file
        return (
            f"To work without network access, get {self.url(model)} another way and pass its "
            f"path instead of the name (LandmarkDetector('/path/to/{model}')), or run "
            f"`hf download {self.repo_id} {model} {MANIFEST_FILE}` on a machine that can "
            f"reach the Hub and copy its cache folder {self.storage.name} into {self.cache_dir} "
            "(then HF_HUB_OFFLINE=1 uses it)."
        )


def _make_request(
    repo_id: str | None,
    revision: str | None,
    cache_dir: str | os.PathLike[str] | None,
    offline: bool | None,
    model_file: str,
) -> _Request:
    from huggingface_hub import constants

    cat = _catalogue()
    repo = repo_id or os.environ.get(ENV_REPO) or cat.get("repo_id") or DEFAULT_REPO_ID
    if not _REPO_ID.match(repo):
        raise ValueError(f"invalid Hub repository id {repo!r}: expected 'owner/name'")
    rev = revision or os.environ.get(ENV_REVISION) or cat.get("revision") or "main"
    cache = Path(cache_dir).expanduser() if cache_dir is not None else _default_cache_dir()
    endpoint = (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")
    if offline is None:
        offline = (
            _env_true("HF_HUB_OFFLINE")
            or _env_true("TRANSFORMERS_OFFLINE")
            or bool(constants.HF_HUB_OFFLINE)
        )
    return _Request(repo, rev, cache.resolve(), endpoint, bool(offline), model_file)


_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+://")


def _looks_like_path(value: str | os.PathLike[str]) -> bool:
    if isinstance(value, os.PathLike):
        return True
    seps = {"/", os.sep} | ({os.altsep} if os.altsep else set())
    return (
        value.lower().endswith(".onnx")
        or any(s in value for s in seps)
        or Path(value).expanduser().exists()
    )


def resolve_model(
    name_or_path: str | os.PathLike[str] | None = None,
    *,
    repo_id: str | None = None,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    offline: bool | None = None,
) -> Path:
    """A local, verified model file for a zoo name or a path.

    * A path (a :class:`os.PathLike`, a string naming an existing file or folder, containing
      a path separator or ending in ``.onnx``) is returned as it is (``~`` expanded);
      whether it is a valid model is for :func:`pipdetect.model.load_model` to say.
    * ``None`` means :data:`DEFAULT_MODEL`.
    * A name from :func:`list_models` is downloaded on first use into the Hub cache
      and checked against the zoo's manifest (see the module docstring).

    ``repo_id`` / ``revision`` default to ``PIPDETECT_REPO`` / ``PIPDETECT_REVISION``,
    then to the catalogue's repository and revision. ``cache_dir`` defaults to
    the Hub cache. ``offline=None`` follows ``HF_HUB_OFFLINE``; offline, only
    cached files are used.

    Raises :class:`~pipdetect.errors.ModelNotFoundError` for an unknown name
    (with the closest matches), for a model the zoo does not publish, and for a
    model not cached while offline; :class:`~pipdetect.errors.DownloadError` when
    the Hub cannot be reached or a file fails its integrity check twice. Both
    messages say where the file would be cached and how to place it by hand.
    """
    if name_or_path is None:
        name_or_path = DEFAULT_MODEL
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise TypeError(
            f"model must be a zoo name or a path, got {type(name_or_path).__name__}"
        )
    if isinstance(name_or_path, str) and _URL.match(name_or_path.strip()):
        raise ModelNotFoundError(
            f"model {name_or_path!r} is a URL; pipdetect does not download models from URLs. "
            "Download the file yourself (e.g. curl -LO URL) and pass its path, or pass a "
            "model name from pipdetect.list_models()"
        )
    if _looks_like_path(name_or_path):
        return Path(name_or_path).expanduser()
    info = get_model_info(str(name_or_path))
    if info.bundled:
        return bundled_path(info.name)
    try:
        return _download(info, repo_id, revision, cache_dir, offline)
    except (DownloadError, ModelNotFoundError) as exc:
        if info.published:
            raise
        raise type(exc)(f"{unpublished_message(info)}\nThe download attempt said: {exc}") from exc


def unpublished_message(info: ModelInfo) -> str:
    """What to say first about a zoo name while the zoo is not published: that it is not,
    then what to do instead."""
    return (
        f"{info.name!r} is a name of pipdetect's model zoo, which is not published yet: its "
        "file has not been uploaded, so it cannot be downloaded. Use the bundled default "
        "model (no model argument), or convert the official PIP-Net checkpoint yourself, "
        f"without PyTorch: pipdetect convert CHECKPOINT.pth --backbone {info.backbone} "
        f"--dataset {info.dataset} -o {info.file}, then pass that file's path."
    )


def _download(info: ModelInfo, repo_id: str | None, revision: str | None,
              cache_dir: str | os.PathLike[str] | None, offline: bool | None) -> Path:
    """The verified local file of zoo model ``info`` (see :func:`resolve_model`)."""
    req = _check_reachable(_make_request(repo_id, revision, cache_dir, offline, info.file))
    with _exclusive(_lock_path(req, info.file)):
        _remove_stale_downloads(req)
        manifest_path, records = _fetch_manifest(req)
        record = records.get(info.file)
        if record is None:
            published = ", ".join(sorted(records)) or "nothing"
            raise ModelNotFoundError(
                f"model {info.name!r} is in pipdetect's catalogue but not published in "
                f"{req.repo_id} at revision {req.revision} (its {MANIFEST_FILE} lists "
                f"{published}). Pick another model (pipdetect.list_models()) or convert "
                "the official checkpoint yourself with `pipdetect convert` and pass the "
                "file's path."
            )
        _agree(info, record, req)
        commit = manifest_path.parent.name
        if not _COMMIT.match(commit):  # pragma: no cover - not the Hub cache layout
            commit = req.revision
        size, sha = _pinned(info)

        def check(path: Path) -> Problem | None:
            return (_check_file(path, size, sha, CATALOGUE)
                    or _check_file(path, record.size, record.sha256, MANIFEST))

        return _fetch_verified(req, info.file, commit, check)


def bundled_path(name: str = DEFAULT_MODEL) -> Path:
    """The file of a model inside the package (no network, no cache)."""
    info = get_model_info(name)
    if not info.bundled:
        raise ModelNotFoundError(f"{info.name!r} is a zoo model, not one inside the package")
    path = Path(str(resources.files("pipdetect").joinpath("assets", info.file)))
    if not path.is_file():
        raise ModelNotFoundError(
            f"the bundled model file {path} is missing: this pipdetect installation is "
            "incomplete; reinstall it (pip install --force-reinstall pipdetect)"
        )
    return path


REACH_TIMEOUT = 3.0
"""Seconds to wait for a TCP connection to the Hub (or the proxy) before giving up."""


def _check_reachable(req: _Request) -> _Request:
    """Fail fast, with the usual message, when the Hub cannot be reached at all.

    ``huggingface_hub`` retries a failed connection five times with back-off
    (about 23 s); one TCP connection attempt tells the same in at most
    :data:`REACH_TIMEOUT` s. A cached file still wins: unreachable, the lookup
    then continues offline from the cache. Behind an HTTPS proxy the proxy is
    the one tried.
    """
    import socket
    from urllib.parse import urlsplit

    if req.offline:
        return req
    target = urlsplit(req.endpoint)
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    if proxy and target.scheme == "https":
        target = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    host = target.hostname or ""
    port = target.port or (443 if target.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=REACH_TIMEOUT):
            return req
    except OSError as exc:
        reason = f"{host}:{port} is unreachable ({exc.strerror or exc})"
    return dataclasses.replace(req, unreachable=reason)


def _fetch_manifest(req: _Request) -> tuple[Path, dict[str, FileRecord]]:
    parsed: dict[str, dict[str, FileRecord]] = {}

    def check(path: Path) -> Problem | None:
        try:
            parsed["records"] = parse_manifest(path.read_text("utf-8"), MANIFEST_FILE)
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            return str(exc), MANIFEST
        return None

    path = _fetch_verified(req, MANIFEST_FILE, req.revision, check)
    return path, parsed["records"]


def _fetch_verified(
    req: _Request, filename: str, revision: str, check: Callable[[Path], Problem | None]
) -> Path:
    """Download (or find in the cache) ``filename`` and run ``check`` on it.

    A file that fails ``check`` is removed from the cache and fetched once more.
    """
    for attempt in (1, 2):
        path = _hub_download(req, filename, revision)
        found = check(path)
        if found is None:
            return path
        problem, against = found
        _remove_cached(path)
        where = f"{filename} ({req.url(filename, revision)})"
        if req.offline:
            raise DownloadError(
                f"the cached copy of {where} {problem}, so it was removed; offline mode is "
                "on (HF_HUB_OFFLINE), so it cannot be fetched again. Run once with network "
                f"access to download it again. {req.by_hand()}"
            )
        if attempt == 2:
            raise DownloadError(
                f"{where} {problem} after being downloaded again: the file served does not "
                f"match {against}, so it was not kept. Try again later, pick "
                "another revision (PIPDETECT_REVISION), or report it to the pipdetect "
                "maintainers."
            )
        logger.warning("pipdetect: %s %s; fetching it again", where, problem)
    raise AssertionError("unreachable")  # pragma: no cover


def _hub_download(req: _Request, filename: str, revision: str) -> Path:
    """``hf_hub_download`` with its errors turned into pipdetect's, telling what to do."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.utils import (
        EntryNotFoundError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    from ._version import __version__

    where = f"{req.repo_id} (revision {revision}) on {req.endpoint}"
    try:
        path = hf_hub_download(
            req.repo_id,
            filename,
            revision=revision,
            cache_dir=str(req.cache_dir),
            local_files_only=req.offline or req.unreachable is not None,
            endpoint=req.endpoint,
            library_name="pipdetect",
            library_version=__version__,
        )
    except LocalEntryNotFoundError as exc:
        if req.offline:
            raise ModelNotFoundError(
                f"{filename} of {req.repo_id} (revision {revision}) is not in the local "
                f"cache {req.storage} and offline mode is on (HF_HUB_OFFLINE=1 or "
                "offline=True). Run once with network access to download it, or pass the "
                f"path of a model file. {req.by_hand()}"
            ) from None
        raise DownloadError(
            f"could not download {filename} from {where}: {req.unreachable or _cause(exc)}. "
            "The file would be "
            f"cached under {req.storage}. Check your connection (and HF_ENDPOINT). "
            f"{req.by_hand()}"
        ) from None
    except RepositoryNotFoundError:
        raise DownloadError(
            f"the model zoo repository {req.repo_id!r} was not found on {req.endpoint} (not "
            f"published yet, private, or a wrong repo_id / {ENV_REPO}). Pass the path of a "
            "model file instead (convert a checkpoint with `pipdetect convert`)."
        ) from None
    except RevisionNotFoundError:
        raise DownloadError(
            f"revision {revision!r} does not exist in {req.repo_id} on {req.endpoint}; "
            f"check the revision argument / {ENV_REVISION}."
        ) from None
    except EntryNotFoundError:
        if filename == MANIFEST_FILE:
            raise DownloadError(
                f"{req.repo_id} (revision {revision}) has no {MANIFEST_FILE}, so it is not a "
                f"pipdetect model zoo; check repo_id / {ENV_REPO}."
            ) from None
        raise DownloadError(
            f"{filename} is listed in the {MANIFEST_FILE} of {where} but missing from the "
            "repository; the zoo is incomplete at this revision. Try another revision "
            f"({ENV_REVISION}) or report it to the pipdetect maintainers."
        ) from None
    except (HfHubHTTPError, OSError, Exception) as exc:  # any transfer failure
        local = _local_problem(exc, req)
        if local is not None:
            raise DownloadError(f"could not store {filename} from {where}: {local}") from exc
        raise DownloadError(
            f"downloading {filename} from {where} failed: {_cause(exc)}. Nothing partial was "
            f"kept; the file would be cached under {req.storage}. Try again. "
            f"{req.by_hand()}"
        ) from exc
    return Path(path)


def _local_problem(exc: BaseException, req: _Request) -> str | None:
    """A message with the fix when a download failed on this machine's disk, else None."""
    chain: list[BaseException] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append(current)
        current = current.__cause__ or current.__context__
    for err in chain:
        if not isinstance(err, OSError) or err.errno is None:
            continue
        if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return (
                f"the model cache {req.cache_dir} is not writable ({err.strerror}). Set HF_HOME "
                "or HF_HUB_CACHE to a writable folder, pass cache_dir=..., or pass the path of "
                "a model file you placed yourself. Nothing partial was kept."
            )
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            return (
                f"no space left on the device that holds the model cache {req.cache_dir} "
                f"({err.strerror}). Free some space, or move the cache (HF_HOME / cache_dir=) "
                "to a disk with room. Nothing partial was kept."
            )
    return None


def _cause(exc: BaseException) -> str:
    """The innermost error of a chain, as ``Type: first line``."""
    seen = set()
    while exc.__cause__ is not None and id(exc) not in seen:
        seen.add(id(exc))
        exc = exc.__cause__
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300]}" if text else type(exc).__name__


def _remove_cached(pointer: Path) -> None:
    """Delete a cached file: the snapshot entry and the blob it links to."""
    blob: Path | None = None
    with contextlib.suppress(OSError):
        if pointer.is_symlink():
            blob = pointer.resolve()
    for p in (pointer, blob):
        if p is not None:
            try:
                p.unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise DownloadError(
                    f"{p} is damaged and cannot be removed ({exc.strerror or exc}); delete it "
                    "by hand and try again"
                ) from None


def _remove_stale_downloads(req: _Request) -> None:
    """Delete partial downloads (``blobs/<etag>[.<id>].incomplete``) no one is writing.

    ``huggingface_hub`` writes a blob under the lock ``.locks/<repo folder>/<etag>.lock``
    and deletes its partial file when a download fails, but a process killed mid-file
    leaves it for good. A partial file whose blob lock can be taken at once is stale: it
    is removed (a download running in another thread or process holds the lock, so its
    file is left alone). Best effort: errors are ignored.
    """
    from filelock import FileLock, Timeout

    blobs = req.storage / "blobs"
    with contextlib.suppress(OSError):
        partial = [p for p in blobs.iterdir() if p.name.endswith(".incomplete")]
        for path in partial:
            etag = path.name.split(".", 1)[0]
            lock = FileLock(str(req.cache_dir / ".locks" / req.storage.name / f"{etag}.lock"))
            try:
                with lock.acquire(timeout=0):
                    path.unlink(missing_ok=True)
                    logger.info("pipdetect: removed the stale partial download %s", path)
            except (Timeout, OSError):
                continue


# --------------------------------------------------------------------------- locking

_THREAD_LOCKS: dict[str, threading.Lock] = {}
_THREAD_LOCKS_GUARD = threading.Lock()


def _lock_path(req: _Request, filename: str) -> Path:
    return req.cache_dir / ".locks" / "pipdetect" / req.storage.name / f"{filename}.lock"


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` against other threads and processes.

    A :class:`filelock.FileLock` for other processes (``filelock`` comes with
    ``huggingface_hub``), behind one :class:`threading.Lock` per path for the threads of
    this process. Best effort across processes: on a read-only cache (no lock file can
    be created) only threads of this process are serialised.
    """
    from filelock import FileLock

    with _THREAD_LOCKS_GUARD:
        thread_lock = _THREAD_LOCKS.setdefault(str(path), threading.Lock())
    with thread_lock:
        lock: Any = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            lock = FileLock(str(path))
            lock.acquire()  # no timeout: waits for the other process's download
        except OSError:
            lock = None
        try:
            yield
        finally:
            if lock is not None:
                with contextlib.suppress(OSError):
                    lock.release()

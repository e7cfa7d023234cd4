"""Tests of pipdetect.zoo: catalogue, download on first use, integrity, errors, concurrency.

Every download goes to tests/hubserver.py (a Hub stand-in on 127.0.0.1) through
the real ``huggingface_hub`` client; the cache lives in ``tmp_path``.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hubserver import HF_VARS, HubStandIn, use_stand_in
from modelfactory import known_answer_model, make_spec
from pipdetect import zoo
from pipdetect.errors import DownloadError, ModelNotFoundError, PipdetectError
from pipdetect.model import load_model
from pipdetect.presets import PRESETS, load_meanface

ROOT = Path(__file__).resolve().parents[1]
REPO = "pipdetect/pipnet"
WFLW = "pipnet-r18-wflw"
W300 = "pipnet-r18-300w"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def model_bytes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """Small known-answer models in pipdetect's format, named like zoo models."""
    folder = tmp_path_factory.mktemp("models")
    out = {}
    for name, preset in ((WFLW, "WFLW"), (W300, "300W")):
        mf = load_meanface(preset)
        path = known_answer_model(folder / f"{name}.onnx", mf, make_spec(mf, name=name))
        out[name] = path.read_bytes()
    return out


@pytest.fixture
def hub() -> Any:
    with HubStandIn() as server:
        yield server


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, hub: HubStandIn) -> Path:
    """Point the Hub client at the stand-in and the cache at tmp_path; returns HF_HOME."""
    home = tmp_path / "hf"
    use_stand_in(monkeypatch, hub, home)
    return home


def publish(
    hub: HubStandIn,
    files: dict[str, bytes],
    *,
    repo: str = REPO,
    manifest_override: dict[str, bytes] | None = None,
) -> str:
    """Put ``files`` and a manifest describing them (or ``manifest_override``) on the hub."""
    described = {**files, **(manifest_override or {})}
    manifest = {
        "manifest_version": 1,
        "files": {
            f"{name}.onnx": {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
            for name, data in described.items()
        },
    }
    for name, data in files.items():
        hub.put(repo, f"{name}.onnx", data)
    return hub.put(repo, "manifest.json", json.dumps(manifest).encode())


def cache_leftovers(home: Path) -> list[Path]:
    """Partial downloads left anywhere in the cache."""
    return [p for p in home.rglob("*") if p.name.endswith(".incomplete")]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------- catalogue


def test_runtime_catalogue_is_the_models_catalogue() -> None:
    shipped = json.loads((ROOT / "src/pipdetect/assets/zoo.json").read_text())
    source = json.loads((ROOT / "models/catalogue.json").read_text())
    assert shipped == source, "copy models/catalogue.json to src/pipdetect/assets/zoo.json"


def test_list_models_matches_catalogue_and_presets() -> None:
    cat = json.loads((ROOT / "models/catalogue.json").read_text())
    everything = zoo.list_models()
    assert [i.name for i in everything if i.bundled] == list(zoo.BUNDLED)
    assert everything[0].name == zoo.DEFAULT_MODEL  # the bundled default comes first
    infos = [i for i in everything if not i.bundled]
    assert [i.name for i in infos] == [m["name"] for m in cat["models"]]
    assert len({i.name for i in infos}) == len(infos)
    assert len({i.file for i in infos}) == len(infos)
    for i, info in enumerate(infos):
        entry = cat["models"][i]
        preset = PRESETS[info.dataset]
        assert info.num_landmarks == preset.num_landmarks == entry["num_landmarks"]
        assert info.nme == preset.nme.get(info.backbone) == entry["nme"]
        assert info.backbone == entry["backbone"]
        assert info.file == f"{info.name}.onnx"
        assert info.size == entry["size"]
        assert info.license
        assert entry["original"]["file"] == "epoch59.pth"
        folder = entry["original"]["folder"]
        assert f"_r{info.backbone[len('resnet'):]}_" in folder
    # every official dataset x backbone combination, plus the two GSSL models
    combos = {(i.dataset, i.backbone) for i in infos}
    for ds in ("WFLW", "300W", "COFW", "AFLW", "LaPa"):
        for bb in ("resnet18", "resnet50", "resnet101"):
            assert (ds, bb) in combos
    assert ("300W-CelebA", "resnet18") in combos
    assert ("300W-COFW-WFLW", "resnet18") in combos
    assert {i.num_landmarks for i in infos} == {98, 68, 29, 19, 106}


def test_default_model_is_bundled_and_the_zoo_default_is_a_zoo_model() -> None:
    cat = json.loads((ROOT / "models/catalogue.json").read_text())
    info = zoo.get_model_info(zoo.DEFAULT_MODEL)
    assert info.bundled and info.name == zoo.DEFAULT_MODEL
    facts = json.loads((ROOT / "src/pipdetect/assets" / f"{zoo.DEFAULT_MODEL}.json").read_text())
    path = zoo.bundled_path()
    assert path.stat().st_size == facts["size"] == info.size
    assert zoo.file_sha256(path) == facts["sha256"] == info.sha256
    assert "research" in info.license.lower()
    assert not zoo.get_model_info(cat["default_model"]).bundled
    assert cat["repo_id"] == zoo.DEFAULT_REPO_ID


def test_known_original_checkpoint_facts() -> None:
    cat = json.loads((ROOT / "models/catalogue.json").read_text())
    entry = next(m for m in cat["models"] if m["name"] == WFLW)
    assert entry["original"]["folder"] == "WFLW/pip_32_16_60_r18_l2_l1_10_1_nb10"
    assert entry["original"]["size"] == 49_393_015
    assert entry["original"]["sha256"].startswith("44002daaf318")


def test_unknown_name_suggests_close_matches(hub: HubStandIn) -> None:
    with pytest.raises(ModelNotFoundError) as info:
        zoo.resolve_model("pipnet-r18-wflv")
    message = str(info.value)
    assert "did you mean 'pipnet-r18-wflw'" in message
    assert "list_models" in message
    assert isinstance(info.value, LookupError)
    assert hub.requests == []


@settings(max_examples=40, deadline=None)
@given(
    index=st.integers(0, len(zoo.list_models()) - 1),
    position=st.integers(0, 100),
    char=st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789"),
)
def test_one_typo_always_gets_suggestions(index: int, position: int, char: str) -> None:
    names = [i.name for i in zoo.list_models()]
    name = names[index]
    pos = position % len(name)
    typo = name[:pos] + char + name[pos + 1 :]
    if typo in names:
        return
    with pytest.raises(ModelNotFoundError, match="did you mean") as info:
        zoo.get_model_info(typo)
    suggested = str(info.value).split("did you mean", 1)[1].split("?", 1)[0]
    assert any(repr(n) in suggested for n in names)


def test_names_are_case_and_underscore_insensitive() -> None:
    assert zoo.get_model_info("PIPNet_R18_WFLW").name == WFLW


# --------------------------------------------------------------------------- local paths


@pytest.mark.parametrize(
    "value",
    [
        Path("does/not/exist.onnx"),
        "model.onnx",
        "MODEL.ONNX",
        "some/folder/model.bin",
        "~/pipdetect-test-nonexistent.onnx",
    ],
)
def test_local_paths_are_returned_as_they_are(hub: HubStandIn, value: Any) -> None:
    assert zoo.resolve_model(value) == Path(value).expanduser()
    assert hub.requests == []


def test_existing_file_without_suffix_is_a_path(
    hub: HubStandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / WFLW).write_bytes(b"mine")
    assert zoo.resolve_model(WFLW) == Path(WFLW)
    assert hub.requests == []


def test_wrong_type_is_refused() -> None:
    with pytest.raises(TypeError, match="zoo name or a path"):
        zoo.resolve_model(3)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- download


def test_first_use_downloads_second_needs_no_network(
    env: Path, hub: HubStandIn, model_bytes: dict[str, bytes]
) -> None:
    publish(hub, model_bytes)
    path = zoo.resolve_model(WFLW)
    assert path.read_bytes() == model_bytes[WFLW]
    assert (env / "hub") in path.parents
    assert load_model(path).spec.num_landmarks == 98
    assert hub.count("GET", f"{WFLW}.onnx") == 1
    hub.stop()
    again = zoo.resolve_model(WFLW)
    assert again == path
    assert again.read_bytes() == model_bytes[WFLW]


def test_none_and_the_default_name_mean_the_bundled_file_without_network(
    env: Path, hub: HubStandIn
) -> None:
    assert zoo.resolve_model(None) == zoo.bundled_path()
    assert zoo.resolve_model(zoo.DEFAULT_MODEL.upper()) == zoo.bundled_path()
    assert hub.requests == []
    assert not any(env.rglob("*.onnx"))


def test_unreachable_hub_fails_fast_with_the_download_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No 23 s of retries: one refused connection, then the usual DownloadError."""
    import socket
    import time

    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    start = time.perf_counter()
    with pytest.raises(DownloadError, match=r"could not download manifest\.json") as info:
        zoo.resolve_model(WFLW, cache_dir=tmp_path / "hf" / "hub", offline=False)
    assert time.perf_counter() - start < 5
    assert "unreachable" in str(info.value) and "Check your connection" in str(info.value)


def test_unreachable_hub_still_serves_a_cached_model(
    env: Path, hub: HubStandIn, model_bytes: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    publish(hub, model_bytes)
    first = zoo.resolve_model(WFLW)
    hub.stop()
    monkeypatch.setattr(zoo, "REACH_TIMEOUT", 1.0)
    assert zoo.resolve_model(WFLW) == first


@pytest.mark.parametrize("how", ["env", "argument", "constants"])
def test_offline_mode_uses_the_cache(
    env: Path,
    hub: HubStandIn,
    model_bytes: dict[str, bytes],
    monkeypatch: pytest.MonkeyPatch,
    how: str,
) -> None:
    import huggingface_hub.constants as constants

    publish(hub, model_bytes)
    path = zoo.resolve_model(WFLW)
    seen = len(hub.requests)
    if how == "env":
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    elif how == "constants":
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    offline = True if how == "argument" else None
    assert zoo.resolve_model(WFLW, offline=offline) == path
    assert len(hub.requests) == seen  # the server was not asked anything


def test_offline_with_empty_cache_says_so(
    env: Path, hub: HubStandIn, model_bytes: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    publish(hub, model_bytes)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError) as info:
        zoo.resolve_model(WFLW)
    message = str(info.value)
    assert "offline" in message
    assert str(env / "hub") in message
    assert hub.requests == []


def test_offline_with_manifest_but_not_model_cached(
    env: Path, hub: HubStandIn, model_bytes: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    publish(hub, model_bytes)
    zoo.resolve_model(WFLW)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError, match=f"{W300}.onnx .* offline"):
        zoo.resolve_model(W300)


@pytest.mark.parametrize("damage", ["flip", "truncate", "empty", "append"])
def test_damaged_cache_entry_is_fetched_again_once(
    env: Path, hub: HubStandIn, model_bytes: dict[str, bytes], damage: str
) -> None:
    publish(hub, model_bytes)
    path = zoo.resolve_model(WFLW)
    good = model_bytes[WFLW]
    blob = path.resolve()
    if damage == "flip":
        blob.write_bytes(good[:100] + bytes([good[100] ^ 1]) + good[101:])
    elif damage == "truncate":
        blob.write_bytes(good[: len(good) // 2])
    elif damage == "empty":
        blob.write_bytes(b"")
    else:
        blob.write_bytes(good + b"\0")
    again = zoo.resolve_model(WFLW)
    assert again.read_bytes() == good
    assert hub.count("GET", f"{WFLW}.onnx") == 2


def test_damaged_cached_manifest_is_fetched_again(
    env: Path, hub: HubStandIn, model_bytes: dict[str, bytes]
) -> None:
    publish(hub, model_bytes)
    zoo.resolve_model(WFLW)
    manifest = next((env / "hub").rglob("snapshots/*/manifest.json"))
    manifest.resolve().write_text("{not json")
    assert zoo.resolve_model(WFLW).read_bytes() == model_bytes[WFLW]
    assert hub.count("GET", "manifest.json") == 2


def test_damaged_cache_while_offline_is_a_clear_error(
    env: Path, hub: HubStandIn, model_bytes: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    publish(hub, model_bytes)
    path = zoo.resolve_model(WFLW)
    path.resolve().write_bytes(b"garbage")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DownloadError, match="removed; offline mode is on"):
        zoo.resolve_model(WFLW)
    assert not path.exists()


def test_wrong_checksum_on_the_server_is_a_clear_error(
    env: Path, hub: HubStandIn, model_bytes: dict[str, bytes]
) -> None:
    publish(hub, model_bytes, manifest_override={WFLW: model_bytes[W300]})
    with pytest.raises(DownloadError) as info:
        zoo.resolve_model(WFLW)
    message = str(info.value)
    assert "does not match the zoo's manifest.json" in message
    assert f"{WFLW}.onnx" in message
    assert hub.count("GET", f"{WFLW}.onnx") == 2  # fetched, then fetched again once
    assert not list((env / "hub").rglob(f"snapshots/*/{WFLW}.onnx"))
    blobs = [p.read_bytes() for p in (env / "hub").rglob("blobs/*")]
    assert model_bytes[WFLW] not in blobs
    assert cache_leftovers(env) == []


def test_bytes_damaged_in_transit_once_are_refetched(
    env: Path, hub: HubStandIn, model_bytes: dict[str, bytes]
) -> None:
    publish(hub, model_bytes)
    hub.fail(f"{WFLW}.onnx", "corrupt", times=1)
    assert zoo.resolve_model(WFLW).read_bytes() == model_bytes[WFLW]
    assert hub.count("GET", f"{WFLW}.onnx") == 2


@pytest.mark.parametrize("fault", ["404", "500", "drop"])
def test_server_errors_are_clear_and_leave_nothing_behind(
    env: Path, hub: HubStandIn, model_bytes: dict[str, bytes], fault: str
) -> None:
    publish(hub, model_bytes)
    hub.fail(f"{WFLW}.onnx", fault)
    with pytest.raises(DownloadError) as info:
        zoo.resolve_model(WFLW)
    message = str(info.value)
    assert f"{WFLW}.onnx" in message
    if fault == "404":
        assert "missing from the repository" in message
    else:
        assert str(env / "hub" / "models--pipdetect--pipnet") in message
        assert "LandmarkDetector('/path/to/" in message
    assert cache_leftovers(env) == []
    assert not list((env / "hub").rglob(f"snapshots/*/{WFLW}.onnx"))
    # once the server is well again, the model comes
    hub.heal()
    assert zoo.resolve_model(WFLW).read_bytes() == model_bytes[WFLW]


def test_connection_dropped_once_is_resumed(
    env: Path, hub: HubStandIn, model_bytes: dict[str, bytes]
) -> None:
    publish(hub, model_bytes)
    hub.fail(f"{WFLW}.onnx", "drop", times=1)
    assert zoo.resolve_model(WFLW).read_bytes() == model_bytes[WFLW]
    assert cache_leftovers(env) == []


def test_unreachable_hub_says_where_the_file_would_go(
    env: Path, hub: HubStandIn, model_bytes: dict[str, bytes]
) -> None:
    hub.stop()
    with pytest.raises(DownloadError) as info:
        zoo.resolve_model(WFLW)
    message = str(info.value)
    assert "could not download manifest.json" in message
    assert str(env / "hub" / "models--pipdetect--pipnet") in message
    assert "HF_HUB_OFFLINE=1" in message and "hf download pipdetect/pipnet" in message
    # The way out names the model the user asked for, not the manifest fetched first.
    assert f"LandmarkDetector('/path/to/{WFLW}.onnx')" in message
    assert "/path/to/manifest.json" not in message
    assert isinstance(info.value, OSError) and isinstance(info.value, PipdetectError)


def test_missing_repository_and_revision(
    env: Path, hub: HubStandIn, model_bytes: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    publish(hub, model_bytes)
    monkeypatch.setenv("PIPDETECT_REPO", "nobody/nothing")
    with pytest.raises(DownloadError, match="'nobody/nothing' was not found"):
        zoo.resolve_model(WFLW)
    monkeypatch.delenv("PIPDETECT_REPO")
    with pytest.raises(DownloadError, match="revision 'v9' does not exist"):
        zoo.resolve_model(WFLW, revision="v9")


def test_repository_without_manifest_is_not_a_zoo(
    env: Path, hub: HubStandIn, model_bytes: dict[str, bytes]
) -> None:
    hub.put("someone/models", f"{WFLW}.onnx", model_bytes[WFLW])
    with pytest.raises(DownloadError, match=r"no manifest\.json, so it is not a pipdetect"):
        zoo.resolve_model(WFLW, repo_id="someone/models")


def test_model_missing_from_manifest(
    env: Path, hub: HubStandIn, model_bytes: dict[str, bytes]
) -> None:
    publish(hub, {W300: model_bytes[W300]})
    with pytest.raises(ModelNotFoundError, match=f"not published in {REPO}.*{W300}.onnx"):
        zoo.resolve_model(WFLW)


def test_repo_and_revision_overrides(
    env: Path, hub: HubStandIn, model_bytes: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    fork = "someone/fork"
    old = publish(hub, {WFLW: model_bytes[WFLW]}, repo=fork)
    new = publish(hub, {WFLW: model_bytes[W300]}, repo=fork)  # replaced at a new commit
    assert old != new
    monkeypatch.setenv("PIPDETECT_REPO", fork)
    latest = zoo.resolve_model(WFLW)
    assert latest.read_bytes() == model_bytes[W300]
    assert "models--someone--fork" in str(latest)
    assert zoo.resolve_model(WFLW, revision=old).read_bytes() == model_bytes[WFLW]
    monkeypatch.setenv("PIPDETECT_REVISION", old)
    assert zoo.resolve_model(WFLW).read_bytes() == model_bytes[WFLW]
    monkeypatch.delenv("PIPDETECT_REPO")
    monkeypatch.delenv("PIPDETECT_REVISION")
    with pytest.raises(DownloadError, match="'pipdetect/pipnet' was not found"):
        zoo.resolve_model(WFLW)
    assert zoo.resolve_model(WFLW, repo_id=fork).read_bytes() == model_bytes[W300]


# --------------------------------------------------------------------------- catalogue pins


def pin(monkeypatch: pytest.MonkeyPatch, name: str, **fields: Any) -> None:
    """Make the packaged catalogue record ``fields`` (size, sha256) for model ``name``,
    as ``models/publish.py --record`` writes them."""
    cat = json.loads(json.dumps(zoo._catalogue()))
    entry = next(m for m in cat["models"] if m["name"] == name)
    entry.update(fields)
    monkeypatch.setattr(zoo, "_catalogue", lambda: cat)


def test_every_catalogue_entry_has_size_and_sha256_fields() -> None:
    """null until the zoo is published; then publish.py --record fills them in."""
    for m in zoo._catalogue()["models"]:
        assert "size" in m and "sha256" in m, m["name"]
        assert m["size"] is None or (isinstance(m["size"], int) and m["size"] > 0)
        assert m["sha256"] is None or len(m["sha256"]) == 64


def test_a_file_matching_its_catalogue_pin_is_used(
    env: Path, hub: HubStandIn, model_bytes: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = model_bytes[WFLW]
    pin(monkeypatch, WFLW, size=len(data), sha256=hashlib.sha256(data).hexdigest())
    publish(hub, model_bytes)
    assert zoo.get_model_info(WFLW).sha256 == hashlib.sha256(data).hexdigest()
    assert zoo.resolve_model(WFLW).read_bytes() == data


def test_the_catalogue_pin_wins_over_a_manifest_that_agrees_with_the_file(
    env: Path, hub: HubStandIn, model_bytes: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Trust rests in the installed package: a repository whose manifest and file agree
    with each other but not with the catalogue is refused, and nothing is downloaded."""
    other = model_bytes[W300]
    pin(monkeypatch, WFLW, size=len(other), sha256=hashlib.sha256(other).hexdigest())
    publish(hub, model_bytes)
    with pytest.raises(DownloadError) as info:
        zoo.resolve_model(WFLW)
    message = str(info.value)
    assert "pipdetect's catalogue" in message and "not downloaded" in message
    assert hub.count("GET", f"{WFLW}.onnx") == 0
    assert not list((env / "hub").rglob(f"snapshots/*/{WFLW}.onnx"))


@pytest.mark.parametrize("field", ["sha256", "size"])
def test_a_served_file_not_matching_its_pin_is_refused(
    env: Path, hub: HubStandIn, model_bytes: dict[str, bytes], monkeypatch: pytest.MonkeyPatch,
    field: str,
) -> None:
    """Manifest and catalogue agree, the server sends other bytes: the catalogue check
    refuses them (fetched once more, then not kept)."""
    good, bad = model_bytes[WFLW], bytearray(model_bytes[WFLW])
    bad[len(bad) // 2] ^= 0xFF
    if field == "size":
        bad += b"\0"
    pin(monkeypatch, WFLW, size=len(good), sha256=hashlib.sha256(good).hexdigest())
    publish(hub, {WFLW: bytes(bad)}, manifest_override={WFLW: good})
    with pytest.raises(DownloadError) as info:
        zoo.resolve_model(WFLW)
    message = str(info.value)
    assert "does not match pipdetect's catalogue" in message
    assert ("bytes instead of" if field == "size" else "sha256") in message
    assert hub.count("GET", f"{WFLW}.onnx") == 2
    assert not list((env / "hub").rglob(f"snapshots/*/{WFLW}.onnx"))
    assert bytes(bad) not in [p.read_bytes() for p in (env / "hub").rglob("blobs/*")]
    assert cache_leftovers(env) == []


def test_an_unpinned_entry_falls_back_to_the_manifest(
    env: Path, hub: HubStandIn, model_bytes: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    pin(monkeypatch, WFLW, size=None, sha256=None)
    publish(hub, model_bytes, manifest_override={WFLW: model_bytes[W300]})
    with pytest.raises(DownloadError, match=r"does not match the zoo.s manifest\.json"):
        zoo.resolve_model(WFLW)


def test_manifest_and_model_come_from_the_same_commit(
    env: Path, hub: HubStandIn, model_bytes: dict[str, bytes]
) -> None:
    commit = publish(hub, model_bytes)
    path = zoo.resolve_model(WFLW)
    assert path.parent.name == commit
    assert any(p.endswith(f"/resolve/{commit}/{WFLW}.onnx") for _, p in hub.requests)


def test_cache_location_follows_the_environment_and_argument(
    env: Path,
    hub: HubStandIn,
    model_bytes: dict[str, bytes],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    publish(hub, model_bytes)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hubcache"))
    assert (tmp_path / "hubcache") in zoo.resolve_model(WFLW).parents
    explicit = tmp_path / "explicit"
    assert explicit in zoo.resolve_model(WFLW, cache_dir=explicit).parents
    assert not (env / "hub").exists()


def test_endpoint_is_read_when_called(
    env: Path, hub: HubStandIn, model_bytes: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants as constants

    publish(hub, model_bytes)
    # as if huggingface_hub had been imported while HF_ENDPOINT named another (dead) server
    dead = "http://127.0.0.1:9"
    monkeypatch.setattr(constants, "ENDPOINT", dead)
    template = dead + "/{repo_id}/resolve/{revision}/{filename}"
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", template)
    assert zoo.resolve_model(WFLW).read_bytes() == model_bytes[WFLW]
    assert hub.count("GET", f"{WFLW}.onnx") == 1


# --------------------------------------------------------------------------- concurrency


def test_threads_asking_at_once_get_one_good_file(
    env: Path, hub: HubStandIn, model_bytes: dict[str, bytes]
) -> None:
    publish(hub, model_bytes)
    hub.body_delay = 0.2
    barrier = threading.Barrier(6)
    results: list[Any] = [None] * 6

    def work(i: int) -> None:
        barrier.wait()
        try:
            results[i] = zoo.resolve_model(WFLW)
        except Exception as exc:  # reported below
            results[i] = exc

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert all(isinstance(r, Path) for r in results), results
    assert len(set(results)) == 1
    assert results[0].read_bytes() == model_bytes[WFLW]
    assert hub.count("GET", f"{WFLW}.onnx") == 1
    assert cache_leftovers(env) == []


def test_processes_asking_at_once_get_one_good_file(
    env: Path, hub: HubStandIn, model_bytes: dict[str, bytes], tmp_path: Path
) -> None:
    publish(hub, model_bytes)
    hub.body_delay = 0.3
    go = tmp_path / "go"
    script = textwrap.dedent(
        f"""
        import os, sys, time
        from pipdetect import zoo
        import huggingface_hub
        print("ready", flush=True)
        while not os.path.exists({str(go)!r}):
            time.sleep(0.01)
        print(zoo.resolve_model({WFLW!r}), flush=True)
        """
    )
    child_env = {k: v for k, v in os.environ.items() if k not in HF_VARS}
    child_env.update(
        HF_ENDPOINT=hub.url, HF_HOME=str(env), HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script], env=child_env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        for _ in range(2)
    ]
    try:
        for p in procs:
            assert p.stdout is not None
            assert p.stdout.readline().strip() == "ready"
        go.touch()
        outs = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for i, p in enumerate(procs):
        assert p.returncode == 0, outs[i][1]
    paths = {out.strip() for out, _ in outs}
    assert len(paths) == 1
    path = Path(paths.pop())
    assert path.read_bytes() == model_bytes[WFLW]
    assert hub.count("GET", f"{WFLW}.onnx") == 1
    assert cache_leftovers(env) == []


# --------------------------------------------------------------------------- manifest


@settings(max_examples=25, deadline=None)
@given(st.dictionaries(
    st.text("abcdefgh-", min_size=1, max_size=8), st.binary(max_size=300), max_size=4,
))
def test_manifest_round_trip(tmp_path_factory: pytest.TempPathFactory, files: dict) -> None:
    folder = tmp_path_factory.mktemp("manifest")
    paths = []
    for name, data in files.items():
        (folder / f"{name}.onnx").write_bytes(data)
        paths.append(folder / f"{name}.onnx")
    records = zoo.parse_manifest(json.dumps(zoo.build_manifest(paths)))
    assert set(records) == {f"{n}.onnx" for n in files}
    for name, data in files.items():
        rec = records[f"{name}.onnx"]
        assert rec.size == len(data)
        assert rec.sha256 == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("{", "not valid JSON"),
        ("[]", "no 'files'"),
        ('{"manifest_version": 2, "files": {}}', "manifest_version 2"),
        ('{"manifest_version": 1, "files": {"a": {"size": -1, "sha256": "' + "0" * 64 + '"}}}',
         "valid 'size'"),
        ('{"manifest_version": 1, "files": {"a": {"size": true, "sha256": "' + "0" * 64 + '"}}}',
         "valid 'size'"),
        ('{"manifest_version": 1, "files": {"a": {"size": 1, "sha256": "xyz"}}}',
         "valid 'sha256'"),
        ('{"manifest_version": 1, "files": {"a": 3}}', "valid 'size'"),
    ],
)
def test_bad_manifests_are_refused(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        zoo.parse_manifest(text)


# ------------------------------------------------------------------- local disk trouble
# Tests run as root here, where chmod cannot make a folder read-only, so the
# operating system's errors are injected where huggingface_hub writes the file.


def _fail_writing(monkeypatch: pytest.MonkeyPatch, error: OSError) -> None:
    import huggingface_hub.file_download as fd

    real = fd.http_get

    def http_get(url: str, temp_file: Any, *args: Any, **kwargs: Any) -> None:
        real(url, temp_file, *args, **kwargs)  # the bytes arrive, then the disk refuses
        raise error

    monkeypatch.setattr(fd, "http_get", http_get)


@pytest.mark.parametrize(
    "error, words",
    [
        (OSError(errno.ENOSPC, "No space left on device"), "no space left"),
        (PermissionError(errno.EACCES, "Permission denied"), "is not writable"),
        (OSError(errno.EROFS, "Read-only file system"), "is not writable"),
    ],
)
def test_disk_full_and_read_only_cache_are_reported_with_the_fix(
    env: Path,
    hub: HubStandIn,
    model_bytes: dict[str, bytes],
    monkeypatch: pytest.MonkeyPatch,
    error: OSError,
    words: str,
) -> None:
    publish(hub, model_bytes)
    zoo.resolve_model(W300)  # the manifest is cached; the failure hits the model file
    _fail_writing(monkeypatch, error)
    with pytest.raises(DownloadError) as info:
        zoo.resolve_model(WFLW)
    message = str(info.value)
    assert words in message and "HF_HOME" in message and "cache_dir" in message
    assert str(env / "hub") in message
    assert cache_leftovers(env) == []
    assert not list((env / "hub").rglob(f"snapshots/*/{WFLW}.onnx"))


# --------------------------------------------------------------------------- issue 20


@pytest.mark.parametrize("url", ["https://huggingface.co/x/y/resolve/main/m.onnx",
                                 "http://example.org/model.onnx", "hf://pipdetect/pipnet"])
def test_a_url_as_model_name_gets_a_clear_message(hub: HubStandIn, url: str) -> None:
    with pytest.raises(ModelNotFoundError, match="is a URL; pipdetect does not download"):
        zoo.resolve_model(url)
    assert hub.requests == []


def test_the_cli_says_so_for_a_url(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from pipdetect.cli import main

    image = tmp_path / "a.jpg"
    image.write_bytes(b"")
    assert main(["--model", "https://example.org/m.onnx", str(image)]) == 2
    err = capsys.readouterr().err
    assert "is a URL" in err and "not found: https:/" not in err


def test_a_downloader_killed_mid_file_leaves_nothing_for_good(
    env: Path, hub: HubStandIn, model_bytes: dict[str, bytes]
) -> None:
    """A process killed while the body arrives (SIGKILL: no cleanup of its own) leaves its
    partial file; the next resolution removes it under the blob's lock and downloads."""
    publish(hub, model_bytes)
    hub.fail(f"{WFLW}.onnx", "stall")
    child_env = {k: v for k, v in os.environ.items() if k not in HF_VARS}
    child_env.update(HF_ENDPOINT=hub.url, HF_HOME=str(env), HF_HUB_DISABLE_TELEMETRY="1",
                     HF_HUB_DISABLE_PROGRESS_BARS="1")
    child = subprocess.Popen(
        [sys.executable, "-c", f"from pipdetect import zoo; zoo.resolve_model({WFLW!r})"],
        env=child_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(600):  # until the partial file exists (half the body is sent)
            if cache_leftovers(env):
                threading.Event().wait(0.2)
                break
            assert child.poll() is None
            threading.Event().wait(0.05)
        else:
            pytest.fail("the download never started")
    finally:
        child.kill()
        child.wait()
    assert cache_leftovers(env) != []
    hub.heal()
    assert zoo.resolve_model(WFLW).read_bytes() == model_bytes[WFLW]
    assert cache_leftovers(env) == []


def test_a_partial_download_in_progress_is_left_alone(
    env: Path, hub: HubStandIn, model_bytes: dict[str, bytes]
) -> None:
    """A partial file whose blob lock is held (another process downloading) survives."""
    from filelock import FileLock

    publish(hub, model_bytes)
    path = zoo.resolve_model(W300)
    storage = path.parents[2]
    etag = "0" * 64
    partial = storage / "blobs" / f"{etag}.abcd1234.incomplete"
    partial.write_bytes(b"half")
    lock = FileLock(str(env / "hub" / ".locks" / storage.name / f"{etag}.lock"))
    with lock:
        zoo.resolve_model(W300)
        assert partial.exists()
    zoo.resolve_model(W300)
    assert not partial.exists()


# --------------------------------------------------------------------------- unpublished zoo
def test_published_means_bundled_or_recorded() -> None:
    infos = zoo.list_models()
    bundled = len(zoo.BUNDLED)
    assert all(i.bundled and i.published for i in infos[:bundled])
    assert [i.published for i in infos[bundled:]] == [i.sha256 is not None
                                                      for i in infos[bundled:]]


@pytest.mark.parametrize("offline", [True, False])
def test_an_unpublished_zoo_name_says_so_first_then_what_to_do(
    env: Path, hub: HubStandIn, offline: bool
) -> None:
    """Nothing published (the real zoo today): the message starts with that, then says how
    to convert the checkpoint, and keeps the download's own details after."""
    info = zoo.get_model_info(WFLW)
    assert not info.published
    with pytest.raises((ModelNotFoundError, DownloadError)) as caught:
        zoo.resolve_model(WFLW, offline=offline)
    first, _, details = str(caught.value).partition("\n")
    assert first.startswith(f"{WFLW!r} is a name of pipdetect's model zoo, which is not "
                            "published yet"), first
    assert f"pipdetect convert CHECKPOINT.pth --backbone {info.backbone}" in first
    assert details.startswith("The download attempt said:")
    assert isinstance(caught.value.__cause__, type(caught.value))

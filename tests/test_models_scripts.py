"""Tests of models/build_zoo.py (catalogue -> Hub-ready folder) and models/publish.py.

The build is run with a stand-in converter writing small known-answer models
(fast, no PyTorch), and once with the real converter on a random-weight
ResNet-18 checkpoint written by PyTorch. Publishing goes to the local Hub
stand-in through the real ``HfApi``, and the published folder is then
downloaded back through :func:`pipdetect.zoo.resolve_model`.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from conftest import load_script
from hubserver import HubStandIn, use_stand_in
from modelfactory import known_answer_model, make_spec
from pipdetect import zoo
from pipdetect.model import load_model
from pipdetect.presets import load_meanface

ROOT = Path(__file__).resolve().parents[1]
R50_WFLW = "pipnet-r50-wflw"
R18_300W = "pipnet-r18-300w"
R18_WFLW = "pipnet-r18-wflw"


def _load(name: str) -> ModuleType:
    return load_script(ROOT / "models" / f"{name}.py", f"_pipdetect_models_{name}")


@pytest.fixture(scope="module")
def build_zoo() -> ModuleType:
    return _load("build_zoo")


@pytest.fixture(scope="module")
def publish() -> ModuleType:
    return _load("publish")


@pytest.fixture(scope="module")
def catalogue() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((ROOT / "models/catalogue.json").read_text())
    return data


def entry(catalogue: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(e for e in catalogue["models"] if e["name"] == name)
    return found


class FakeConverter:
    """Writes a known-answer model with the metadata the real converter would write."""

    def __init__(self, catalogue: dict[str, Any], wrong: dict[str, Any] | None = None) -> None:
        self.catalogue = catalogue
        self.wrong = wrong or {}
        self.calls: list[tuple[Path, Path, dict[str, Any]]] = []

    def __call__(self, checkpoint: Path, output: Path, **kw: Any) -> None:
        self.calls.append((Path(checkpoint), Path(output), kw))
        e = entry(self.catalogue, kw["name"])
        mf = load_meanface(e["dataset"])
        fields = {"name": kw["name"], "dataset": kw["dataset"], "backbone": kw["backbone"],
                  **self.wrong}
        if "num_landmarks" in fields:
            mf = mf[: fields.pop("num_landmarks")]
        spec = make_spec(mf, num_nb=kw["num_nb"], **fields,
                         provenance={"source_sha256": hashlib.sha256(
                             Path(checkpoint).read_bytes()).hexdigest()})
        known_answer_model(Path(output), mf, spec)


def place(root: Path, catalogue: dict[str, Any], name: str, layout: str = "snapshots") -> Path:
    """Write a fake checkpoint for ``name`` where build_zoo looks for it."""
    e = entry(catalogue, name)
    if layout == "snapshots":
        path = root / "snapshots" / e["original"]["folder"] / e["original"]["file"]
    elif layout == "data":
        path = root / e["original"]["folder"] / e["original"]["file"]
    else:
        path = root / f"{name}.pth"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(f"checkpoint of {name}".encode())
    return path


def header(card: str) -> dict[str, str]:
    """The simple ``key: value`` lines of a model card's YAML header."""
    assert card.startswith("---\n")
    block = card.split("---\n", 2)[1]
    return dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)


# --------------------------------------------------------------------------- build_zoo


def test_build_converts_what_is_there_and_reports_the_rest(
    build_zoo: ModuleType, catalogue: dict[str, Any], tmp_path: Path
) -> None:
    ckpts, out = tmp_path / "ckpts", tmp_path / "zoo"
    place(ckpts, catalogue, R50_WFLW, "snapshots")
    place(ckpts, catalogue, R18_300W, "flat")
    fake = FakeConverter(catalogue)
    logs: list[str] = []
    report = build_zoo.build(ckpts, out, catalogue=catalogue, converter=fake, log=logs.append)

    assert report.built == [R50_WFLW, R18_300W]
    assert report.failed == {}
    assert set(report.missing) == {e["name"] for e in catalogue["models"]} - set(report.built)
    assert any(line.startswith(f"skip {R18_WFLW}") for line in logs)
    # converter called with the catalogue's facts
    kw = {c[2]["name"]: c[2] for c in fake.calls}
    assert kw[R50_WFLW] == {"backbone": "resnet50", "dataset": "WFLW", "num_nb": 10,
                            "name": R50_WFLW}
    assert kw[R18_300W]["dataset"] == "300W"

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["manifest_version"] == 1
    assert set(manifest["files"]) == {f"{R50_WFLW}.onnx", f"{R18_300W}.onnx"}
    for name, rec in manifest["files"].items():
        data = (out / name).read_bytes()
        assert rec == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["LICENSE.md", "README.md", "manifest.json", f"{R50_WFLW}.onnx", f"{R18_300W}.onnx"]
    )


def test_model_card_content(
    build_zoo: ModuleType, catalogue: dict[str, Any], tmp_path: Path
) -> None:
    ckpts, out = tmp_path / "ckpts", tmp_path / "zoo"
    checkpoint = place(ckpts, catalogue, R18_300W, "data")
    build_zoo.build(ckpts, out, catalogue=catalogue, converter=FakeConverter(catalogue),
                    log=lambda s: None)
    card = (out / "README.md").read_text()
    meta = header(card)
    assert meta["license"] == "other"
    assert meta["license_name"] == catalogue["license"]["name"]
    assert meta["license_link"] == "LICENSE.md"
    assert meta["library_name"] == "pipdetect"
    assert "- pipnet" in card and "- onnx" in card
    assert "$" not in card.replace("$$", "")  # every placeholder filled
    data = (out / f"{R18_300W}.onnx").read_bytes()
    row = next(line for line in card.splitlines() if line.startswith(f"| `{R18_300W}`"))
    assert "| 68 |" in row and "| resnet18 |" in row and "3.36" in row
    assert hashlib.sha256(data).hexdigest()[:16] in row
    assert "Research use only" in card and "LICENSE.md" in card
    assert "pip install pipdetect" in card and f'LandmarkDetector("{R18_WFLW}")' in card
    # provenance: original location and the checkpoint's own hash
    assert "data_300W/pip_32_16_60_r18_l2_l1_10_1_nb10/epoch59.pth" in card
    assert hashlib.sha256(checkpoint.read_bytes()).hexdigest() in card
    # the models left out are named
    assert "not in this repository" in card and f"`{R18_WFLW}`" in card
    license_md = (out / "LICENSE.md").read_text()
    assert "MIT License" in license_md and "Haibo Jin" in license_md
    assert catalogue["license"]["summary"] in license_md


def test_official_checkpoint_with_wrong_hash_is_refused(
    build_zoo: ModuleType, catalogue: dict[str, Any], tmp_path: Path
) -> None:
    ckpts, out = tmp_path / "ckpts", tmp_path / "zoo"
    place(ckpts, catalogue, R18_WFLW)  # the catalogue knows the real file's size and sha256
    fake = FakeConverter(catalogue)
    report = build_zoo.build(ckpts, out, catalogue=catalogue, converter=fake, log=lambda s: None)
    assert list(report.failed) == [R18_WFLW]
    assert "49393015" in report.failed[R18_WFLW]
    assert fake.calls == []
    assert json.loads((out / "manifest.json").read_text())["files"] == {}


@pytest.mark.parametrize(
    ("wrong", "problem"),
    [({"num_landmarks": 60}, "num_landmarks is 60"), ({"backbone": "resnet18"}, "backbone")],
)
def test_converted_model_not_matching_catalogue_is_dropped(
    build_zoo: ModuleType, catalogue: dict[str, Any], tmp_path: Path,
    wrong: dict[str, Any], problem: str,
) -> None:
    ckpts, out = tmp_path / "ckpts", tmp_path / "zoo"
    place(ckpts, catalogue, R50_WFLW)
    report = build_zoo.build(ckpts, out, catalogue=catalogue,
                             converter=FakeConverter(catalogue, wrong), log=lambda s: None)
    assert problem in report.failed[R50_WFLW]
    assert not (out / f"{R50_WFLW}.onnx").exists()


def test_only_and_earlier_builds(
    build_zoo: ModuleType, catalogue: dict[str, Any], tmp_path: Path
) -> None:
    ckpts, out = tmp_path / "ckpts", tmp_path / "zoo"
    place(ckpts, catalogue, R50_WFLW)
    place(ckpts, catalogue, R18_300W)
    fake = FakeConverter(catalogue)
    build_zoo.build(ckpts, out, catalogue=catalogue, converter=fake, only=[R18_300W],
                    log=lambda s: None)
    assert [c[2]["name"] for c in fake.calls] == [R18_300W]
    report = build_zoo.build(ckpts, out, catalogue=catalogue, converter=fake,
                             only=[R50_WFLW], log=lambda s: None)
    assert report.published == [f"{R18_300W}.onnx", f"{R50_WFLW}.onnx"]
    with pytest.raises(ValueError, match="not in the catalogue: pipnet-r9"):
        build_zoo.build(ckpts, out, catalogue=catalogue, converter=fake, only=["pipnet-r9"])


def test_main_exit_status(
    build_zoo: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty").mkdir()
    assert build_zoo.main([str(tmp_path / "empty"), "-o", str(tmp_path / "zoo")]) == 2
    assert "0 converted, 17 missing, 0 failed" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        build_zoo.main([str(tmp_path / "nope"), "-o", str(tmp_path / "zoo")])


@pytest.mark.torch
def test_build_with_the_real_converter(
    build_zoo: ModuleType, catalogue: dict[str, Any], tmp_path: Path
) -> None:
    torch = pytest.importorskip("torch", reason="needs PyTorch to write a real checkpoint")
    from torch_reference import make_pipnet

    ckpts, out = tmp_path / "ckpts", tmp_path / "zoo"
    path = place(ckpts, catalogue, R18_300W)
    torch.save(make_pipnet("resnet18", 68, 10).state_dict(), path)
    report = build_zoo.main([str(ckpts), "-o", str(out), "--only", R18_300W])
    assert report == 0
    spec = load_model(out / f"{R18_300W}.onnx").spec
    assert (spec.name, spec.dataset, spec.backbone, spec.num_landmarks) == (
        R18_300W, "300W", "resnet18", 68)
    source_sha = hashlib.sha256(path.read_bytes()).hexdigest()
    assert spec.provenance["source_sha256"] == source_sha
    assert source_sha in (out / "README.md").read_text()


# --------------------------------------------------------------------------- publish


@pytest.fixture
def built(build_zoo: ModuleType, catalogue: dict[str, Any], tmp_path: Path) -> Path:
    ckpts, out = tmp_path / "ckpts", tmp_path / "zoo"
    place(ckpts, catalogue, R50_WFLW)
    place(ckpts, catalogue, R18_300W)
    build_zoo.build(ckpts, out, catalogue=catalogue, converter=FakeConverter(catalogue),
                    log=lambda s: None)
    return out


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    with HubStandIn() as server:
        use_stand_in(monkeypatch, server, tmp_path / "hf")
        yield server


def test_publish_to_the_stand_in_then_download(
    publish: ModuleType, built: Path, hub: HubStandIn, tmp_path: Path
) -> None:
    commit = publish.publish(built, "pipdetect/pipnet", token="hf_test")
    assert len(hub.commits) == 1  # one commit: manifest and models change together
    repo, _, paths = hub.commits[0]
    assert repo == "pipdetect/pipnet"
    assert paths == sorted(["LICENSE.md", "README.md", "manifest.json",
                            f"{R18_300W}.onnx", f"{R50_WFLW}.onnx"])
    assert commit == hub.commit("pipdetect/pipnet")
    for name in (R50_WFLW, R18_300W):
        path = zoo.resolve_model(name)
        assert path.parent.name == commit
        assert path.read_bytes() == (built / f"{name}.onnx").read_bytes()
    with pytest.raises(zoo.ModelNotFoundError, match="not published"):
        zoo.resolve_model(R18_WFLW)


def test_publish_main_and_record(
    publish: ModuleType, built: Path, hub: HubStandIn, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    copies = [tmp_path / "catalogue.json", tmp_path / "zoo.json"]
    for copy in copies:
        shutil.copy(ROOT / "models/catalogue.json", copy)
    monkeypatch.setattr(publish, "CATALOGUES", tuple(copies))
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    real = [(ROOT / "models/catalogue.json").read_bytes(),
            (ROOT / "src/pipdetect/assets/zoo.json").read_bytes()]
    assert publish.main([str(built), "--repo", "someone/zoo", "--record"]) == 0
    assert real == [(ROOT / "models/catalogue.json").read_bytes(),
                    (ROOT / "src/pipdetect/assets/zoo.json").read_bytes()]
    commit = hub.commit("someone/zoo")
    assert commit in capsys.readouterr().out
    manifest = json.loads((built / "manifest.json").read_text())
    for copy in copies:
        data = json.loads(copy.read_text())
        assert (data["repo_id"], data["revision"]) == ("someone/zoo", commit)
        for e in data["models"]:
            rec = manifest["files"].get(e["file"])
            assert (e["size"], e["sha256"]) == ((rec["size"], rec["sha256"]) if rec
                                                else (None, None))


def test_publish_without_token_fails_cleanly(
    publish: ModuleType, built: Path, hub: HubStandIn
) -> None:
    from huggingface_hub.utils import HfHubHTTPError

    with pytest.raises(HfHubHTTPError, match="401"):
        publish.publish(built, "pipdetect/pipnet")
    assert hub.commits == []


@pytest.mark.parametrize("damage", ["no-readme", "tampered", "extra", "missing-file"])
def test_publish_refuses_a_folder_not_matching_its_manifest(
    publish: ModuleType, built: Path, hub: HubStandIn, damage: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if damage == "no-readme":
        (built / "README.md").unlink()
    elif damage == "tampered":
        with open(built / f"{R18_300W}.onnx", "ab") as f:
            f.write(b"\0")
    elif damage == "extra":
        shutil.copy(built / f"{R18_300W}.onnx", built / "stray.onnx")
    else:
        (built / f"{R50_WFLW}.onnx").unlink()
    with pytest.raises(publish.FolderError):
        publish.publish(built, "pipdetect/pipnet", token="hf_test")
    assert publish.main([str(built)]) == 1
    assert "error:" in capsys.readouterr().err
    assert hub.requests == []

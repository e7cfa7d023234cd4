"""training/: data, targets, the EfficientNet-Lite0 conversion and a training smoke run.

The smoke run makes its own tiny data set (shifted and scaled copies of the bundled
photo, labelled by the bundled model), so it needs neither ../shared nor a network.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import EXAMPLE_IMAGE, ROOT, load_script
from reference_decode import at_selected_cells

torch = pytest.importorskip("torch", reason="the training pipeline needs PyTorch")
pytest.importorskip("efficientnet_lite_pytorch",
                    reason="the training pipeline needs pip install '.[train]'")

D = load_script(ROOT / "training" / "data.py", "data")
nets = load_script(ROOT / "training" / "nets.py", "nets")
train = load_script(ROOT / "training" / "train.py", "train")

pytestmark = pytest.mark.torch
ASSETS = ROOT / "src" / "pipdetect" / "assets"


def _write_pts(path: Path, points: np.ndarray, one_based: bool = False) -> None:
    pts = points + (1.0 if one_based else 0.0)
    body = "\n".join(f"{x:.3f} {y:.3f}" for x, y in pts)
    path.write_text(f"version: 1\nn_points: {len(pts)}\n{{\n{body}\n}}\n")


def test_read_pts_one_based_flag(tmp_path: Path) -> None:
    pts = np.random.default_rng(0).uniform(0, 100, (68, 2))
    _write_pts(tmp_path / "a.pts", pts, one_based=True)
    np.testing.assert_allclose(D.read_pts(tmp_path / "a.pts", one_based=True), pts, atol=1e-3)
    np.testing.assert_allclose(D.read_pts(tmp_path / "a.pts"), pts + 1, atol=1e-3)
    (tmp_path / "b.pts").write_text("version: 1\n{\n1 2\n}\n")
    with pytest.raises(ValueError, match="expected 68 points"):
        D.read_pts(tmp_path / "b.pts")


def test_flip_map_is_an_involution_that_mirrors_the_mean_face() -> None:
    from pipdetect.presets import load_meanface

    flip = np.array(D.FLIP_68)
    assert sorted(flip) == list(range(68))
    np.testing.assert_array_equal(flip[flip], np.arange(68))
    mf = load_meanface("300W")
    mirrored = mf[flip] * [-1, 1]
    mirrored[:, 0] += (mf[:, 0].min() + mf[:, 0].max())
    iod = np.linalg.norm(mf[36] - mf[45])
    assert np.abs(mirrored - mf).max() < 0.25 * iod


def test_plain_example_is_the_library_warp_of_the_training_crop() -> None:
    from pipdetect.crop import warp_crops

    image = cv2.imread(str(EXAMPLE_IMAGE))
    pts = np.random.default_rng(1).uniform(180, 330, (68, 2))
    face = D.Face(image, pts, "x")
    crop, norm = D.make_example(face, np.random.default_rng(0), D.NO_AUGMENT)
    box = D.landmark_crop(pts)
    np.testing.assert_array_equal(crop, warp_crops(image, box[None], (256, 256))[0])
    np.testing.assert_allclose(box[:2] + norm * (box[2:] - box[:2]), pts, atol=1e-9)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_augmented_landmarks_follow_the_pixels(seed: int) -> None:
    """Draw a dot at each landmark, augment: the dots land where the labels say."""
    rng = np.random.default_rng(seed)
    image = np.zeros((400, 400, 3), np.uint8)
    pts = np.column_stack([rng.uniform(120, 280, 68), rng.uniform(120, 280, 68)])
    marked = [0, 8, 16, 30, 36, 45]
    for i in marked:
        cv2.circle(image, (round(pts[i, 0]), round(pts[i, 1])), 3, (255, 255, 255), -1)
    aug = D.Augment(colour_p=0, grey_p=0, blur_p=0, occlude_p=0)
    crop, norm = D.make_example(D.Face(image, pts, "dots"), rng, aug)
    grey = crop[..., 0].astype(np.float64)
    for i in marked:
        x, y = norm[i] * 256
        if not (4 <= x < 252 and 4 <= y < 252):
            continue
        x0, y0 = round(x), round(y)
        assert grey[y0 - 2 : y0 + 3, x0 - 2 : x0 + 3].max() > 100, (i, x, y)


def _blob_centre(grey: np.ndarray, x: float, y: float, radius: int = 8) -> np.ndarray:
    """Intensity-weighted centre (x, y) of the blob near (x, y) in a 2D image (the window
    re-centred on the blob a few times, so the blob is not cut off)."""
    centre = np.array([x, y])
    for _ in range(4):
        x0, y0 = (int(v) for v in np.round(centre))
        yy, xx = np.mgrid[y0 - radius : y0 + radius + 1, x0 - radius : x0 + radius + 1]
        win = grey[y0 - radius : y0 + radius + 1, x0 - radius : x0 + radius + 1]
        centre = np.array([(win * xx).sum(), (win * yy).sum()]) / win.sum()
    return centre


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 10_000), offset=st.sampled_from([0.0, 0.04, -0.03]))
def test_mirrored_labels_keep_the_annotation_offset(seed: int, offset: float) -> None:
    """Annotations placed ``offset`` x the inter-ocular distance right of the features (a
    convention, as 300-W's): with ``annotation_offset`` set, the label minus the feature's
    place in the crop is the same vector in a mirrored example as in the same example
    unmirrored (same random draws), turned with the augmentation. Plain mirrors
    (``annotation_offset=0``) would turn that vector round."""
    from pipdetect.presets import load_meanface

    rng = np.random.default_rng(seed)
    truth = 100 + load_meanface("300W") * 200 + rng.normal(0, 2, (68, 2))
    iod = np.linalg.norm(truth[36] - truth[45])
    annotated = truth + [offset * iod, 0.0]
    marked = [36, 45, 39, 42, 48, 54, 30]  # closed under FLIP_68, apart, inside every crop
    yy, xx = np.mgrid[0:400, 0:400]
    dots = sum(np.exp(-((xx - truth[i, 0]) ** 2 + (yy - truth[i, 1]) ** 2) / (2 * 1.5**2))
               for i in marked)
    image = cv2.cvtColor(np.clip(dots * 255, 0, 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)
    face = D.Face(image, annotated, "dots")
    geometric = D.Augment(rotate_p=1, scale_p=0, shift_p=0, colour_p=0, grey_p=0, blur_p=0,
                          occlude_p=0, annotation_offset=offset)
    gaps = {}
    for flip in (False, True):
        crop, norm = D.make_example(face, np.random.default_rng(seed),
                                    dataclasses.replace(geometric, flip_p=float(flip)))
        grey = crop[..., 0].astype(np.float64)
        # crop pixel coordinates (pixel centres at integers) of the labels, by make_example's
        # warp: photo x = x1 + (j + 0.5) * w / 256 - 0.5 and norm = (x - x1) / w
        labels = (norm + 0.5 / (np.ptp(annotated, axis=0) * D.CROP_ENLARGE)) * 256 - 0.5
        # landmark i of the photo is label FLIP_68[i] of a mirrored example
        rows = [D.FLIP_68[i] if flip else i for i in marked]
        gaps[flip] = np.array([labels[j] - _blob_centre(grey, *labels[j]) for j in rows])
    expected = abs(offset) * iod * 256 / (np.ptp(annotated[:, 0]) * D.CROP_ENLARGE)
    np.testing.assert_allclose(np.linalg.norm(gaps[False], axis=1), expected, atol=0.3)
    np.testing.assert_allclose(gaps[True], gaps[False], atol=0.3)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_targets_decode_back_to_the_landmarks(seed: int) -> None:
    """Score maps and offsets made from landmarks, fed to pipdetect's decoder, give them back."""
    from pipdetect import PIPDecoder
    from pipdetect.presets import load_meanface

    rng = np.random.default_rng(seed)
    mf = load_meanface("300W")
    norm = np.clip(mf + rng.normal(0, 0.02, mf.shape), 0.001, 0.999)
    neighbours = train.neighbours_300w()
    t = D.make_targets(norm, neighbours, (8, 8))
    L, K = neighbours.shape
    maps = [t["cls"][None]]
    for key, width in (("x", 1), ("y", 1), ("nb_x", K), ("nb_y", K)):
        m = np.zeros((L * width, 8, 8), np.float32)
        cells = np.repeat(t["cell"], width)
        m.reshape(L * width, 64)[np.arange(L * width), cells] = t[key]
        maps.append(m[None])
    points, _ = PIPDecoder(mf, num_nb=K)(*maps)
    np.testing.assert_allclose(np.asarray(points)[0], norm, atol=1e-5)


def test_lite0_conversion_matches_pytorch(tmp_path: Path) -> None:
    """pipdetect convert's EfficientNet-Lite0 (SAME padding, eps 1e-3, ReLU6) == PyTorch,
    and nets.init_from_onnx brings a converted model back."""
    from pipdetect.convert import convert_checkpoint
    from pipdetect.model import load_model

    torch.manual_seed(0)
    net = nets.build("efficientnet_lite0", pretrained=False)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 2.0)
        for name in nets.HEAD_NAMES:
            getattr(net, name).weight.normal_(0, 0.05)
    net.eval()
    torch.save(net.state_dict(), tmp_path / "lite.pth")
    spec = convert_checkpoint(tmp_path / "lite.pth", tmp_path / "lite.onnx",
                              backbone="lite0", meanface="300W", scheme="300w68")
    assert spec.backbone == "efficientnet_lite0" and spec.scheme == "300w68"
    x = np.random.default_rng(0).normal(size=(2, 3, 256, 256)).astype(np.float32)
    with torch.no_grad():
        ref = [o.double().numpy() for o in net.double()(torch.from_numpy(x).double())]
    got = load_model(tmp_path / "lite.onnx", threads=1).session.run(None, {"image": x})
    for a, b in zip(got, ref, strict=True):
        if a.ndim == 2:  # neighbour outputs, read at the cells the model's cls selects
            b = at_selected_cells(got[0], b)
        assert np.abs(a - b).max() < 1e-3 * max(1.0, np.abs(b).max())
    # the file holds the weights and little else: ~4 bytes per parameter
    params = sum(p.numel() for p in net.parameters())
    assert (tmp_path / "lite.onnx").stat().st_size < 4 * params * 1.02

    # and back (training/train.py --init): with the BatchNorms rebuilt from the folded
    # convolutions, the network is the ONNX model exactly in eval mode, and close to it in
    # train mode on the batch the statistics came from (stochastic depth off; not exact,
    # since train mode divides by sqrt(var + eps) where gamma is sqrt(var))
    fresh = nets.build("efficientnet_lite0", pretrained=False)
    nets.init_from_onnx(fresh, tmp_path / "lite.onnx", torch.from_numpy(x))
    fresh.eval()
    with torch.no_grad():
        back = [o.numpy() for o in fresh(torch.from_numpy(x))]
    for a, b in zip(back, got, strict=True):
        a = at_selected_cells(got[0], a) if b.ndim == 2 else a
        assert np.abs(a - b).max() < 1e-4 * max(1.0, np.abs(b).max())
    fresh.train()
    fresh.drop_connect = 0.0
    with torch.no_grad():
        back = [o.numpy() for o in fresh(torch.from_numpy(x))]
    for a, b in zip(back, got, strict=True):
        a = at_selected_cells(got[0], a) if b.ndim == 2 else a
        assert np.abs(a - b).max() < 0.1 * np.abs(b).max()
    with pytest.raises(ValueError, match="not a converted EfficientNet-Lite0"):
        nets.init_from_onnx(fresh, ASSETS / "face_detection_yunet.onnx", torch.from_numpy(x))


def _tiny_dataset(folder: Path, count: int = 12) -> None:
    """Shifted / scaled copies of the bundled photo, labelled with the 300W mean face
    placed in the crop the 300W policy makes of YuNet's box (no trained model needed)."""
    from pipdetect.crop import preset_crop_policy
    from pipdetect.faces import FaceFinder
    from pipdetect.presets import load_meanface

    image = cv2.imread(str(EXAMPLE_IMAGE))
    found = FaceFinder().find(image)
    from pipdetect.crop import crops_to_image

    crop = preset_crop_policy("300W").crops(found.boxes[:1], found.keypoints[:1])
    truth = crops_to_image(load_meanface("300W")[None], crop)[0]
    folder.mkdir()
    for i in range(count):
        s = 0.8 + 0.04 * i
        m = np.array([[s, 0, 5 * i], [0, s, -3 * i]], np.float64)
        warped = cv2.warpAffine(image, m, (512, 512))
        cv2.imwrite(str(folder / f"face_{i}.jpg"), warped)
        _write_pts(folder / f"face_{i}.pts", truth * s + m[:, 2], one_based=True)


def test_training_smoke_then_convert_load_and_run(tmp_path: Path) -> None:
    """A few steps on a few faces, resumed once, then `pipdetect convert`, load and run."""
    from pipdetect import LandmarkDetector
    from pipdetect.convert.cli import main as convert_main

    data = tmp_path / "faces"
    _tiny_dataset(data)
    out, straight = tmp_path / "run", tmp_path / "straight"

    def args(folder: Path) -> list[str]:
        return ["--data", str(data), "--val", str(data), "--out", str(folder), "--one-based",
                "--batch-size", "2", "--max-steps", "2", "--epochs", "2",
                "--detector-epochs", "1", "--threads", "1"]

    # stopped after one epoch, then resumed: the same as one uninterrupted run
    assert train.main([*args(out), "--stop-after", "1"]) == 0
    assert not (out / "final.pth").exists()
    assert train.main(args(out)) == 0
    assert train.main(args(straight)) == 0
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    ref = [json.loads(line) for line in (straight / "log.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in log] == [1, 2]
    assert [row["detector_crops"] for row in log] == [False, True]
    assert all(math.isfinite(row["loss"]) and row["nme_gt"] > 0 for row in log)
    for a, b in zip(log, ref, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-3)
    policy = json.loads((out / "crop_policy.json").read_text())
    assert policy["type"] == "box-linear" and len(policy["keypoints"]) == 11
    run = json.loads((out / "run.json").read_text())
    assert run["training_faces"] == 12 and run["commit"]

    info = tmp_path / "info.json"
    info.write_text(json.dumps({"dataset": "six copies of one photo", "license": "test only",
                                "training": {"command": run["command"]}}))
    model = tmp_path / "tiny.onnx"
    assert convert_main([str(out / "final.pth"), "--backbone", "efficientnet_lite0",
                         "--meanface", "300W", "--scheme", "300w68", "--crop-policy",
                         str(out / "crop_policy.json"), "--info", str(info), "-o",
                         str(model)]) == 0
    det = LandmarkDetector(model, threads=1)
    assert det.spec.dataset == "six copies of one photo"
    assert det.spec.license == "test only"
    assert det.spec.provenance["training"]["command"] == run["command"]
    assert det.spec.crop_policy["keypoints"] == policy["keypoints"]
    points = det(cv2.imread(str(EXAMPLE_IMAGE)))
    assert points.shape == (68, 2) and np.isfinite(points).all()


def test_info_is_checked(tmp_path: Path) -> None:
    from pipdetect.convert import convert_checkpoint

    with pytest.raises(ValueError, match="unknown keys"):
        convert_checkpoint(tmp_path / "x.pth", tmp_path / "x.onnx", backbone="lite0",
                           meanface="300W", info={"licence": "typo"})
    with pytest.raises(ValueError, match="scheme"):
        convert_checkpoint(tmp_path / "x.pth", tmp_path / "x.onnx", backbone="lite0",
                           meanface="300W", scheme="nope")



def test_release_records_the_model_a_run_continued_from(tmp_path: Path) -> None:
    """release.py's info for a run started with --init: the parent's SHA-256 and its own
    training record, and the epochs of both in total_epochs (the bundled model as parent)."""
    release = load_script(ROOT / "training" / "release.py", "release")
    from pipdetect.zoo import file_sha256

    run = tmp_path / "run"
    run.mkdir()
    parent_file = ASSETS / "pipnet-lite0-300w.onnx"
    (run / "run.json").write_text(json.dumps({
        "command": "train.py --init x.onnx", "commit": "abc", "torch": "2.13.0",
        "args": {"init": str(parent_file)}, "training_faces": 12}))
    (run / "log.jsonl").write_text("".join(json.dumps({"epoch": e, "train_seconds": 10.0}) + "\n"
                                           for e in (1, 2, 3)))
    parent = release.parent_of(parent_file)
    info = release.info_for(run, None, parent)["training"]
    assert info["continued_from"]["sha256"] == file_sha256(parent_file)
    own = parent["training"]
    assert own is not None and info["continued_from"]["training"] == own
    assert info["epochs"] == 3
    assert info["total_epochs"] == 3 + int(own.get("total_epochs", own["epochs"]))
    assert "continued_from" not in release.info_for(run, None)["training"]


@settings(max_examples=30, deadline=None)
@given(size=st.integers(-600, 600))
def test_input_size_must_be_a_positive_multiple_of_the_stride(size: int) -> None:
    if size > 0 and size % 32 == 0:
        assert train.input_size(str(size)) == size
        return
    with pytest.raises(argparse.ArgumentTypeError, match="not a positive multiple of the stride"):
        train.input_size(str(size))
    with pytest.raises(ValueError, match="multiple of the stride 32"):
        nets.build("efficientnet_lite0", pretrained=False, input_size=size)


def test_input_size_option(capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--data", "d", "--out", "o"]
    assert train.parse(base).input_size == 256
    assert train.parse([*base, "--input-size", "224"]).input_size == 224
    for bad in ("200", "0", "-32", "224px"):
        with pytest.raises(SystemExit):
            train.parse([*base, "--input-size", bad])
        assert "not a positive multiple of the stride 32" in capsys.readouterr().err


def test_a_state_dict_fits_a_network_of_any_input_size() -> None:
    """Lite0's TensorFlow padding is fixed when the network is built, yet the same at
    every multiple of 32 and not in the state_dict: a 256 model loads into a 96 one,
    which gives 3x3 maps (224 would give 7x7)."""
    big = nets.build("efficientnet_lite0", pretrained=False)
    small = nets.build("efficientnet_lite0", pretrained=False, input_size=96)
    small.load_state_dict(big.state_dict())  # strict: same keys and shapes
    pads = [(n, m.static_padding) for n, m in big.named_modules() if hasattr(m, "static_padding")]
    small_pads = dict((n, m.static_padding) for n, m in small.named_modules()
                      if hasattr(m, "static_padding"))
    assert pads and all(repr(p) == repr(small_pads[n]) for n, p in pads)
    small.eval()
    with torch.no_grad():
        maps = small(torch.zeros(1, 3, 96, 96))
    assert [tuple(m.shape[-2:]) for m in maps] == [(3, 3)] * 5


def test_blur_is_the_same_part_of_the_face_at_every_input_size(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The blur's sigma scales with the crop (2 px of a 256 crop is 1 px of a 128 one)."""
    seen: list[tuple[int, float]] = []
    blur = cv2.GaussianBlur

    def spy(img: np.ndarray, ksize: tuple[int, int], sigma: float) -> np.ndarray:
        seen.append((img.shape[0], sigma))
        return blur(img, ksize, sigma)

    monkeypatch.setattr(cv2, "GaussianBlur", spy)
    image = cv2.imread(str(EXAMPLE_IMAGE))
    face = D.Face(image, np.random.default_rng(1).uniform(180, 330, (68, 2)), "x")
    aug = dataclasses.replace(D.NO_AUGMENT, blur_p=1.0, blur_sigma=8.0)
    for size in (256, 128):
        for seed in range(3):
            crop, _ = D.make_example(face, np.random.default_rng(seed), aug, size)
            assert crop.shape == (size, size, 3)
    assert [s for s, _ in seen] == [256] * 3 + [128] * 3
    np.testing.assert_allclose([s for _, s in seen[3:]], [s / 2 for _, s in seen[:3]])


def test_resuming_a_run_at_another_input_size_is_refused(tmp_path: Path) -> None:
    """A last.pt from before --input-size (no such key) is a 256 run."""
    out = tmp_path / "old"
    out.mkdir()
    torch.save({"epoch": 3}, out / "last.pt")
    with pytest.raises(SystemExit, match="run at --input-size 256, not 224"):
        train.main(["--data", str(tmp_path / "none"), "--out", str(out), "--input-size", "224"])


def test_training_at_another_input_size_releases_a_model_of_that_size(tmp_path: Path) -> None:
    """--input-size 96 from the shipped (256) model: trained, refused when resumed at
    another size, released by release.py with (96, 96) in the metadata, and the ONNX
    network is the PyTorch one at 96 (3x3 maps, like 224's 7x7 an odd count)."""
    from pipdetect import LandmarkDetector
    from pipdetect.model import load_model

    release = load_script(ROOT / "training" / "release.py", "release")
    data, val, out = tmp_path / "faces", tmp_path / "val", tmp_path / "run96"
    shipped = ASSETS / "pipnet-lite0-300w.onnx"
    _tiny_dataset(data)
    _tiny_dataset(val, count=4)
    args = ["--data", str(data), "--val", str(val), "--out", str(out),
            "--one-based", "--batch-size", "2", "--max-steps", "2", "--epochs", "1",
            "--detector-epochs", "1", "--threads", "1", "--init", str(shipped),
            "--input-size", "96"]
    assert train.main(args) == 0
    assert json.loads((out / "run.json").read_text())["args"]["input_size"] == "96"
    with pytest.raises(SystemExit, match="run at --input-size 96, not 128"):
        train.main([*args, "--input-size", "128"])

    model = tmp_path / "tiny96.onnx"
    assert release.main(["--run", str(out), "--val", str(val), "--name", "tiny96",
                         "-o", str(model), "--no-facts", "--parent", str(shipped)]) == 0
    det = LandmarkDetector(model, threads=1)
    assert det.spec.input_size == (96, 96)
    points = det(cv2.imread(str(EXAMPLE_IMAGE)))
    assert points.shape == (68, 2) and np.isfinite(points).all()

    net = nets.build("efficientnet_lite0", pretrained=False, input_size=96)
    net.load_state_dict(torch.load(out / "final.pth", map_location="cpu", weights_only=True))
    net.eval()
    x = np.random.default_rng(0).normal(size=(2, 3, 96, 96)).astype(np.float32)
    with torch.no_grad():
        ref = [o.numpy() for o in net(torch.from_numpy(x))]
    assert all(r.shape[-2:] == (3, 3) for r in ref)
    got = load_model(model, threads=1).session.run(None, {"image": x})
    for a, b in zip(got, ref, strict=True):
        if a.ndim == 2:  # neighbour outputs, read at the cells the model's cls selects
            b = at_selected_cells(got[0], b)
        assert np.abs(a - b).max() < 1e-3 * max(1.0, np.abs(b).max())

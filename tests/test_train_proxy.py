"""benchmarks/train_proxy.py: the trained stand-in for measuring int8 drift.

Data-free tests check the training targets against pipdetect's decoder and the
68-point flip map against the 300W mean face; the LFPW tests (skipped when
../shared/data/lfpw_test is absent) check the split, the crops and the
augmentation on real photos, and run two training steps whose checkpoint must
convert with pipdetect.convert and match PyTorch.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import LFPW, load_script
from pipdetect import PIPDecoder
from pipdetect.crop import crops_to_image, warp_crops
from pipdetect.presets import load_meanface

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "train_proxy.py"
DATA = LFPW


tp = load_script(SCRIPT)  # imports only numpy at module level; torch inside the training code

needs_lfpw = pytest.mark.skipif(
    not DATA.is_dir(), reason=f"LFPW test data not found at {DATA} (shared data folder absent)"
)


def _maps_from_targets(t: dict[str, np.ndarray], num_nb: int, hw: tuple[int, int]
                       ) -> list[np.ndarray]:
    """Network outputs that hold the targets at the positive cells (zero elsewhere)."""
    num_lms = len(t["x"])
    cls = t["cls"][None].astype(np.float32)
    maps = [np.zeros((1, c, hw[0] * hw[1]), np.float32)
            for c in (num_lms, num_lms, num_lms * num_nb, num_lms * num_nb)]
    lms, chans = np.arange(num_lms), np.arange(num_lms * num_nb)
    maps[0][0, lms, t["cell"]] = t["x"]
    maps[1][0, lms, t["cell"]] = t["y"]
    maps[2][0, chans, np.repeat(t["cell"], num_nb)] = t["nb_x"]
    maps[3][0, chans, np.repeat(t["cell"], num_nb)] = t["nb_y"]
    return [cls] + [m.reshape(1, m.shape[1], *hw) for m in maps]


# ----------------------------------------------------------------- without data


def test_flip_map_pairs_mirror_images_on_the_300w_meanface():
    flip = np.array(tp.FLIP_68)
    assert sorted(flip) == list(range(68))
    assert np.array_equal(flip[flip], np.arange(68))  # an involution
    meanface = load_meanface("300W")
    mirrored = meanface * [-1, 1] + [1, 0]
    # The mirrored face, relabelled, is the mean face again (it is nearly symmetric) ...
    assert np.abs(mirrored[flip] - meanface).max() < 0.03
    # ... which it is not without the relabelling: the check has teeth.
    assert np.abs(mirrored - meanface).max() > 0.5


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), margin=st.sampled_from([0.0, 0.1]),
       hw=st.sampled_from([(8, 8), (4, 6)]))
def test_targets_decode_back_to_the_landmarks(seed, margin, hw):
    """Maps holding the targets decode (own prediction and merged) to the input points."""
    points = np.random.default_rng(seed).uniform(-margin, 1 + margin, (68, 2))
    neighbours = tp.neighbours_300w()
    t = tp.make_targets(points, neighbours, hw)
    assert t["cls"].shape == (68, *hw) and np.all(t["cls"].sum(axis=(1, 2)) == 1)
    maps = _maps_from_targets(t, 10, hw)
    for merge in ("none", "reference"):
        decoder = PIPDecoder(load_meanface("300W"), num_nb=10, merge=merge)
        decoded = np.asarray(decoder(*maps)[0])[0]
        np.testing.assert_allclose(decoded, points, atol=1e-5)
    inside = np.all((points >= 0) & (points < 1), axis=1)
    assert np.all((t["x"][inside] >= 0) & (t["x"][inside] < 1))


def test_workdir_inside_the_repository_is_refused():
    with pytest.raises(SystemExit, match="inside the repository"):
        tp.main(["--workdir", str(REPO / "benchmarks" / "proxy"), "--no-eval"])
    assert not (REPO / "benchmarks" / "proxy").exists()


# ----------------------------------------------------------------- with LFPW


@needs_lfpw
def test_training_photos_are_the_ones_bench_never_uses():
    every = sorted(DATA.glob("*.jpg")) + sorted(DATA.glob("*.png"))
    used_by_bench = {p.name for p in every[:80]}  # [:40] calibration, [40:80] drift
    train = tp.training_photos(DATA)
    assert len(train) == len(every) - 80 > 100
    assert not used_by_bench & {p.name for p in train}


@needs_lfpw
def test_plain_crop_is_pipdetects_warp_of_the_300w_crop():
    sample = tp.load_samples(tp.training_photos(DATA)[:1])[0]
    crop, norm = tp.make_example(sample, np.random.default_rng(0), tp.NO_AUGMENT)
    box = np.asarray(tp.landmark_crop(sample.points))
    lo, hi = sample.points.min(axis=0), sample.points.max(axis=0)
    np.testing.assert_allclose(box[2:] - box[:2], 1.1 * (hi - lo))
    np.testing.assert_allclose((box[2:] + box[:2]) / 2, (hi + lo) / 2)
    expected = warp_crops(sample.image, box[None], (256, 256))[0]
    assert np.abs(crop.astype(int) - expected).max() <= 1
    np.testing.assert_allclose(crops_to_image(norm[None], box[None])[0], sample.points,
                               atol=1e-9)


@needs_lfpw
@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_augmented_labels_move_with_the_pixels(seed):
    """Dots painted at three landmarks are found where the augmented labels say.

    After a flip the subject's right eye corner (36) is the old left one (45): the
    dot painted at 45 must sit at label 36, and the right eye stays on the image left.
    """
    import cv2

    rng = np.random.default_rng(seed)
    points = load_meanface("300W") * 300 + 50
    image = np.full((400, 400, 3), 90, np.uint8)
    colours = {36: (0, 0, 255), 45: (0, 255, 0), 57: (255, 0, 0)}
    for index, colour in colours.items():
        x, y = points[index]
        cv2.circle(image, (round(x), round(y)), 4, colour, -1)
    sample = tp.Sample(image, points, "synthetic")
    aug = tp.Augment(colour=0.0)
    crop, norm = tp.make_example(sample, rng, aug)
    flip = np.array(tp.FLIP_68)
    flipped = None
    for index, colour in colours.items():
        mask = np.all(np.abs(crop.astype(int) - colour) < 60, axis=2)
        assert mask.sum() > 10, f"dot of landmark {index} not found"
        ys, xs = np.nonzero(mask)
        found = np.array([xs.mean(), ys.mean()])
        here, there = np.linalg.norm(found - norm[index] * 256), \
            np.linalg.norm(found - norm[flip[index]] * 256)
        this_one = here < 2.0 if index == 57 else min(here, there) < 2.0
        assert this_one, (index, here, there)
        if index != 57:
            flipped = bool(there < here) if flipped is None else flipped
            assert flipped == bool(there < here)
    assert norm[36, 0] < norm[45, 0]  # subject's right eye on the image left, flipped or not


@needs_lfpw
def test_two_training_steps_save_a_checkpoint_that_converts(tmp_path):
    torch = pytest.importorskip("torch", reason="training needs PyTorch (pip install torch)")
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--max-photos", "3", "--batch-size", "2",
         "--epochs", "1", "--max-steps", "2", "--no-eval", "--workdir", str(tmp_path)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "train_proxy.json").read_text())
    assert report["training_photos"] == 3 and report["epochs_run"] == 1
    assert np.isfinite(report["history"][0]["loss"])
    pth = Path(report["checkpoint"])
    assert pth.parent == tmp_path

    from pipdetect.model import load_model

    spec = tp.convert(pth, tmp_path / "proxy.onnx")
    assert spec.num_landmarks == 68 and spec.num_nb == 10 and spec.dataset == "300W"
    np.testing.assert_allclose(spec.meanface, load_meanface("300W"), atol=1e-6)

    sys.path.insert(0, str(REPO / "benchmarks"))
    from pipnet_torch import PIPNet

    from reference_decode import at_selected_cells

    net = PIPNet("resnet18", 68, 10)
    net.load_state_dict(torch.load(pth, weights_only=True))
    net.eval()
    x = np.random.default_rng(0).normal(size=(1, 3, 256, 256)).astype(np.float32)
    with torch.inference_mode():
        expected = [m.numpy() for m in net(torch.from_numpy(x))]
    got = load_model(tmp_path / "proxy.onnx", threads=1).session.run(None, {"image": x})
    for a, b in zip(got, expected, strict=True):
        if a.ndim == 2:  # neighbour outputs, read at the cells the model's cls selects
            b = at_selected_cells(got[0], b)
        np.testing.assert_allclose(a, b, atol=1e-4 * max(1.0, float(np.abs(b).max())))

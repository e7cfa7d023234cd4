"""Long runs: thousands of frames through the tracker, no memory growth, no
growing work or state. Bounded for CI; set PIPDETECT_SOAK_FRAMES for longer runs
(e.g. PIPDETECT_SOAK_FRAMES=100000 python -m pytest tests/test_soak.py -s)."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from modelfactory import known_answer_model, make_spec
from pipdetect import LandmarkDetector, Tracker
from pipdetect.crop import preset_crop_policy

FRAMES = int(os.environ.get("PIPDETECT_SOAK_FRAMES", "2000"))
WARMUP = 300

pytestmark = pytest.mark.timeout(max(240, FRAMES // 10))


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux /proc for RSS")
def test_tracker_soak_has_flat_memory_and_bounded_work(tmp_path, astronaut, wflw_meanface):
    spec = make_spec(
        wflw_meanface, crop_policy=preset_crop_policy("WFLW").to_dict(), scheme="wflw98"
    )
    det = LandmarkDetector(known_answer_model(tmp_path / "k.onnx", wflw_meanface, spec))
    tracker = Tracker(det, redetect_interval=10)
    # The face wanders over a black 560x560 frame. Whole-pixel steps cut from one padded
    # canvas: a sub-pixel warp per frame cost as much as the tracker itself.
    padded = np.zeros((560 + 48, 560 + 48, 3), np.uint8)
    padded[48 : 48 + 512, 48 : 48 + 512] = astronaut
    samples: list[tuple[int, int]] = []
    times = np.empty(FRAMES)
    for i in range(FRAMES):
        dx, dy = round(24 + 20 * np.sin(i / 17.0)), round(24 + 20 * np.cos(i / 23.0))
        frame = padded[48 - dy : 48 - dy + 560, 48 - dx : 48 - dx + 560]
        t0 = time.perf_counter()
        faces = tracker.update(frame)
        times[i] = time.perf_counter() - t0
        assert len(faces) == 1, f"frame {i}: {len(faces)} faces"
        assert len(tracker.track_ids) == 1
        if i >= WARMUP and i % 50 == 0:
            samples.append((i, _rss_bytes()))
    frames, rss = np.array(samples, dtype=np.float64).T
    slope = np.polyfit(frames, rss, 1)[0]  # bytes per frame
    growth = rss[-1] - rss[0]
    third = FRAMES // 3
    print(
        f"\nsoak: {FRAMES} frames, RSS {rss[0] / 2**20:.1f} -> {rss[-1] / 2**20:.1f} MiB, "
        f"slope {slope:.1f} B/frame; median ms/frame first third "
        f"{1e3 * np.median(times[:third]):.2f}, last third {1e3 * np.median(times[-third:]):.2f}; "
        f"detector runs {tracker.detector_runs}, network runs {tracker.network_runs}"
    )
    # Flat memory: under 1 KiB per frame on average and under 8 MiB in all.
    assert slope < 1024 and growth < 8 * 2**20
    # Bounded work: one face through the network per frame, the face detector
    # about every redetect_interval frames (no creeping re-detection).
    assert tracker.network_runs <= FRAMES + tracker.detector_runs
    assert tracker.detector_runs <= FRAMES // 10 + 5
    assert tracker.track_ids == [0]  # one track all along: no churn of ids

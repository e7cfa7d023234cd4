"""Frames in and out: video files written here, read back, tracked; cameras; iterables."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pytest

from modelfactory_dots import dots_face, dots_model, write_clip
from pipdetect import LandmarkDetector
from pipdetect.errors import InvalidImageError, VideoError
from pipdetect.video import (
    VideoInfo,
    VideoTruncatedWarning,
    is_video_path,
    open_frames,
    open_writer,
)


@pytest.fixture(scope="module")
def clip(tmp_path_factory, astronaut) -> tuple[Path, list[np.ndarray], LandmarkDetector]:
    """A 12-frame mp4 of the dotted astronaut moving right and growing, with its truth."""
    folder = tmp_path_factory.mktemp("video")
    det = LandmarkDetector(dots_model(folder / "dots.onnx"))
    base = (astronaut, dots_face(det.detect(astronaut)[0].crop))
    path = folder / "clip.mp4"
    truths = write_clip(open_writer(path, 12.5, (640, 480)), base, 12, (0.8, 0.02),
                        (40, 9.0, 20, 3.0))
    return path, truths, det


def test_written_video_reads_back(clip):
    path, _, _ = clip
    frames, info = open_frames(path)
    assert info == VideoInfo(fps=12.5, width=640, height=480, frame_count=12)
    got = list(frames)
    assert len(got) == 12 and got[0].shape == (480, 640, 3) and got[0].dtype == np.uint8


def test_tracking_a_video_file_follows_the_face(clip):
    path, truths, det = clip
    results = list(det.track(path, smoothing=False))
    assert len(results) == 12
    assert [r.time for r in results] == pytest.approx([t / 12.5 for t in range(12)])
    for r, truth in zip(results, truths, strict=True):
        assert [f.track_id for f in r] == [0]
        np.testing.assert_allclose(r[0].landmarks, truth, atol=2.0)  # after mp4 compression
    # the same frames passed as arrays give the same landmarks
    frames, _ = open_frames(path)
    again = list(det.track(list(frames), smoothing=False))
    for a, b in zip(results, again, strict=True):
        np.testing.assert_array_equal(a[0].landmarks, b[0].landmarks)


def test_avi_motion_jpeg_round_trip(tmp_path, astronaut):
    path = tmp_path / "a.avi"
    writer = open_writer(path, 10, (astronaut.shape[1], astronaut.shape[0]))
    for _ in range(3):
        writer.write(astronaut)
    writer.release()
    frames, info = open_frames(str(path))
    got = list(frames)
    assert len(got) == 3 and info.fps == 10
    assert np.abs(got[0].astype(int) - astronaut).mean() < 4  # Motion-JPEG is near lossless


def truncated_avi(path: Path, frames: int = 20, cut: bool = True) -> Path:
    """A Motion-JPEG .avi of ``frames`` frames, cut (``cut``) in the middle of its frame
    data: its header still declares every frame."""
    writer = open_writer(path, 10, (64, 48))
    for i in range(frames):
        writer.write(np.full((48, 64, 3), 10 * i, np.uint8))
    writer.release()
    data = path.read_bytes()
    chunks = [m.start() for m in re.finditer(b"00dc", data)]  # frame chunks, then the index
    if cut:
        path.write_bytes(data[: chunks[frames // 2]])
    return path


def test_a_video_that_ends_early_says_so(tmp_path):
    path = truncated_avi(tmp_path / "cut.avi")
    frames, info = open_frames(path)
    assert info.frame_count == 20
    with pytest.warns(VideoTruncatedWarning, match=r"ended after \d+ of its 20 frames"):
        got = list(frames)
    assert 0 < len(got) < 20 and frames.read == len(got) and frames.ended_early
    whole = truncated_avi(tmp_path / "whole.avi", cut=False)
    frames, _ = open_frames(whole)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(list(frames)) == 20 and not frames.ended_early
    frames, _ = open_frames(whole)  # closed before the end: not truncated
    next(frames)
    frames.close()
    assert list(frames) == [] and not frames.ended_early


def test_arrays_and_iterables(astronaut):
    stack = np.stack([astronaut, astronaut[:, ::-1]])
    frames, info = open_frames(stack)
    assert info.frame_count == 2 and info.width == 512 and len(list(frames)) == 2
    frames, info = open_frames(x for x in [astronaut])
    assert info.fps == 30.0 and len(list(frames)) == 1


def test_bad_sources(tmp_path):
    with pytest.raises(FileNotFoundError):
        open_frames(tmp_path / "missing.mp4")
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    with pytest.raises(VideoError, match="cannot open this video"):
        open_frames(text)
    with pytest.raises(VideoError, match="not a file"):
        open_frames(tmp_path)
    with pytest.raises(VideoError, match="camera 57"):
        open_frames(57)
    with pytest.raises(InvalidImageError, match="T, H, W"):
        open_frames(np.zeros((4, 4, 3), np.uint8))
    for bad in (True, 3.5, None):
        with pytest.raises(TypeError):
            open_frames(bad)
    with pytest.raises(OSError, match="cannot write"):
        open_writer(tmp_path / "empty.mp4", 10, (0, 0))
    (tmp_path / "file").write_text("")
    with pytest.raises(OSError):
        open_writer(tmp_path / "file" / "x.mp4", 10, (64, 48))


def test_video_extensions():
    assert is_video_path("a/B.MP4") and is_video_path(Path("c.avi"))
    assert not is_video_path("photo.jpg") and not is_video_path("noext")

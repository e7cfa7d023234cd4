"""Result files (pipdetect.results): streamed documents equal the whole-list writers, CSV
accounts for every input, and files are replaced whole or left alone. (The full-disk
case runs the command line under a file-size limit: tests/test_outputs.py.)"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipdetect.results import (
    FORMAT,
    ResultsFile,
    csv_header,
    csv_text,
    dumps,
    error_record,
    landmark_array,
    replacing,
    save_npy,
    write_csv,
)


def image_doc(source: str, faces: int, n: int = 3) -> dict:
    face = {"box": [1.0, 2.0, 30.5, 40.0], "crop": [0.0, 0.0, 32.0, 42.0], "score": 0.9,
            "landmarks": [[float(i), float(i) + 0.5] for i in range(n)], "scores": [0.5] * n}
    return {"format": "pipdetect.landmarks/1", "kind": "image", "source": source,
            "width": 64, "height": 48, "model": "m", "scheme": "custom", "num_landmarks": n,
            "faces": [face] * faces}


@settings(max_examples=20, deadline=None)
@given(st.lists(st.integers(0, 2), max_size=4))
def test_streamed_json_is_the_whole_list_written_at_once(faces):
    docs = [image_doc(f"{k}.jpg", f) for k, f in enumerate(faces)]
    stream = io.BytesIO()
    with ResultsFile(stream, "json", many=True) as out:
        for doc in docs:
            out.add(doc)
    assert stream.getvalue().decode() == dumps(docs) + "\n"
    assert json.loads(stream.getvalue()) == docs


def test_csv_has_a_row_for_every_input(tmp_path):
    docs = [image_doc("a.jpg", 2), image_doc("none.jpg", 0), error_record("bad.jpg", "broken")]
    path = tmp_path / "r.csv"
    with ResultsFile(path, "csv", num_landmarks=3) as out:
        for doc in docs:
            out.add(doc)
    text = path.read_text()
    assert text == csv_text(docs)
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == csv_header(3) and rows[0][-1] == "error"
    assert all(len(r) == len(rows[0]) for r in rows)
    table = [dict(zip(rows[0], r, strict=True)) for r in rows[1:]]
    assert [(r["source"], r["face"], r["error"]) for r in table] == [
        ("a.jpg", "0", ""), ("a.jpg", "1", ""), ("none.jpg", "", ""), ("bad.jpg", "", "broken")]
    assert table[0]["x2"] == "2.0" and table[2]["x0"] == "" and table[3]["score"] == ""
    failed_first = [error_record("bad.jpg", "broken"), image_doc("a.jpg", 1)]
    buf = io.StringIO()
    write_csv(buf, failed_first, num_landmarks=3)
    assert {len(r) for r in csv.reader(io.StringIO(buf.getvalue()))} == {len(csv_header(3))}
    with pytest.raises(ValueError, match="same number of points"):
        csv_text([image_doc("a.jpg", 1), image_doc("b.jpg", 1, n=4)])


def test_a_failed_input_has_its_document_in_json_as_in_csv(tmp_path):
    bad = error_record(tmp_path / "bad.jpg", "cannot decode the image")
    assert bad == {"format": FORMAT, "kind": "error", "source": str(tmp_path / "bad.jpg"),
                   "error": "cannot decode the image"}
    docs = [image_doc("a.jpg", 1), bad, image_doc("b.jpg", 2)]
    path = tmp_path / "r.json"
    with ResultsFile(path, "json") as out:
        for doc in docs:
            out.add(doc)
    read = json.loads(path.read_text())
    assert read == docs and path.read_text() == dumps(docs) + "\n"
    assert [(d["kind"], d["source"], d.get("error")) for d in read] == [
        ("image", "a.jpg", None), ("error", str(tmp_path / "bad.jpg"), "cannot decode the image"),
        ("image", "b.jpg", None)]
    rows = list(csv.DictReader(io.StringIO(csv_text(docs))))
    assert [(r["source"], r["face"], r["error"]) for r in rows] == [
        ("a.jpg", "0", ""), (str(tmp_path / "bad.jpg"), "", "cannot decode the image"),
        ("b.jpg", "0", ""), ("b.jpg", "1", "")]
    one = io.BytesIO()  # one input, one document: the error is the whole output
    with ResultsFile(one, "json", many=False) as out:
        out.add(error_record(None, "no face box"))
    assert json.loads(one.getvalue()) == {"format": FORMAT, "kind": "error", "source": None,
                                          "error": "no face box"}
    with pytest.raises(ValueError, match="no landmarks"):  # .npy has no place for it
        save_npy(tmp_path / "bad.npy", bad)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]


def test_a_results_file_is_replaced_whole_or_not_at_all(tmp_path):
    path = tmp_path / "r.json"
    path.write_text("previous")
    with pytest.raises(RuntimeError), ResultsFile(path, "json") as out:
        out.add(image_doc("a.jpg", 1))
        assert path.read_text() == "previous"  # nothing reaches the target before the end
        raise RuntimeError("the run broke")
    assert path.read_text() == "previous" and sorted(tmp_path.iterdir()) == [path]
    out = ResultsFile(path, "json", many=False)
    out.add(image_doc("a.jpg", 1))
    with pytest.raises(ValueError, match="one document"):
        out.add(image_doc("b.jpg", 1))
    out.commit()
    assert json.loads(path.read_text())["source"] == "a.jpg"
    with pytest.raises(ValueError):
        ResultsFile(tmp_path / "x.npy", "npy", many=True)


def test_npy_and_links_are_replaced_not_written_through(tmp_path, monkeypatch):
    original = tmp_path / "original.npy"
    original.write_bytes(b"precious")
    link = tmp_path / "link.npy"
    link.symlink_to(original)
    save_npy(link, image_doc("a.jpg", 2))
    assert original.read_bytes() == b"precious" and not link.is_symlink()
    np.testing.assert_array_equal(np.load(link), landmark_array(image_doc("a.jpg", 2)))
    target = tmp_path / "sub" / "drawn.png"
    with pytest.raises(OSError), replacing(target) as tmp:
        assert tmp.suffix == ".png" and tmp.parent == target.parent
        tmp.write_bytes(b"half")
        raise OSError("disk full")
    assert list(target.parent.iterdir()) == []
    order: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (order.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace",
                        lambda a, b: (order.append("replace"), real_replace(a, b))[1])
    with replacing(target) as tmp:
        tmp.write_bytes(b"whole")
    assert target.read_bytes() == b"whole" and list(target.parent.iterdir()) == [target]
    assert order == ["fsync", "replace"], "the new file is on disk before it replaces the old"


@pytest.mark.skipif(not Path("/dev/null").exists(), reason="no /dev/null on this system")
def test_dev_null_is_written_directly(tmp_path):
    null = Path("/dev/null")
    with ResultsFile(null, "json") as out:
        out.add(image_doc("a.jpg", 1))
    with replacing(null) as tmp:  # a device is written, never replaced (even by root)
        assert tmp == null
    assert null.exists() and null.is_char_device()

"""The validated model format (issue 20): every metadata field checked for type, range
and finiteness in one place (pipdetect.model.FIELDS), bounded JSON, outputs checked
against the metadata (batch axis included); hostile models refused quickly with
ModelFormatError naming the file and the field, and exit 2 in the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import helper

from modelfactory import known_answer_model, make_spec
from pipdetect.errors import ModelFormatError
from pipdetect.model import (
    FIELDS,
    MAX_LANDMARKS,
    METADATA_KEY,
    ModelSpec,
    load_model,
    parse_metadata,
)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def good(wflw_meanface) -> dict[str, Any]:
    return make_spec(wflw_meanface).to_dict()


def _nested(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


def _with(good: dict[str, Any], **change: Any) -> str:
    return json.dumps({**good, **change})


HOSTILE_TEXT = {
    # name: (metadata text given the good dict, what the message says)
    "deep nesting": (lambda g: '{"provenance": ' + "[" * 100_000 + "]" * 100_000 + "}",
                     "nests 100001 levels"),
    "deep nesting in a field": (lambda g: _with(g, accuracy={"a": _nested(40)}), "nests"),
    "1e400 landmarks": (lambda g: _with(g).replace('"num_landmarks": 98',
                                                   '"num_landmarks": 1e400'),
                        "'num_landmarks': must be an integer, got inf \\(too large"),
    "5000-digit integer": (lambda g: _with(g).replace('"num_landmarks": 98',
                                                      '"num_landmarks": ' + "9" * 5000),
                           "'num_landmarks': must be an integer, got an integer of 5000 digits"),
    "NaN in the mean face": (lambda g: _with(g).replace('"meanface": [', '"meanface": [NaN, 0.5, '),
                             "'meanface': .*got nan"),
    "Infinity": (lambda g: _with(g).replace('"stride": 32', '"stride": -Infinity'),
                 "'stride': must be an integer, got -inf"),
    "1e999 in provenance": (lambda g: _with(g, provenance={"a": [1, {"b": 2}]}).replace(
        '"b": 2', '"b": 1e999'), r"'provenance': a\[1\]\.b is inf"),
    "long integer in accuracy": (lambda g: _with(g, accuracy={"n": 1}).replace(
        '"n": 1', '"n": ' + "1" * 40), "'accuracy': n is an integer of 40 digits"),
    "8000 landmarks": (lambda g: _with(g, num_landmarks=8000, meanface=[0.5] * 16000),
                       "'num_landmarks': must be between 2 and 1024"),
    "1000 neighbours": (lambda g: _with(g, num_nb=1000), "'num_nb': must be between"),
    "huge input": (lambda g: _with(g, input_size=[100_000, 100_000]), "'input_size'"),
    "too many map values": (lambda g: _with(g, num_landmarks=1024, num_nb=64,
                                            meanface=[0.5] * 2048, input_size=[1024, 1024],
                                            stride=8), "output values per face"),
    "log size 709": (lambda g: _with(g, crop_policy={"type": "box-linear",
                                                     "box": [0, 0, 709, 709]}),
                     "'crop_policy'.*out of range"),
    "name not text": (lambda g: _with(g, name=["a"]), "'name': must be a string"),
    "mean of two": (lambda g: _with(g, mean=[0.5, 0.5]), "'mean': must be a list of 3"),
    "meanface of text": (lambda g: _with(g, meanface=["a"] * 196), "'meanface'"),
    "provenance a list": (lambda g: _with(g, provenance=[1]), "'provenance'"),
    "boolean stride": (lambda g: _with(g, stride=True), "'stride': must be an integer"),
    "version as text": (lambda g: _with(g, format_version="1"), "version '1'"),
    "not an object": (lambda g: "[1, 2]", "must be a JSON object"),
    "too long": (lambda g: _with(g, license="x" * 5_000_000), "characters"),
}


@pytest.mark.parametrize("name", list(HOSTILE_TEXT))
def test_hostile_metadata_is_a_model_format_error(good, name):
    make, match = HOSTILE_TEXT[name]
    with pytest.raises(ModelFormatError, match=match) as info:
        ModelSpec.from_json(make(good), "hostile.onnx")
    assert str(info.value).startswith("hostile.onnx: ")


def test_every_field_is_checked_in_the_table(good):
    """Each field of the format is in FIELDS (the one place its check lives)."""
    assert set(good) - {"format_version"} == set(FIELDS)
    assert MAX_LANDMARKS >= 106  # the largest official scheme (LaPa)


@pytest.mark.parametrize("name", ["deep nesting", "8000 landmarks", "log size 709",
                                  "5000-digit integer"])
def test_hostile_models_are_refused_on_loading(tmp_path, wflw_meanface, good, name):
    make, match = HOSTILE_TEXT[name]
    path = known_answer_model(tmp_path / "m.onnx", wflw_meanface,
                              metadata={METADATA_KEY: make(good)})
    with pytest.raises(ModelFormatError, match=match):
        load_model(path)


def test_the_cli_exits_2_without_a_traceback(tmp_path, wflw_meanface, good, astronaut, capsys):
    import cv2

    from pipdetect.cli import main

    image = tmp_path / "a.png"
    cv2.imwrite(str(image), astronaut)
    for name in ("1e400 landmarks", "5000-digit integer", "deep nesting"):
        path = known_answer_model(tmp_path / "m.onnx", wflw_meanface,
                                  metadata={METADATA_KEY: HOSTILE_TEXT[name][0](good)})
        assert main(["--model", str(path), str(image)]) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and "m.onnx" in err and "metadata" in err


def _rewire(path: Path, out: Path, edit) -> Path:
    model = onnx.load(str(path))
    edit(model)
    onnx.save(model, str(out))
    return out


def test_outputs_whose_batch_is_fixed_are_refused(tmp_path, known_model):
    def fix_batch(model):
        model.graph.output[1].type.tensor_type.shape.dim[0].dim_value = 1

    path = _rewire(known_model, tmp_path / "b.onnx", fix_batch)
    with pytest.raises(ModelFormatError, match="output 'x' has batch dimension 1"):
        load_model(path)


def test_outputs_whose_batch_differs_at_run_time_are_refused(tmp_path, known_model):
    """cls repeated along the batch: onnxruntime cannot tell its batch when loading (2 x
    'batch' has no name), so the first run does (before: IndexError deep in the decoder)."""
    def double(model):
        for node in model.graph.node:
            if list(node.output) == ["cls"]:
                node.output[0] = "cls_full"
        model.graph.node.append(
            helper.make_node("Concat", ["cls_full", "cls_full"], ["cls"], axis=0))
        model.graph.output[0].type.tensor_type.shape.dim[0].dim_param = "other"

    model = load_model(_rewire(known_model, tmp_path / "s.onnx", double))
    with pytest.raises(ModelFormatError, match=r"s.onnx: output 'cls' has shape \(6, 98, 8, 8\) "
                                               r"for a batch of 3"):
        model.run(np.zeros((3, 3, 256, 256), np.float32))


def test_extreme_keypoint_policies_still_give_finite_crops():
    """Keypoints far outside their box, through the largest allowed weights: the crop
    parameters are clipped to the same bounds as the box rule, so crops stay finite."""
    from pipdetect.crop import CropPolicy

    policy = CropPolicy.from_dict({"type": "box-linear", "box": [0, 0, 3, 3],
                                   "keypoints": np.full((11, 4), 100.0).tolist()})
    crops = policy.crops(np.array([[0.0, 0.0, 10.0, 10.0]]), np.full((1, 5, 2), 1e6))
    assert np.all(np.isfinite(crops))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner,
                                                                  max_size=4),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(changes=st.dictionaries(st.sampled_from([*FIELDS, "format_version"]), json_values,
                               min_size=1, max_size=3))
def test_random_field_values_give_a_spec_or_a_model_format_error(good, changes):
    data = {**good, **changes}
    try:
        spec = ModelSpec.from_json(json.dumps(data), "fuzz.onnx")
    except ModelFormatError as exc:
        assert str(exc).startswith("fuzz.onnx: ")
        return
    assert 2 <= spec.num_landmarks <= MAX_LANDMARKS and spec.meanface.shape[1] == 2
    assert np.all(np.isfinite(spec.meanface))


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet='[]{}"\\:,0123456789.eE-+ nulltrueNaIfiy', max_size=80))
def test_random_text_gives_json_or_a_model_format_error(text):
    try:
        parse_metadata(text, "fuzz.onnx")
    except ModelFormatError:
        pass

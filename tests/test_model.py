from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from modelfactory import known_answer_model, make_spec, metadata_without, random_model
from pipdetect.errors import ModelFormatError
from pipdetect.model import FORMAT_VERSION, READ_VERSIONS, ModelSpec, load_model


def test_spec_round_trip(wflw_meanface):
    spec = make_spec(
        wflw_meanface,
        name="x",
        dataset="WFLW",
        backbone="resnet18",
        accuracy={"nme": 4.57},
        provenance={"source": "epoch59.pth"},
    )
    again = ModelSpec.from_dict(json.loads(spec.to_metadata()["pipdetect"]))
    assert again.to_dict() == spec.to_dict()
    np.testing.assert_array_equal(again.meanface, wflw_meanface)
    assert again.map_size == (8, 8)


def test_load_known_model(known_model):
    model = load_model(known_model)
    assert model.spec.num_landmarks == 98 and model.spec.num_nb == 10
    maps = model.run(np.zeros((2, 3, 256, 256), np.float32))
    assert [m.shape for m in maps] == [(2, 98, 8, 8)] * 3 + [(2, 980, 8, 8)] * 2


@pytest.mark.parametrize(
    "change, match",
    [
        ({"format_version": 99}, "version 99"),
        ({"num_landmarks": 97}, "meanface has 196 values, expected 194"),
        ({"num_nb": 98}, "num_nb"),
        ({"num_nb": 2.5}, "integer"),
        ({"stride": 30}, "multiples of stride"),
        ({"channel_order": "HSV"}, "channel_order"),
        ({"std": [1, 0, 1]}, r"std.*within \[1e-06"),
        ({"meanface": [0.1] * 195}, "meanface|malformed"),
        ({"crop_policy": {"type": "nope"}}, "crop_policy"),
    ],
)
def test_spec_validation(wflw_meanface, change, match):
    data = make_spec(wflw_meanface).to_dict()
    data.update(change)
    with pytest.raises(ModelFormatError, match=match):
        ModelSpec.from_dict(data, "m.onnx")


def test_missing_fields_are_named(wflw_meanface):
    data = make_spec(wflw_meanface).to_dict()
    del data["meanface"], data["num_nb"]
    with pytest.raises(ModelFormatError, match="lacks num_nb, meanface"):
        ModelSpec.from_dict(data)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_model(tmp_path / "nope.onnx")


def test_text_file_renamed_onnx(tmp_path):
    bad = tmp_path / "model.onnx"
    bad.write_text("this is not a model\n")
    with pytest.raises(ModelFormatError, match="not a loadable ONNX model"):
        load_model(bad)


def test_truncated_model(tmp_path, known_model):
    data = Path(known_model).read_bytes()
    bad = tmp_path / "truncated.onnx"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFormatError):
        load_model(bad)


def test_onnx_without_metadata(tmp_path):
    node = helper.make_node("Identity", ["image"], ["out"])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, 4, 4])],
    )
    path = tmp_path / "plain.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    with pytest.raises(ModelFormatError, match="without pipdetect metadata"):
        load_model(path)


def test_metadata_not_json(tmp_path, wflw_meanface):
    path = known_answer_model(tmp_path / "m.onnx", wflw_meanface, metadata={"pipdetect": "{oops"})
    with pytest.raises(ModelFormatError, match="not valid JSON"):
        load_model(path)


def test_metadata_missing_meanface(tmp_path, wflw_meanface):
    spec = make_spec(wflw_meanface)
    path = known_answer_model(
        tmp_path / "m.onnx", wflw_meanface, metadata=metadata_without(spec, "meanface")
    )
    with pytest.raises(ModelFormatError, match="lacks meanface"):
        load_model(path)


def test_metadata_that_lies_about_landmarks(tmp_path, wflw_meanface):
    # The graph has 98 landmarks, the metadata claims 68 (with a 68-point mean face).
    lie = make_spec(wflw_meanface[:68])
    path = known_answer_model(tmp_path / "m.onnx", wflw_meanface, metadata=lie.to_metadata())
    with pytest.raises(ModelFormatError, match="output 'cls' has shape"):
        load_model(path)


def test_metadata_that_lies_about_input_size(tmp_path, wflw_meanface):
    spec = make_spec(wflw_meanface)
    lie = make_spec(wflw_meanface, input_size=(128, 128))
    path = known_answer_model(tmp_path / "m.onnx", wflw_meanface, spec, metadata=lie.to_metadata())
    with pytest.raises(ModelFormatError, match="input 'image' has shape"):
        load_model(path)


def test_random_model_loads_with_odd_sizes(tmp_path, wflw_meanface):
    spec = make_spec(wflw_meanface[:19], num_nb=4, input_size=(96, 160), stride=32)
    model = load_model(random_model(tmp_path / "r.onnx", spec))
    assert model.spec.map_size == (3, 5)
    maps = model.run(np.random.default_rng(0).normal(size=(3, 3, 96, 160)).astype(np.float32))
    assert maps[0].shape == (3, 19, 3, 5) and maps[3].shape == (3, 76, 3, 5)


def test_neighbours_at_the_selected_cells_give_the_full_maps_values(tmp_path, wflw_meanface):
    """A model that evaluates its neighbour heads only at the selected cells (as ``pipdetect
    convert`` writes them) gives the full maps' values at those cells, and the detector's
    landmarks of the same weights either way, to float rounding."""
    from pipdetect import LandmarkDetector
    from reference_decode import at_selected_cells

    spec = make_spec(wflw_meanface[:19], num_nb=4, input_size=(96, 160), stride=32)
    full = load_model(random_model(tmp_path / "full.onnx", spec, seed=3))
    at_cell = load_model(random_model(tmp_path / "cell.onnx", spec, seed=3,
                                      neighbours_at_cell=True))
    assert not full.neighbours_at_cell and at_cell.neighbours_at_cell
    batch = np.random.default_rng(1).normal(size=(4, 3, 96, 160)).astype(np.float32)
    maps, gathered = full.run(batch), at_cell.run(batch)
    assert gathered[3].shape == gathered[4].shape == (4, 76)
    for name in range(3):
        np.testing.assert_array_equal(gathered[name], maps[name])
    for name in (3, 4):
        np.testing.assert_allclose(gathered[name], at_selected_cells(maps[0], maps[name]),
                                   rtol=0, atol=1e-5)
    image = (np.random.default_rng(2).random((120, 150, 3)) * 255).astype(np.uint8)
    box = [(20.0, 15.0, 110.0, 100.0)]
    a = LandmarkDetector(tmp_path / "full.onnx").detect(image, boxes=box)[0].landmarks
    b = LandmarkDetector(tmp_path / "cell.onnx").detect(image, boxes=box)[0].landmarks
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-3)


def test_neighbour_outputs_in_two_forms_are_refused(tmp_path, wflw_meanface):
    """nb_x read at the selected cells but nb_y a full map in a version 1 file: refused."""
    from pipdetect.convert.graph import heads_at_selected_cells

    spec = make_spec(wflw_meanface[:19], num_nb=4, input_size=(96, 160), stride=32)
    path = random_model(tmp_path / "mixed.onnx", spec)
    model = onnx.load(str(path))
    conv = next(n for n in model.graph.node if list(n.output) == ["nb_x"])
    model.graph.node.remove(conv)
    nodes, inits = heads_at_selected_cells("feat", 3, {"nb_x": ("nb_x_w", "nb_x_b")}, 19, 4)
    model.graph.node.extend(nodes)
    model.graph.initializer.extend(inits)
    model.graph.output[3].CopyFrom(
        helper.make_tensor_value_info("nb_x", TensorProto.FLOAT, ["batch", 76]))
    onnx.save(model, str(path))
    with pytest.raises(ModelFormatError, match=r"output 'nb_x' has shape \['batch', 76\].* "
                                               r"implies \(batch, 76, 3, 5\) \(format version 1: "
                                               r"neighbour outputs as full maps\)"):
        load_model(path)


def test_threads_argument(known_model):
    assert load_model(known_model, threads=1).spec.num_landmarks == 98
    with pytest.raises(ValueError, match="threads"):
        load_model(known_model, threads=0)


def test_landmark_workers_spin_only_within_a_run(known_model):
    """The landmark session's workers spin between operators of a run and stop when the
    run ends (an idle process stays idle; benchmarks/threads_bench.py has the timings);
    threads=N still sets the pool's size."""
    options = load_model(known_model, threads=2).session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "1"
    assert options.get_session_config_entry("session.force_spinning_stop") == "1"
    assert options.intra_op_num_threads == 2


def test_format_versions_one_and_two_are_read_and_two_is_written(tmp_path, wflw_meanface):
    """Version 2 (what convert writes) has its neighbour outputs at the selected cells,
    version 1 full maps; a file whose outputs are not its version's form is refused, and a
    version from a newer pipdetect says to upgrade."""
    assert FORMAT_VERSION == 2 and READ_VERSIONS == (1, 2)
    spec = make_spec(wflw_meanface[:19], num_nb=4, input_size=(96, 160), stride=32)
    assert load_model(random_model(tmp_path / "v1.onnx", spec)).spec.format_version == 1
    v2 = load_model(random_model(tmp_path / "v2.onnx", spec, neighbours_at_cell=True))
    assert v2.spec.format_version == 2 and v2.neighbours_at_cell
    lie = dataclasses.replace(spec, format_version=2).to_metadata()
    full = random_model(tmp_path / "lie.onnx", spec)
    model = onnx.load(str(full))
    del model.metadata_props[:]
    for key, value in lie.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(full))
    with pytest.raises(ModelFormatError, match=r"output 'nb_x' has shape .* implies \(batch, 76\)"
                                               r" \(format version 2: neighbour outputs read at"):
        load_model(full)
    newer = {**json.loads(lie["pipdetect"]), "format_version": 3}
    with pytest.raises(ModelFormatError, match=r"version 3 is not supported by this pipdetect "
                                               r"\(it reads versions 1, 2\); upgrade pipdetect"):
        ModelSpec.from_dict(newer, "new.onnx")


# ------------------------------------------------ the CPU, for int8 files (pipdetect._cpu)
@pytest.fixture
def fake_cpu(monkeypatch, tmp_path):
    """Point pipdetect._cpu at a made-up /proc/cpuinfo and machine."""
    import pipdetect._cpu as cpu

    def use(flags: str | None, machine: str = "x86_64", model: str = "Test CPU") -> None:
        text = (f"processor\t: 0\nmodel name\t: {model}\nflags\t\t: {flags}\n\n"
                if flags is not None else "processor\t: 0\n")
        (tmp_path / "cpuinfo").write_text(text)
        real = cpu.Path
        monkeypatch.setattr(cpu, "Path", lambda p: tmp_path / "cpuinfo"
                            if str(p) == "/proc/cpuinfo" else real(p))
        monkeypatch.setattr(cpu.platform, "machine", lambda: machine)
        cpu._flags_and_model.cache_clear()

    yield use
    cpu._flags_and_model.cache_clear()


@pytest.mark.parametrize("flags, machine, saturates", [
    ("fpu sse4_1 avx avx2 fma", "x86_64", True),  # AVX2 only (AMD Zen 1-3, Haswell)
    ("avx2 avx512f avx512bw", "x86_64", True),  # AVX-512 without VNNI (Skylake-SP)
    ("avx2 avx512f avx512bw avx512_vnni", "x86_64", False),  # Cascade Lake, Zen 4
    ("avx2 avx_vnni", "x86_64", False),  # Alder Lake
    ("avx2 avx512_vnni amx_int8", "x86_64", False),  # Sapphire Rapids
    ("fp asimd asimddp", "aarch64", False),  # Arm64: NEON kernels widen, no saturation
    (None, "x86_64", None),  # flags unknown: nothing claimed
])
def test_u8s8_saturation_is_told_from_the_cpu_flags(fake_cpu, flags, machine, saturates):
    from pipdetect._cpu import cpu_info, cpu_summary, u8s8_saturates

    fake_cpu(flags, machine)
    assert u8s8_saturates() is saturates
    info = cpu_info()
    assert info["int8_u8s8_saturates"] is saturates
    assert info["model"] == ("Test CPU" if flags is not None else info["model"])
    assert info["cores"] and info["onnxruntime"]
    if flags is None:
        assert info["avx2"] is None and "flags unknown" in cpu_summary(info)
    else:
        assert info["avx2"] is ("avx2" in flags)
        assert info["vnni"] is ("vnni" in flags) and info["avx512"] is ("avx512f" in flags)
        assert ("no VNNI" in cpu_summary(info)) is (machine == "x86_64" and "vnni" not in flags)


@pytest.mark.parametrize("record, full_range", [
    (None, False),
    ({"type": "int8", "weights": "int8 per output channel"}, True),  # before reduce_range
    ({"type": "int8", "weights": "int8 per output channel (7-bit range)"}, False),
    ({"type": "int8", "reduce_range": False, "weights": "..."}, True),
    ({"type": "int8", "reduce_range": True, "weights": "..."}, False),
    ({"type": "fp16"}, False),
])
def test_which_int8_records_are_full_range(fake_cpu, record, full_range):
    from pipdetect._cpu import full_range_int8, int8_warning

    assert full_range_int8(record) is full_range
    fake_cpu("avx2")  # no VNNI: the warning is given exactly for full-range weights
    message = int8_warning(record, "m.onnx")
    assert (message is not None) is full_range
    if message:
        assert message.startswith("m.onnx: ") and "Test CPU" in message
        assert "pipdetect convert --quantize int8" in message and "fp32 model" in message
    fake_cpu("avx2 avx512_vnni")
    assert int8_warning(record, "m.onnx") is None


@pytest.mark.parametrize("vendor, family, model, uarch", [
    ("AuthenticAMD", 25, 17, "Zen 4"),  # EPYC 9004 (Genoa), reported as "AMD EPYC" in clouds
    ("AuthenticAMD", 25, 1, "Zen 3"),  # EPYC 7003 (Milan): AVX2 only
    ("AuthenticAMD", 23, 49, "Zen 2"),  # EPYC 7002 (Rome)
    ("GenuineIntel", 6, 143, "Sapphire Rapids"),
    ("GenuineIntel", 6, 1, None),  # unknown: nothing claimed
])
def test_the_microarchitecture_is_named_from_family_and_model(
        monkeypatch, tmp_path, vendor, family, model, uarch):
    import pipdetect._cpu as cpu

    text = "".join(f"processor\t: {n}\nvendor_id\t: {vendor}\ncpu family\t: {family}\n"
                   f"model\t\t: {model}\nmodel name\t: AMD EPYC\nstepping\t: 1\n"
                   "flags\t\t: avx2 avx512f avx512_vnni avx512_bf16\n\n" for n in range(2))
    (tmp_path / "cpuinfo").write_text(text)
    real = cpu.Path
    monkeypatch.setattr(cpu, "Path", lambda p: tmp_path / "cpuinfo"
                        if str(p) == "/proc/cpuinfo" else real(p))
    monkeypatch.setattr(cpu.platform, "machine", lambda: "x86_64")
    cpu._flags_and_model.cache_clear()
    try:
        info = cpu.cpu_info()
    finally:
        cpu._flags_and_model.cache_clear()
    assert (info["vendor"], info["family"], info["model_number"], info["stepping"]) == (
        vendor, family, model, 1)
    assert info["microarchitecture"] == uarch
    assert info["avx512_vnni"] and info["avx512_bf16"] and not info["avx_vnni"]
    summary = cpu.cpu_summary(info)
    start = f"AMD EPYC ({uarch}, " if uarch else f"AMD EPYC ({info['cores']} cores"
    assert summary.startswith(start)


def test_this_cpu_is_described():
    from pipdetect._cpu import cpu_info, cpu_summary

    info = cpu_info()
    assert {"model", "machine", "cores", "avx2", "avx512", "vnni", "amx", "neon",
            "int8_u8s8_saturates", "onnxruntime", "vendor", "family", "model_number",
            "microarchitecture", "avx512_vnni", "avx_vnni", "avx512_bf16"} <= set(info)
    assert info["onnxruntime"] in cpu_summary(info)

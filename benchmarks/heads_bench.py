"""Neighbour heads at the selected cells against full neighbour maps, side by side.

    python benchmarks/heads_bench.py --out benchmarks/heads_results.json

Models written by ``pipdetect convert`` evaluate PIP-Net's neighbour heads (``nb_x``,
``nb_y``: L*K channels each) only at each landmark's selected cell, the one cell the
decoder reads them at (``pipdetect.convert.graph``). This script rebuilds, from each
bundled model, the same network with the heads as full 1x1 convolutions over the
whole map (the form of models converted before), checks that both decode to the same
landmarks on random crops, and times one network pass (``LoadedModel.run``) and a
decode, batch 1 and 4, the two forms taking turns in a fresh random order every round
(``bench.Timer``). Prints a Markdown table naming the CPU; ``--out`` writes JSON.
Needs ``onnx`` (``pip install ".[convert]"``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench  # noqa: E402

MODELS = ("pipnet-lite0-300w", "pipnet-lite0-300w-int8")


def full_maps(model: Path, out: Path) -> None:
    """Write ``model`` (neighbour heads at the selected cells) with the neighbour heads as
    1x1 convolutions over the whole map instead: (batch, L*K, h, w) outputs. Works on
    converted files and on their int8 copies, in which the quantiser has folded the
    weights' reshapes into constants."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from pipdetect.convert.graph import HEAD_PREFIX
    from pipdetect.model import METADATA_KEY, load_model

    spec = load_model(model).spec
    L, K = spec.num_landmarks, spec.num_nb
    proto = onnx.load(str(model))
    graph = proto.graph
    consts = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    made_by = {o: n for n in graph.node for o in n.output}

    def value(name: str) -> np.ndarray:
        """A constant of the graph: an initializer, or reshapes/transposes of one."""
        if name in consts:
            return consts[name]
        node = made_by[name]
        if node.op_type == "Reshape":
            return value(node.input[0]).reshape(value(node.input[1]))
        if node.op_type == "Transpose":
            perm = next(a.ints for a in node.attribute if a.name == "perm")
            return value(node.input[0]).transpose(list(perm))
        raise ValueError(f"{model}: {name} is not a constant of the heads")

    features = next(n.input[0] for n in graph.node if n.name == f"{HEAD_PREFIX}features")
    heads = {}
    for name in ("nb_x", "nb_y"):
        product = next(n for n in graph.node if n.name == f"{HEAD_PREFIX}{name}/product")
        total = next(n for n in graph.node if n.name == f"{HEAD_PREFIX}{name}/sum")
        weight = value(product.input[1])  # (L, C, K)
        heads[name] = (weight.transpose(0, 2, 1).reshape(L * K, -1, 1, 1),
                       value(total.input[1]).reshape(L * K))
    keep = [n for n in graph.node if not n.name.startswith(HEAD_PREFIX)]
    del graph.node[:]
    graph.node.extend(keep)
    for init in [i for i in graph.initializer if i.name.startswith(HEAD_PREFIX)]:
        graph.initializer.remove(init)
    mh, mw = spec.map_size
    for name, (w, b) in heads.items():
        graph.initializer.extend([numpy_helper.from_array(w, f"{name}_full.weight"),
                                  numpy_helper.from_array(b, f"{name}_full.bias")])
        graph.node.append(helper.make_node(
            "Conv", [features, f"{name}_full.weight", f"{name}_full.bias"], [name],
            name=f"{name}_full"))
        declared = next(o for o in graph.output if o.name == name)
        declared.CopyFrom(helper.make_tensor_value_info(
            name, TensorProto.FLOAT, ["batch", L * K, mh, mw]))
    for prop in proto.metadata_props:  # full maps: format version 1
        if prop.key == METADATA_KEY:
            prop.value = json.dumps({**json.loads(prop.value), "format_version": 1})
    used = {i for n in graph.node for i in n.input}
    for init in [i for i in graph.initializer if i.name not in used]:
        graph.initializer.remove(init)  # the stored 1x1 weights, now copied into the Convs
    onnx.save(proto, str(out))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--out", type=Path, default=None, help="write the JSON report here")
    args = p.parse_args(argv)

    from pipdetect._cpu import cpu_info, cpu_summary
    from pipdetect.decode import PIPDecoder
    from pipdetect.model import load_model
    from pipdetect.zoo import bundled_path

    report: dict[str, Any] = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join(["heads_bench.py", *(argv if argv is not None else sys.argv[1:])]),
        "cpu": cpu_summary(), "cpu_info": cpu_info(), "rounds": args.rounds, "models": {},
    }
    load_before = os.getloadavg()[0]
    timer = bench.Timer(args.rounds, block=0.2)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="heads-bench-") as tmp:
        for name in MODELS:
            at_cell = load_model(bundled_path(name), threads=2)
            assert at_cell.neighbours_at_cell, f"{name}: not the at-cell form"
            full_path = Path(tmp) / f"{name}-full.onnx"
            full_maps(bundled_path(name), full_path)
            full = load_model(full_path, threads=2)
            spec = at_cell.spec
            decoder = PIPDecoder(spec.meanface, spec.num_nb)
            h, w = spec.input_size
            row: dict[str, Any] = {}
            for batch in (1, 4):
                x = rng.normal(size=(batch, 3, h, w)).astype(np.float32)
                a, b = decoder(*full.run(x))[0], decoder(*at_cell.run(x))[0]
                diff = float(np.abs(a - b).max())
                samples = timer.run({
                    "full maps": lambda x=x, m=full, d=decoder: d(*m.run(x)),
                    "at the selected cells": lambda x=x, m=at_cell, d=decoder: d(*m.run(x)),
                })
                row[f"batch {batch}"] = {
                    "ms_full_maps": bench.ms(samples["full maps"]),
                    "ms_at_cells": bench.ms(samples["at the selected cells"]),
                    "speed_up": round(bench.ratio(samples["full maps"],
                                                  samples["at the selected cells"]), 3),
                    "max_landmark_difference": diff,
                }
                bench.log(f"{name} batch {batch}: {row[f'batch {batch}']}")
            report["models"][name] = row
    report["load_average_before_after"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    return bench.finish(report, markdown, args.out)


def markdown(report: dict[str, Any]) -> str:
    lines = [f"Measured {report['date']} on {report['cpu']}; medians of {report['rounds']} "
             f"interleaved rounds; load average before / after "
             f"{report['load_average_before_after']}.", "",
             "| model | batch | full neighbour maps | at the selected cells | speed-up |",
             "|---|---|---|---|---|"]
    for name, row in report["models"].items():
        for batch, r in row.items():
            lines.append(f"| `{name}` | {batch.split()[1]} | {r['ms_full_maps']:.2f} ms | "
                         f"{r['ms_at_cells']:.2f} ms | {r['speed_up']:.2f}x |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

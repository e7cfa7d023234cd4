"""What one hostile or unlucky input costs (issue 20): peak memory and time to refuse.

    python benchmarks/hostile_inputs.py            # ~1 min; writes 1.3 GB of test files
    python benchmarks/hostile_inputs.py --quick    # the refusals only, no 100 MP files

Each case runs in a fresh interpreter and reports its peak resident memory
(``VmHWM``, Linux) and the time of the call alone. Part 1 loads the largest images the
default limit accepts (100 MP: a 12500 x 8000 picture as PNG, JPEG, BMP,
uncompressed 16-bit TIFF and progressive JPEG). Part 2 feeds the hostile files of the test suite
(``tests/hostilefiles.py`` and the metadata of ``tests/test_model_format.py``):
each must be refused with pipdetect's own error, in under 5 s. The figures in
docs/security.md ("Limits") come from here.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROBE = textwrap.dedent("""
    import json, sys, time
    sys.path[:0] = [{tests!r}, {src!r}]
    setup, call = {setup!r}, {call!r}
    exec(setup)
    start = time.perf_counter()
    try:
        exec(call)
        outcome = "accepted"
    except Exception as exc:
        from pipdetect.errors import PipdetectError
        kind = "refused" if isinstance(exc, PipdetectError) else "RAW ERROR"
        outcome = f"{{kind}}: {{type(exc).__name__}}: {{str(exc)[:90]}}"
    seconds = time.perf_counter() - start
    # VmHWM, not ru_maxrss: Linux keeps ru_maxrss across exec (the parent's peak)
    status = open("/proc/self/status").read()
    peak = int(status.split("VmHWM:")[1].split()[0]) / 1024
    print(json.dumps({{"outcome": outcome, "seconds": seconds, "peak_mb": peak}}))
""")


def probe(setup: str, call: str) -> dict:
    code = PROBE.format(tests=str(ROOT / "tests"), src=str(ROOT / "src"), setup=setup, call=call)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=600, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def big_images(folder: Path) -> list[tuple[str, str, str]]:
    import cv2
    import numpy as np

    image = np.zeros((8000, 12500, 3), np.uint8)
    image[::7, ::5] = 200
    files = {"PNG 8-bit": "big.png", "JPEG": "big.jpg", "BMP (uncompressed)": "big.bmp"}
    for name in files.values():
        cv2.imwrite(str(folder / name), image)
    cv2.imwrite(str(folder / "big16.tif"), image.astype(np.uint16) * 257,
                [cv2.IMWRITE_TIFF_COMPRESSION, 1])
    files["TIFF 16-bit, uncompressed"] = "big16.tif"
    cv2.imwrite(str(folder / "prog.jpg"), image, [
        cv2.IMWRITE_JPEG_PROGRESSIVE, 1,
        cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444])
    files["JPEG progressive 4:4:4"] = "prog.jpg"
    setup = "from pipdetect.image import load_image"
    return [(f"100 MP {kind}", setup, f"load_image({str(folder / name)!r})")
            for kind, name in files.items()]


def hostile_cases(folder: Path) -> list[tuple[str, str, str]]:
    cases = []
    load = "from pipdetect.image import load_image; import hostilefiles as h"
    for side in (100_000, 30_000):
        path = folder / f"bomb{side}.png"
        cases.append((f"PNG header bomb {side}^2 (69 bytes)", load
                      + f"; open({str(path)!r}, 'wb').write(h.png_bomb({side}, {side}))",
                      f"load_image({str(path)!r})"))
    cases.append(("JPEG header bomb 65535^2", load + f"; open({str(folder / 'b.jpg')!r}, 'wb')"
                  ".write(h.jpeg_bomb(65535, 65535))", f"load_image({str(folder / 'b.jpg')!r})"))
    arrays = {"40000x2000 float32 array": "(40000, 2000), np.float32",
              "100000^2 uint8 array": "(100000, 100000), np.uint8",
              "20000^2 uint16 array": "(20000, 20000), np.uint16"}
    for name, (shape, dtype) in ((k, v.rsplit(", ", 1)) for k, v in arrays.items()):
        cases.append((name, "import numpy as np; from pipdetect.image import load_image",
                      f"load_image(np.broadcast_to(np.zeros(1, {dtype}), {shape}))"))
    model = ("import json; from pathlib import Path; from modelfactory import known_answer_model, "
             "make_spec; from pipdetect.presets import load_meanface; from pipdetect.model import "
             "load_model, METADATA_KEY; mf = load_meanface('WFLW'); good = make_spec(mf).to_dict()")
    texts = {
        "model: metadata nested 100000 deep": "'{\"provenance\": ' + '[' * 100000 + ']' * 100000 "
                                             "+ '}'",
        "model: num_landmarks 1e400": "json.dumps(good).replace('\"num_landmarks\": 98', "
                                      "'\"num_landmarks\": 1e400')",
        "model: 5000-digit integer": "json.dumps(good).replace('\"num_landmarks\": 98', "
                                     "'\"num_landmarks\": ' + '9' * 5000)",
        "model: 8000 landmarks": "json.dumps({**good, 'num_landmarks': 8000, "
                                 "'meanface': [0.5] * 16000})",
        "model: crop log-size 709": "json.dumps({**good, 'crop_policy': {'type': 'box-linear', "
                                    "'box': [0, 0, 709, 709]}})",
    }
    for i, (name, text) in enumerate(texts.items()):
        path = folder / f"m{i}.onnx"
        cases.append((name, model + f"; known_answer_model(Path({str(path)!r}), mf, "
                      f"metadata={{METADATA_KEY: {text}}})", f"load_model({str(path)!r})"))
    ckpt = ("import pickle, numpy as np; import hostilefiles as h; "
            "from pipdetect.convert.checkpoint import load_checkpoint")
    four = "{'archive/data/0': np.arange(4, dtype='<f4').tobytes()}"
    checkpoints = {
        "checkpoint: shared list 2^45 leaves": "h.zip_checkpoint(P, h.shared_nest(45))",
        "checkpoint: 3 stride-0 tensors of 1 GiB": (
            "h.zip_checkpoint(P, h.tensor_pickle({f'w{i}': ((16000, 16000), (0, 0), '0', 4) "
            f"for i in range(3)}}), {four})"),
        "checkpoint: 256 MiB zip member, 0.3 MB file": (
            "h.zip_checkpoint(P, h.tensor_pickle({'w': ((2**26,), (1,), '0', 2**26)}), "
            "deflated={'archive/data/0': 2**28})"),
    }
    for i, (name, make) in enumerate(checkpoints.items()):
        path = folder / f"c{i}.pth"
        cases.append((name, ckpt + f"; P = {str(path)!r}; " + make,
                      f"load_checkpoint({str(path)!r})"))
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="skip the 100 MP images")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        cases = ([] if args.quick else big_images(folder)) + hostile_cases(folder)
        print(f"{'input':45} {'peak MB':>8} {'seconds':>8}  outcome")
        worst = 0.0
        for name, setup, call in cases:
            result = probe(setup, call)
            print(f"{name:45} {result['peak_mb']:8.0f} {result['seconds']:8.3f}  "
                  f"{result['outcome'][:100]}")
            if not name.startswith("100 MP"):
                worst = max(worst, result["seconds"])
                assert result["outcome"].startswith("refused"), name
        print(f"slowest refusal: {worst:.3f} s")


if __name__ == "__main__":
    main()

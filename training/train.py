"""Train a 68-point PIP-Net on a folder of image + .pts pairs (the pipdetect default model).

    pip install ".[train]"
    python training/train.py --data ../shared/data/300w_train --val ../shared/data/lfpw_test \
        --out ~/pipdetect-train/lite0

Follows the PIP-Net reference (Jin et al. 2021) for the 300W preset: 256x256
crops from the landmark box x 1.1, stride 32 (8x8 maps), 10 neighbours from the
300W mean face, loss 10 x MSE(score maps) + L1 of the x/y and neighbour offsets.
``--input-size N`` (a multiple of 32, e.g. 224: 7x7 maps) samples the same crop at
N x N pixels instead; the size goes into ``run.json`` and ``release.py`` converts
with it. ``--init`` takes a model trained at any size (the weights do not depend on it).
Augmentation: rotation, scale, shift, flip (68-point flip map), colour, grey,
blur, occlusion (``data.Augment``). In the last ``--detector-epochs`` epochs half
of the crops start from the library's own crop (YuNet box -> crop policy fitted
on the training faces), the crop the model sees in use.

Everything written goes to ``--out``, outside the repository: ``last.pt`` (the
whole state, rewritten after every epoch; the run resumes from it when started
again with the same ``--out`` and ``--input-size``), ``epochNN.pth`` (state_dict in
the layout ``pipdetect convert`` reads; the final one is ``final.pth``),
``crop_policy.json``, ``log.jsonl`` (one row per epoch: losses, learning rate,
validation NME with true-landmark crops and with detector crops, seconds) and
``run.json`` (the command, commit and settings). The seed fixes data order,
augmentation and initialisation; bit-exact repeats need the same CPU kind and
thread count.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import data as D  # noqa: E402

INPUT = 256
"""Default network input side in pixels (``--input-size``), the reference's."""
STRIDE = 32
NUM_NB = 10


def log(msg: str) -> None:
    print(time.strftime("%H:%M:%S"), msg, flush=True)


def input_size(text: str) -> int:
    """``--input-size``: a positive multiple of the stride (32), in pixels."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0 or value % STRIDE:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a positive multiple of the stride {STRIDE} (e.g. 192, 224, 256)")
    return value


def neighbours_300w(num_nb: int = NUM_NB) -> np.ndarray:
    """(68, K) neighbour lists of the 300W mean face by pipdetect's decoder's own rule."""
    from pipdetect import PIPDecoder
    from pipdetect.presets import load_meanface

    return np.asarray(PIPDecoder(load_meanface("300W"), num_nb=num_nb).neighbours)


def fit_policy(faces: list[D.Face], ridge: float = 0.001) -> Any:
    """The YuNet box -> training crop policy, least squares on the training faces."""
    import fit_crop_policy as F  # models/, put on sys.path by data.py

    from pipdetect.crop import CropPolicy

    boxes, kps, points = D.detections_for_policy(faces)
    if len(boxes) < 12:
        raise SystemExit(f"YuNet found only {len(boxes)} of the {len(faces)} training faces; "
                         "a crop policy needs at least 12 (are the .pts files 1-based? "
                         "then pass --one-based)")
    # box only: axis-aligned; with keypoints: in the frame levelled by their roll
    box = F.crop_params(boxes, F.target_crops("300W", points)).mean(axis=0)
    targets = F.levelled_targets("300W", points, kps)
    params = F.crop_params(boxes, targets, kps)
    matrix = F.fit_keypoint_matrix(F.keypoint_features(boxes, kps), params, ridge)
    policy = CropPolicy(box=tuple(float(v) for v in box), keypoints=matrix)
    fitted = policy.crops(boxes, kps)
    iou = float(F.oriented_iou(fitted, targets).mean())
    return policy, len(boxes), iou


# ----------------------------------------------------------------------------- batches
def batches(faces: list[D.Face], order: np.ndarray, batch_size: int, rng: np.random.Generator,
            aug: D.Augment, neighbours: np.ndarray, size: int = INPUT) -> Any:
    """Yield (inputs, targets) numpy batches of ``size`` x ``size`` crops (maps of
    ``size / STRIDE`` cells a side), built one batch ahead in a thread."""
    grid = (size // STRIDE, size // STRIDE)

    def build(idx: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        crops, targets = [], []
        for i in idx:
            crop, norm = D.make_example(faces[i], rng, aug, size)
            crops.append(crop)
            targets.append(D.make_targets(norm, neighbours, grid))
        return D.to_input(np.stack(crops)), {k: np.stack([t[k] for t in targets])
                                              for k in targets[0]}

    n = len(order) // batch_size
    q: queue.Queue[Any] = queue.Queue(maxsize=2)

    def work() -> None:
        for s in range(n):
            q.put(build(order[s * batch_size : (s + 1) * batch_size]))
        q.put(None)

    threading.Thread(target=work, daemon=True).start()
    while (item := q.get()) is not None:
        yield item


# ----------------------------------------------------------------------------- evaluation
def predict(net: Any, crops: np.ndarray, decoder: Any, batch: int = 32) -> np.ndarray:
    """Normalised landmarks (N, 68, 2) of (N, S, S, 3) BGR crops, pipdetect's decoder."""
    import torch

    out = []
    with torch.no_grad():
        for s in range(0, len(crops), batch):
            maps = net(torch.from_numpy(D.to_input(crops[s : s + batch])))
            out.append(np.asarray(decoder(*[m.float().numpy() for m in maps])[0]))
    return np.concatenate(out)


def evaluate(net: Any, faces: list[D.Face], decoder: Any, size: int = INPUT) -> dict[str, float]:
    """Mean inter-ocular NME (%) with true-landmark crops and with detector crops, the
    crops warped to ``size`` x ``size`` pixels.

    Faces YuNet misses count in the first number only (``detector_missed``)."""
    from pipdetect.crop import as_crops, crops_to_image, warp_crops

    net.eval()
    result: dict[str, float] = {}
    for kind in ("gt", "detector"):
        items = [(f, D.landmark_crop(f.points) if kind == "gt" else f.detector_crop)
                 for f in faces]
        items = [(f, c) for f, c in items if c is not None]
        crops = np.concatenate([warp_crops(f.image, c[None], (size, size)) for f, c in items])
        pred = predict(net, crops, decoder)
        pix = crops_to_image(pred, np.concatenate([as_crops(c) for _, c in items]))
        truth = np.array([f.points for f, _ in items])
        result[f"nme_{kind}"] = round(float(D.nme(pix, truth).mean()), 3)
    result["detector_missed"] = sum(f.detector_crop is None for f in faces)
    return result


# ----------------------------------------------------------------------------- main
def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True, help="folder of image + .pts pairs")
    p.add_argument("--val", type=Path, help="validation folder (image + .pts), never trained on")
    p.add_argument("--out", type=Path, required=True, help="work folder outside the repository")
    p.add_argument("--one-based", action="store_true",
                   help="the .pts files hold the original 1-based 300-W coordinates")
    p.add_argument("--backbone", default="efficientnet_lite0",
                   choices=("efficientnet_lite0", "resnet18"))
    p.add_argument("--input-size", type=input_size, default=INPUT, metavar="PIXELS",
                   help=f"square network input, a multiple of {STRIDE} (default {INPUT}: "
                        f"{INPUT // STRIDE}x{INPUT // STRIDE} maps; 224: 7x7). The crop is the "
                        "same part of the face at every size, only its resolution changes")
    p.add_argument("--epochs", type=int, default=24)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=5e-4, help="peak of the one-cycle schedule")
    p.add_argument("--weight-decay", type=float, default=1e-4, help="AdamW, decoupled")
    p.add_argument("--warmup", type=float, default=0.1, help="fraction of steps rising to --lr")
    p.add_argument("--detector-epochs", type=int, default=6,
                   help="last epochs in which half of the crops come from YuNet + crop policy")
    p.add_argument("--detector-p", type=float, default=0.5)
    p.add_argument("--annotation-offset", type=float, default=0.0, metavar="C",
                   help="the annotations' own x offset, a fraction of the inter-ocular "
                        "distance: mirrored labels keep it (data.Augment.annotation_offset; "
                        "0: the reference's plain mirror; training/README.md)")
    p.add_argument("--init", type=Path, metavar="MODEL",
                   help="start from a trained model instead of ImageNet weights: a state_dict "
                        "(.pth, e.g. another run's final.pth) or a converted Lite0 .onnx such "
                        "as the shipped default (folded BatchNorms rebuilt: nets.init_from_onnx)")
    p.add_argument("--seed", type=int, default=2026)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="bf16: autocast the forward pass (fast only on CPUs with AMX or "
                        "AVX512-BF16; the weights stay fp32)")
    p.add_argument("--limit", type=int, help="use only the first N training faces (smoke tests)")
    p.add_argument("--val-limit", type=int, help="use only the first N validation faces")
    p.add_argument("--max-steps", type=int, help="stop each epoch after N steps (smoke tests)")
    p.add_argument("--stop-after", type=int, default=None, metavar="N",
                   help="end this invocation after N more epochs (run it again to resume)")
    return p.parse_args(argv)


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    import nets
    import torch

    args = parse(argv)
    state_path = args.out / "last.pt"
    state = (torch.load(state_path, map_location="cpu", weights_only=False)
             if state_path.exists() else None)
    saved_size = int(state.get("input_size", INPUT)) if state is not None else args.input_size
    if saved_size != args.input_size:  # a state without the key is from before the option: 256
        raise SystemExit(
            f"{state_path} is a run at --input-size {saved_size}, not {args.input_size}: resume it "
            f"with --input-size {saved_size}, or train at {args.input_size} in another --out "
            f"(--init a .pth of this run to start from its weights)")
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    from pipdetect import PIPDecoder
    from pipdetect.presets import load_meanface

    log(f"reading {args.data}")
    faces = D.load_faces(args.data, args.one_based, args.limit)
    val = D.load_faces(args.val, limit=args.val_limit) if args.val else []
    log(f"{len(faces)} training faces, {len(val)} validation faces")
    policy, n_fit, iou = fit_policy(faces)
    (args.out / "crop_policy.json").write_text(json.dumps({
        **policy.to_dict(),
        "fitted_on": (f"YuNet (pipdetect FaceFinder defaults) on the {n_fit} training faces it "
                      f"finds of {len(faces)} in {args.data.name}; target: landmark box x 1.1; "
                      f"mean IoU {iou:.3f} on them"),
    }, indent=1))
    found = D.attach_detector_crops(faces, policy)
    found_val = D.attach_detector_crops(val, policy)
    log(f"crop policy fitted on {n_fit} faces (IoU {iou:.3f}); YuNet found {found}/{len(faces)} "
        f"training and {found_val}/{len(val)} validation faces")

    neighbours = neighbours_300w()
    decoder = PIPDecoder(load_meanface("300W"), num_nb=NUM_NB)
    net = nets.build(args.backbone, input_size=args.input_size)
    if args.init and state is None:
        # the weights hold nothing of the input size: a 256 model starts a run at any size
        if args.init.suffix == ".onnx":
            rng0 = np.random.default_rng(args.seed)
            crops = np.stack([D.make_example(faces[i], rng0, D.NO_AUGMENT, args.input_size)[0]
                              for i in rng0.permutation(len(faces))[:64]])
            nets.init_from_onnx(net, args.init, torch.from_numpy(D.to_input(crops)))
        else:
            net.load_state_dict(torch.load(args.init, map_location="cpu", weights_only=True))
        log(f"initialised from {args.init}")
    net = net.to(memory_format=torch.channels_last)
    steps = len(faces) // args.batch_size
    if args.max_steps:
        steps = min(steps, args.max_steps)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=args.lr, total_steps=args.epochs * steps, pct_start=args.warmup,
        div_factor=25, final_div_factor=1e3)
    start_epoch, history = 0, []
    if state is not None:
        net.load_state_dict(state["net"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        start_epoch, history = state["epoch"], state["history"]
        state = None
        log(f"resumed from {state_path} after epoch {start_epoch}")
    (args.out / "run.json").write_text(json.dumps({
        "command": " ".join([sys.executable, *sys.argv]), "commit": commit(),
        "args": {k: str(v) for k, v in vars(args).items()}, "torch": torch.__version__,
        "training_faces": len(faces), "validation_faces": len(val),
    }, indent=1))

    aug = D.Augment(annotation_offset=args.annotation_offset)
    stop = args.epochs if args.stop_after is None else min(args.epochs,
                                                            start_epoch + args.stop_after)
    for epoch in range(start_epoch, stop):
        det_phase = epoch >= args.epochs - args.detector_epochs
        epoch_aug = D.with_detector_crops(aug, args.detector_p if det_phase else 0.0)
        rng = np.random.default_rng([args.seed, epoch])
        torch.manual_seed(args.seed * 1000 + epoch)
        order = rng.permutation(len(faces))[: steps * args.batch_size]
        net.train()
        sums: dict[str, float] = {}
        t0 = time.perf_counter()
        for inputs, targets in batches(faces, order, args.batch_size, rng, epoch_aug, neighbours,
                                       args.input_size):
            x = torch.from_numpy(inputs).to(memory_format=torch.channels_last)
            t = {k: torch.from_numpy(v) for k, v in targets.items()}
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.precision == "bf16"):
                outputs = net(x)
            loss, parts = nets.pip_loss(outputs, t)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            for k, v in {"loss": float(loss.detach()), **parts}.items():
                sums[k] = sums.get(k, 0.0) + v
        train_s = time.perf_counter() - t0
        row: dict[str, Any] = {"epoch": epoch + 1, "detector_crops": det_phase,
                               **{k: round(v / steps, 5) for k, v in sums.items()},
                               "lr": opt.param_groups[0]["lr"], "train_seconds": round(train_s, 1)}
        if val:
            row.update(evaluate(net, val, decoder, args.input_size))
        history.append(row)
        with open(args.out / "log.jsonl", "a") as fh:
            fh.write(json.dumps(row) + "\n")
        log(f"epoch {epoch + 1}/{args.epochs}: " + ", ".join(
            f"{k} {v}" for k, v in row.items() if k != "epoch"))
        torch.save(net.state_dict(), args.out / f"epoch{epoch + 1:02d}.pth")
        old = args.out / f"epoch{epoch:02d}.pth"
        if old.exists():
            old.unlink()  # one state_dict on disk besides last.pt
        torch.save({"net": net.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                    "epoch": epoch + 1, "history": history, "input_size": args.input_size},
                   state_path.with_suffix(".tmp"))
        os.replace(state_path.with_suffix(".tmp"), state_path)
    if stop < args.epochs:
        log(f"stopped after epoch {stop}; run the same command again to resume")
        return 0
    final = args.out / "final.pth"
    torch.save(net.state_dict(), final)
    log(f"done: {final}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

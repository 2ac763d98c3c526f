#!/usr/bin/env python3
"""Train the default DeepLabV3+ MobileNetV2 on segstream's own synthetic world.

No data set can be downloaded here, but segstream's ``synthetic`` source draws a driving
scene together with its exact Cityscapes label map. This script

1. renders training frames and their truth with segstream itself (``segstream run`` on a
   ``synthetic`` source with two ``png`` sinks, ``what = "frame"`` and ``what = "truth"``),
   on seeds TRAIN_SEEDS, which no test or evaluation uses (they evaluate seeds below 1000);
2. trains smp ``DeepLabV3Plus(encoder_name="mobilenet_v2", encoder_weights=None)`` from
   scratch on CPU: seeded, deterministic algorithms, fixed thread count, random scale and
   crop, AdamW with a one-cycle schedule;
3. exports it to ONNX exactly like the untrained export (``export_models.export_deeplab``:
   same input, output, opset and dynamic axes), so the same model config reads it;
4. writes the FP16 variant (float16 weights, input and output) and the INT8 variant (static
   QDQ, calibrated on synthetic frames the training never saw) with ONNX Runtime's tools,
   and a manifest with the losses. BF16 needs no file: OpenVINO runs the FP32 one in BF16.

The weights know the synthetic renderer's world only (flat-coloured road, sidewalks,
terrain, buildings, sky, trees, poles with signs, box cars, stick pedestrians). They are
meaningless on real footage; bring a real model for that (see the README).

Usage::

    python scripts/train_models.py --segstream target/release/segstream --out DIR
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import export_models as em  # noqa: E402

STEM = "deeplabv3plus_mobilenet_v2_synthetic"
SEED = 20261203
TRAIN_SEEDS = range(100_000, 100_320)  # one frame each: every seed is another street
CALIB_SEEDS = range(200_000, 200_016)
WIDTH, HEIGHT = 640, 360
STEPS = 320
BATCH = 8
CROP = (192, 256)  # height, width of the training crops
SCALES = (0.5, 1.0)  # random scale range before cropping
LR = 4e-3
THREADS = 2


def run_synthetic(segstream: str, tmp: str, seed: int, frames: int, sinks: str, size=(WIDTH, HEIGHT),
                  start: int = 0):
    """`segstream run` on `frames` frames of synthetic seed `seed` from scene time `start`,
    into `sinks` (the pipeline file's [[sinks]] tables)."""
    pipeline = os.path.join(tmp, "render.toml")
    with open(pipeline, "w") as fh:
        fh.write(f'[source]\ntype = "synthetic"\nwidth = {size[0]}\nheight = {size[1]}\n'
                 f"frames = {frames}\nseed = {seed}\nstart = {start}\n" + sinks)
    subprocess.run([segstream, "run", pipeline, "--status-interval", "0", "--log-level", "error"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def render(segstream: str, seeds, out_dir: str, log):
    """Frame 0 and its truth for every seed, drawn by segstream's synthetic source."""
    images, truths = [], []
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        for seed in seeds:
            run_synthetic(segstream, tmp, seed, 1,
                          f'[[sinks]]\ntype = "png"\ndir = "{tmp}/frame"\nwhat = "frame"\n'
                          f'[[sinks]]\ntype = "png"\ndir = "{tmp}/truth"\nwhat = "truth"\n')
            images.append(np.asarray(Image.open(os.path.join(tmp, "frame", "000000.png")).convert("RGB")))
            truths.append(np.asarray(Image.open(os.path.join(tmp, "truth", "000000.png"))))
    log("  rendered %d frames %dx%d with segstream" % (len(images), WIDTH, HEIGHT))
    return np.stack(images), np.stack(truths)


def batches(images, truths, rng):
    """Random scale, crop and horizontal flip; inputs normalised as the model config says."""
    import torch
    import torch.nn.functional as F

    ch, cw = CROP
    mean = torch.tensor(em.IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(em.IMAGENET_STD).view(1, 3, 1, 1)
    while True:
        xs, ys = [], []
        for _ in range(BATCH):
            i = int(rng.integers(len(images)))
            s = float(rng.uniform(*SCALES))
            h, w = max(ch, round(HEIGHT * s)), max(cw, round(WIDTH * s))
            x = torch.from_numpy(images[i]).permute(2, 0, 1)[None].float()
            y = torch.from_numpy(truths[i].astype(np.int64))[None, None].float()
            x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
            y = F.interpolate(y, size=(h, w), mode="nearest")
            top, left = int(rng.integers(h - ch + 1)), int(rng.integers(w - cw + 1))
            x, y = x[..., top:top + ch, left:left + cw], y[..., top:top + ch, left:left + cw]
            if rng.random() < 0.5:
                x, y = x.flip(-1), y.flip(-1)
            xs.append(x)
            ys.append(y)
        x = (torch.cat(xs).round().clamp(0, 255) / 255.0 - mean) / std
        yield x, torch.cat(ys)[:, 0].long()


def train(images, truths, log):
    import torch
    import segmentation_models_pytorch as smp

    torch.manual_seed(SEED)
    torch.set_num_threads(THREADS)
    torch.use_deterministic_algorithms(True)
    model = smp.DeepLabV3Plus(encoder_name="mobilenet_v2", encoder_weights=None, classes=em.SEG_CLASSES)
    # Rare, thin classes (poles, signs, people) weigh more, by inverse square-root frequency.
    counts = np.bincount(truths.ravel(), minlength=em.SEG_CLASSES).astype(np.float64)
    weight = np.where(counts > 0, 1.0 / np.sqrt(np.maximum(counts, 1) / counts.sum()), 0.0)
    weight = torch.tensor(weight / weight[counts > 0].mean(), dtype=torch.float32)
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LR, total_steps=STEPS, pct_start=0.15)
    rng = np.random.default_rng(SEED)
    model.train()
    t0 = time.time()
    losses = []
    for step, (x, y) in zip(range(STEPS), batches(images, truths, rng)):
        loss = torch.nn.functional.cross_entropy(model(x), y, weight=weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if step % 20 == 0 or step == STEPS - 1:
            log("  step %3d/%d loss %.4f (%.0fs)" % (step, STEPS, np.mean(losses[-20:]), time.time() - t0))
    model.eval()
    return model, losses, time.time() - t0


def quantize_qdq(fp32: str, out: str, feeds, exclude=None, **options):
    """Static QDQ INT8 of `fp32` into `out`: per-channel INT8 weights, UINT8 activations,
    MinMax ranges calibrated on `feeds` (one input dict per frame). `exclude(graph)` names
    the nodes of the pre-processed graph to leave float32; `options` go to quantize_static.
    Returns the names left float32. Shared by both training scripts."""
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter(feeds)

        def get_next(self):
            return next(self.items, None)

    pre = out + ".pre.onnx"
    quant_pre_process(fp32, pre, skip_symbolic_shape=True)
    excluded = exclude(onnx.load(pre).graph) if exclude else []
    quantize_static(pre, out, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    nodes_to_exclude=excluded, **options)
    os.remove(pre)
    return excluded


def quantize_int8(fp32: str, out: str, calib: np.ndarray, log):
    """Static QDQ INT8 of every operator, calibrated on synthetic frames."""
    # Height cropped to a multiple of 16, as the model needs.
    quantize_qdq(fp32, out, [{"input": em.to_normalized_chw(im[:im.shape[0] // 16 * 16])[None]}
                             for im in calib])
    log("  INT8 (static QDQ, %d calibration frames): %s (%.1f MB)"
        % (len(calib), out, os.path.getsize(out) / 1e6))


def write_manifest(out_dir: str, stem: str, info: dict, losses, train_seconds: float):
    """STEM.json beside the exports: how they were trained (`info`), the final loss (mean of
    the last 20 steps) and the training time."""
    with open(os.path.join(out_dir, stem + ".json"), "w") as fh:
        json.dump({**info, "final_loss": round(float(np.mean(losses[-20:])), 4),
                   "train_seconds": round(train_seconds, 1)}, fh, indent=2)
        fh.write("\n")


def half(fp32: str, out: str, log):
    """FP16 weights, activations, input and output (ONNX Runtime's float16 converter)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    onnx.save(convert_float_to_float16(onnx.load(fp32), keep_io_types=False), out)
    log("  FP16: %s (%.1f MB)" % (out, os.path.getsize(out) / 1e6))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--segstream", required=True, help="the segstream binary that renders the frames")
    ap.add_argument("--out", required=True, help="output directory (outside git)")
    args = ap.parse_args(argv)
    out_dir = os.path.abspath(args.out)
    os.makedirs(out_dir, exist_ok=True)

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    t_all = time.time()
    log("training %s on the synthetic world (%d steps of %d crops %dx%d, %d threads)"
        % (STEM, STEPS, BATCH, CROP[1], CROP[0], THREADS))
    images, truths = render(args.segstream, TRAIN_SEEDS, out_dir, log)
    model, losses, t_train = train(images, truths, log)
    path = os.path.join(out_dir, STEM + ".onnx")
    em.export_deeplab(model, path + ".tmp")
    os.replace(path + ".tmp", path)
    log("  exported %s (%.1f MB)" % (path, os.path.getsize(path) / 1e6))
    half(path, os.path.join(out_dir, STEM + "_fp16.onnx"), log)
    calib, _ = render(args.segstream, CALIB_SEEDS, out_dir, log)
    quantize_int8(path, os.path.join(out_dir, STEM + "_int8.onnx"), calib, log)
    write_manifest(out_dir, STEM, {"generator": "scripts/train_models.py", "seed": SEED, "steps": STEPS,
                                   "batch": BATCH, "crop": CROP,
                                   "train_seeds": [TRAIN_SEEDS.start, TRAIN_SEEDS.stop],
                                   "frame_size": [WIDTH, HEIGHT]}, losses, t_train)
    log("  done in %.0fs" % (time.time() - t_all))
    return 0


if __name__ == "__main__":
    sys.exit(main())

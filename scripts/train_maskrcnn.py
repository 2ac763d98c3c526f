#!/usr/bin/env python3
"""Train the slim Mask R-CNN (MobileNetV3-Large FPN) on segstream's own synthetic world.

Like ``train_models.py`` for the semantic default, with instances instead of label maps:

1. renders training frames and their true instances with segstream itself (``segstream run``
   on a ``synthetic`` source with a ``png`` sink, ``what = "frame"``, and a ``coco_truth``
   sink, whose COCO file holds every visible car's and pedestrian's exact mask after
   occlusion), one frame on each of the seeds TRAIN_SEEDS, which no test or evaluation uses;
2. trains ``export_models.build_maskrcnn_mobilenet`` (the architecture of the untrained
   ``maskrcnn_mobilenet_v3`` export: torchvision parts, min_size 320, slim heads, COCO's
   91-entry label space, so the same model config reads it) from scratch on CPU: seeded,
   deterministic algorithms, fixed thread count, horizontal flips, AdamW with a one-cycle
   schedule; person and car are COCO ids 1 and 3, mapped from the truth's names;
3. keeps the weights in half precision (``STEM.fp16.npz``, 17 MB: the file committed as
   ``assets/maskrcnn_mobilenet_v3_synthetic.fp16.npz``, because training takes about 50
   minutes on 2 cores, more than set-up can spend), and exports those weights to ONNX
   exactly like the untrained export (``export_models.export_maskrcnn``), with a manifest.

``SEGSTREAM_MASKRCNN_STEPS=N`` shortens the schedule for trials (two short runs of the same
N give the same weights, which is how determinism was checked quickly); the committed
weights use the default.

4. exports the FP16 variant (``STEM_fp16.onnx``: half-precision frames and backbone, see
   ``export_half``) and the INT8 one (``STEM_int8.onnx``: static QDQ calibrated on frames of
   CALIB_SEEDS, see ``quantize_int8``) beside it, which ``bench --precision fp16,int8`` picks.

Set-up does not train: ``--from-weights NPZ`` builds the architecture, loads the committed
weights and exports the ONNX file and its variants (half a minute). ``--check NPZ`` trains again and says whether
the result is the committed file, bit for bit (same library versions and CPU kind), or how
far it is.

The weights know the synthetic renderer's world only (box cars and stick pedestrians over
flat-coloured streets). They are meaningless on real footage; bring a real model for that.

Usage::

    python scripts/train_maskrcnn.py --segstream target/release/segstream --out DIR
    python scripts/train_maskrcnn.py --segstream target/release/segstream \
        --from-weights assets/maskrcnn_mobilenet_v3_synthetic.fp16.npz --out DIR
    python scripts/train_maskrcnn.py --segstream ... --out DIR --check assets/...fp16.npz
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import export_models as em  # noqa: E402
import train_models as tm  # noqa: E402

STEM = "maskrcnn_mobilenet_v3_synthetic"
SEED = 20261206
TRAIN_SEEDS = range(300_000, 300_480)  # one frame each, at a frame index of its own
WIDTH, HEIGHT = 640, 360
STEPS = int(os.environ.get("SEGSTREAM_MASKRCNN_STEPS", "1100"))
BATCH = 4
LR = 2e-3
THREADS = 2
# INT8 calibration frames: seeds no training or test uses.
CALIB_SEEDS = range(400_000, 400_016)
# COCO (torchvision's 91-entry label space) ids of the truth's categories, by name.
COCO_IDS = {"person": 1, "car": 3}


def render(segstream: str, seeds, out_dir: str, log):
    """One frame per seed and its true instances, drawn by segstream's synthetic source."""
    from pycocotools import mask as cmask

    images, targets = [], []
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        for seed in seeds:
            # Frame seed % 90 of each seed: cars and people at other places.
            tm.run_synthetic(segstream, tmp, seed, 1,
                             f'[[sinks]]\ntype = "png"\ndir = "{tmp}/frame"\nwhat = "frame"\n'
                             f'[[sinks]]\ntype = "coco_truth"\npath = "{tmp}/truth.json"\n',
                             size=(WIDTH, HEIGHT), start=seed % 90)
            images.append(np.asarray(Image.open(os.path.join(tmp, "frame", "000000.png")).convert("RGB")))
            with open(os.path.join(tmp, "truth.json")) as fh:
                truth = json.load(fh)
            names = {c["id"]: c["name"] for c in truth["categories"]}
            anns = truth["annotations"]
            boxes = [[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                     for a in anns]
            masks = [cmask.decode(a["segmentation"]) for a in anns]
            targets.append({
                "boxes": np.asarray(boxes, np.float32).reshape(-1, 4),
                "labels": np.asarray([COCO_IDS[names[a["category_id"]]] for a in anns], np.int64),
                "masks": np.stack(masks).astype(np.uint8) if masks else np.zeros((0, HEIGHT, WIDTH), np.uint8),
            })
    n = sum(len(t["labels"]) for t in targets)
    log("  rendered %d frames %dx%d with segstream, %d instances" % (len(images), WIDTH, HEIGHT, n))
    return images, targets


def batches(images, targets, rng):
    """Random frames, flipped half the time; pixels 0..1 as the model's input."""
    import torch

    while True:
        xs, ys = [], []
        for _ in range(BATCH):
            i = int(rng.integers(len(images)))
            x = torch.from_numpy(em.to_unit_chw(images[i]))
            t = targets[i]
            boxes = torch.from_numpy(t["boxes"].copy())
            masks = torch.from_numpy(t["masks"].copy())
            if rng.random() < 0.5:
                x, masks = x.flip(-1), masks.flip(-1)
                boxes = torch.stack([WIDTH - boxes[:, 2], boxes[:, 1], WIDTH - boxes[:, 0], boxes[:, 3]], 1)
            xs.append(x)
            ys.append({"boxes": boxes, "labels": torch.from_numpy(t["labels"].copy()), "masks": masks})
        yield xs, ys


def build():
    """The untrained export's architecture, without its structured kernels (those give
    random weights varied outputs; training starts from torchvision's own initialization)."""
    structure, em.structure_kernels_ = em.structure_kernels_, lambda *a, **k: 0
    try:
        return em.build_maskrcnn_mobilenet(SEED)
    finally:
        em.structure_kernels_ = structure


def half_weights(model) -> dict:
    """The state dict with every floating tensor rounded to float16, as NumPy arrays."""
    out = {}
    for k, v in model.state_dict().items():
        a = v.detach().cpu().numpy()
        out[k] = a.astype(np.float16) if a.dtype.kind == "f" else a
    return out


def load_weights(model, weights: dict):
    import torch

    state = {k: torch.from_numpy(np.asarray(weights[k])).to(v.dtype)
             for k, v in model.state_dict().items()}
    model.load_state_dict(state, strict=True)
    model.eval()
    return model


def export_half(model, path: str, log):
    """The FP16 variant: float16 frames in; the backbone and FPN (most of the arithmetic) in
    half precision; normalization, resizing, the RPN, the RoI heads and the mask paste in
    float32, where box decoding, NMS and RoIAlign would lose accuracy in half. Done in PyTorch
    rather than by ONNX Runtime's float16 converter, which breaks on this graph (it names two
    cast nodes alike)."""
    from collections import OrderedDict

    import torch

    class HalfBackbone(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner.half()
            self.out_channels = inner.out_channels

        def forward(self, x):
            return OrderedDict((k, v.float()) for k, v in self.inner(x.half()).items())

    class HalfFrames(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, images):
            return self.inner([im.float() for im in images])

    model.backbone = HalfBackbone(model.backbone)
    em.export_maskrcnn(HalfFrames(model).eval(), path + ".tmp", half_input=True)
    os.replace(path + ".tmp", path)
    log("  FP16: %s (%.1f MB)" % (path, os.path.getsize(path) / 1e6))


def quantize_int8(fp32: str, out: str, segstream: str, log):
    """Static QDQ INT8 (per-channel weights, UINT8 activations, MinMax ranges) of every
    convolution but the RPN head's, calibrated on CALIB_SEEDS' frames. Measured on seeds 1 and
    7 (100 frames each): every convolution quantized loses 2 to 7 points of mask AP (the
    objectness logits of the RPN are the sensitive part: proposals go missing); without the
    RPN head the change is within 0.2 points. The box head's fully connected layers stay
    float32 too (quantized, 4 points lost)."""
    images, _ = render(segstream, CALIB_SEEDS, os.path.dirname(out), log)
    keep = tm.quantize_qdq(
        fp32, out, [{"image": em.to_unit_chw(im)} for im in images],
        exclude=lambda graph: [n.name for n in graph.node if n.op_type == "Conv" and n.name.startswith("/rpn/")],
        op_types_to_quantize=["Conv"])
    log("  INT8 (static QDQ, %d calibration frames, %d convolutions left float32): %s (%.1f MB)"
        % (len(images), len(keep), out, os.path.getsize(out) / 1e6))


def export_all(weights: dict, out_dir: str, segstream: str, log):
    """The FP32 export of `weights`, and its FP16 and INT8 variants beside it."""
    path = os.path.join(out_dir, STEM + ".onnx")
    em.export_maskrcnn(load_weights(build(), weights), path + ".tmp")
    os.replace(path + ".tmp", path)
    log("  exported %s (%.1f MB)" % (path, os.path.getsize(path) / 1e6))
    export_half(load_weights(build(), weights), os.path.join(out_dir, STEM + "_fp16.onnx"), log)
    quantize_int8(path, os.path.join(out_dir, STEM + "_int8.onnx"), segstream, log)


def train(images, targets, log):
    import torch

    torch.manual_seed(SEED)
    torch.set_num_threads(THREADS)
    torch.use_deterministic_algorithms(True, warn_only=True)
    model = build()
    # Fewer sampled regions per image than torchvision's 512: the scenes hold a handful of
    # objects, and the box head's cost is per region.
    model.roi_heads.fg_bg_sampler.batch_size_per_image = 128
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=LR, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LR, total_steps=STEPS, pct_start=0.1)
    rng = np.random.default_rng(SEED)
    model.train()
    t0 = time.time()
    losses = []
    for step, (x, y) in zip(range(STEPS), batches(images, targets, rng)):
        parts = model(x, y)
        loss = sum(parts.values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 10.0)
        opt.step()
        sched.step()
        losses.append([float(loss.detach())] + [float(v.detach()) for v in parts.values()])
        if step % 20 == 0 or step == STEPS - 1:
            recent = np.mean(losses[-20:], axis=0)
            log("  step %3d/%d loss %.4f (%s) (%.0fs)" % (
                step, STEPS, recent[0],
                ", ".join("%s %.3f" % (k.replace("loss_", ""), v) for k, v in zip(parts, recent[1:])),
                time.time() - t0))
    model.eval()
    return model, [l[0] for l in losses], time.time() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--segstream", help="the segstream binary that renders the frames")
    ap.add_argument("--out", required=True, help="output directory (outside git)")
    ap.add_argument("--from-weights", help="export these half-precision weights instead of training")
    ap.add_argument("--check", help="train, then compare with these committed weights")
    args = ap.parse_args(argv)
    out_dir = os.path.abspath(args.out)
    os.makedirs(out_dir, exist_ok=True)

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    if not args.segstream:
        ap.error("--segstream is needed: it renders the training and calibration frames")
    if args.from_weights:
        import torch

        torch.set_num_threads(THREADS)
        log("exporting %s from %s" % (STEM, args.from_weights))
        export_all(dict(np.load(args.from_weights)), out_dir, args.segstream, log)
        return 0

    t_all = time.time()
    log("training %s on the synthetic world (%d steps of %d frames %dx%d, %d threads)"
        % (STEM, STEPS, BATCH, WIDTH, HEIGHT, THREADS))
    images, targets = render(args.segstream, TRAIN_SEEDS, out_dir, log)
    model, losses, t_train = train(images, targets, log)
    weights = half_weights(model)
    np.savez_compressed(os.path.join(out_dir, STEM + ".fp16.npz"), **weights)
    if args.check:
        want = dict(np.load(args.check))
        diff = max(float(np.max(np.abs(weights[k].astype(np.float64) - want[k].astype(np.float64)), initial=0))
                   for k in want)
        same = want.keys() == weights.keys() and all(np.array_equal(weights[k], want[k]) for k in want)
        log("  %s: %s (largest weight difference %.3g)"
            % (args.check, "reproduced bit for bit" if same else "NOT reproduced", diff))
        return 0 if same else 1
    export_all(weights, out_dir, args.segstream, log)
    tm.write_manifest(out_dir, STEM, {"generator": "scripts/train_maskrcnn.py", "seed": SEED, "steps": STEPS,
                                      "batch": BATCH, "train_seeds": [TRAIN_SEEDS.start, TRAIN_SEEDS.stop],
                                      "frame_size": [WIDTH, HEIGHT]}, losses, t_train)
    log("  done in %.0fs" % (time.time() - t_all))
    return 0


if __name__ == "__main__":
    sys.exit(main())

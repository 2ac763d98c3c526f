#!/usr/bin/env python3
"""Export small test segmentation models covering the output conventions of users' exports.

All models have seeded random weights, calmed and calibrated with the helpers of
``scripts/export_models.py`` (low-pass structured kernels, BatchNorm recalibration on
synthetic images, standardised class logits), so their labels vary across the frame and
are stable. They are NOT trained models. No weights are downloaded.

Unless stated otherwise: input ``input`` float32 [N,3,H,W] (dynamic N, H, W; H and W
multiples of 16), RGB, x/255 then ImageNet mean/std; 19 (Cityscapes) classes.

* ``seg_fp16``: FP16 I/O: input ``input`` float16, output ``logits`` float16
  [N,19,H,W]. The graph computes in float32 inside (Cast in, Cast out) so it runs on
  ONNX Runtime's CPU provider.
* ``seg_two_outputs``: outputs ``out`` (the DeepLabV3+ logits) and ``aux`` (a second,
  separately seeded and calibrated head on the same decoder features), both float32
  [N,19,H,W]; their labels differ on most pixels.
* ``seg_reduced``: output ``logits`` float32 [N,19,H/4,W/4] (DeepLabV3+ without the
  final x4 upsampling, i.e. smp ``upsampling=1``).
* ``seg_probs``: output ``probabilities`` = softmax over classes, float32 [N,19,H,W].
* ``seg_labels``: output ``labels`` = argmax over classes, int64 [N,H,W].
* ``seg_fixed``: fixed input [1,3,256,512] (no dynamic axes), output ``logits``
  [1,19,256,512].
* ``seg_batch2``: fixed batch 2, dynamic H, W: input [2,3,H,W], output ``logits``
  [2,19,H,W].
* ``maskrcnn_raw``: a slim Mask R-CNN (export_models.py's MobileNetV3 variant, own seed,
  smaller calibration set) whose graph stops before mask pasting. Input ``image`` float32
  [3,H,W] RGB in 0..1 (resizing and normalization in the graph). Outputs ``boxes`` [N,4]
  (x1,y1,x2,y2 in input pixels), ``labels`` [N] int64, ``scores`` [N], ``masks``
  [N,1,28,28] (the mask probabilities of each detection's class, as torchvision's
  ``maskrcnn_inference`` leaves them) and ``masks_all`` [N,91,28,28] (every class's).

All the models share one calibrated network (smp DeepLabV3Plus, MobileNetV2 encoder,
like export_models.py's ``deeplabv3plus_mobilenet_v2`` but with its own seed and a smaller
calibration set), so they agree with each other up to their output convention (``out`` of
``seg_two_outputs`` is the same ``logits``).

Usage::

    python scripts/export_test_models.py --out ~/.cache/segstream/test-models   # export + check
    python scripts/export_test_models.py --out DIR --check-only                 # check existing files
    python scripts/export_test_models.py --out DIR --no-check                   # export only
"""
from __future__ import annotations

import argparse
import copy
import os
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from export_models import (  # noqa: E402
    OPSET,
    SEG_CLASSES,
    SEG_LOGIT_SCALE,
    begin_bn_recalibration,
    build_deeplab,
    calib_batches,
    calibrate_deeplab,
    end_bn_recalibration,
    model_seed,
    standardize_linear_,
    structure_kernels_,
    synthetic_image,
    to_normalized_chw,
    to_unit_chw,
)

CHECK_SEED = 424242
CHECK_SIZE = (128, 192)  # H, W of the check input (dynamic-shape models)
FIXED_SIZE = (256, 512)  # H, W of seg_fixed
EXPORT_SIZE = (128, 256)  # H, W of the example input used for tracing
# Calibration set (BatchNorm statistics, then head statistics): smaller than
# export_models.py's (32 + 12 images at 256x512) to keep the whole script well under 2 min
# on 2 cores.
CALIB_BN_IMAGES = 24
CALIB_HEAD_IMAGES = 8
CALIB_SIZE = (256, 512)
MIN_CLASSES = 4
MAX_CLASS_SHARE = 0.70
MIN_OUT_AUX_DIFF = 0.20

# stem -> (input dtype, fixed input shape or None, [(output name, dtype, shape spec)])
# shape spec: "N", "H", "W" are the input's batch/height/width; "H/4" a quarter.
STEMS = {
    "seg_fp16": ("float16", None, [("logits", "float16", ["N", SEG_CLASSES, "H", "W"])]),
    "seg_two_outputs": ("float32", None, [("out", "float32", ["N", SEG_CLASSES, "H", "W"]),
                                          ("aux", "float32", ["N", SEG_CLASSES, "H", "W"])]),
    "seg_reduced": ("float32", None, [("logits", "float32", ["N", SEG_CLASSES, "H/4", "W/4"])]),
    "seg_probs": ("float32", None, [("probabilities", "float32", ["N", SEG_CLASSES, "H", "W"])]),
    "seg_labels": ("float32", None, [("labels", "int64", ["N", "H", "W"])]),
    "seg_fixed": ("float32", [1, 3, *FIXED_SIZE], [("logits", "float32", [1, SEG_CLASSES, *FIXED_SIZE])]),
    "seg_batch2": ("float32", [2, 3, "H", "W"], [("logits", "float32", [2, SEG_CLASSES, "H", "W"])]),
    # Fully convolutional (no pooling, no global context), receptive-field radius 3 px: its
    # output at a pixel depends only on the 7x7 neighbourhood, so tiles must agree with the
    # whole image wherever a tile covers that neighbourhood.
    "seg_fcn": ("float32", None, [("logits", "float32", ["N", SEG_CLASSES, "H", "W"])]),
    # Mask R-CNN before paste (checked by check_raw_maskrcnn, not check_one).
    "maskrcnn_raw": ("float32", None, []),
}
RAW_CHECK_SIZE = (240, 320)  # H, W
RAW_MIN_DETECTIONS = 4  # with score > 0.05 on the check image


def fcn(seed: int = 4242):
    import torch
    from torch import nn

    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(3, 24, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(24, 24, 3, padding=2, dilation=2),
        nn.ReLU(),
        nn.Conv2d(24, SEG_CLASSES, 1),
    )
    with torch.no_grad():
        # Larger logits keep argmax ties (and float noise) from deciding labels.
        net[4].weight.mul_(8.0)
    return net.eval()


# ----------------------------------------------------------------------------
# wrappers (output conventions)
# ----------------------------------------------------------------------------
def _wrappers():
    import torch

    class Fp16IO(torch.nn.Module):
        """float16 in/out, float32 inside (Cast, net, Cast)."""

        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            return self.net(x.float()).half()

    class Softmax(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            return torch.softmax(self.net(x), dim=1)

    class Argmax(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            return torch.argmax(self.net(x), dim=1)  # int64 [N,H,W]

    class OutAux(torch.nn.Module):
        """smp DeepLabV3+ with a second (auxiliary) head: returns (out, aux)."""

        def __init__(self, net, aux_head):
            super().__init__()
            self.net = net
            self.aux_head = aux_head

        def forward(self, x):
            d = self.net.decoder(self.net.encoder(x))
            return self.net.segmentation_head(d), self.aux_head(d)

    return Fp16IO, Softmax, Argmax, OutAux


def _raw_maskrcnn_wrapper():
    import torch
    from torchvision.models.detection.transform import resize_boxes

    class RawMasks(torch.nn.Module):
        """torchvision Mask R-CNN up to (not including) paste_masks_in_image: boxes mapped
        back to the input image, masks left at 28x28."""

        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, image):
            m = self.model
            original = image.shape[-2:]
            images, _ = m.transform([image])
            feats = m.backbone(images.tensors)
            proposals, _ = m.rpn(images, feats)
            dets, _ = m.roi_heads(feats, proposals, images.image_sizes)
            d = dets[0]
            rh = m.roi_heads
            logits = rh.mask_predictor(rh.mask_head(rh.mask_roi_pool(feats, [d["boxes"]], images.image_sizes)))
            boxes = resize_boxes(d["boxes"], images.image_sizes[0], original)
            return boxes, d["labels"], d["scores"], d["masks"], logits.sigmoid()

    return RawMasks


def build_raw_maskrcnn(log):
    """export_models.py's slim MobileNetV3 Mask R-CNN with its own seed, calibrated on a
    smaller set, wrapped to stop before mask pasting."""
    from export_models import build_maskrcnn_mobilenet, calibrate_maskrcnn

    t0 = time.time()
    model = build_maskrcnn_mobilenet(model_seed("test_maskrcnn_raw"))
    log("  built in %.1fs" % (time.time() - t0))
    calibrate_maskrcnn(model, log, n_bn=8, n_head=6)
    return _raw_maskrcnn_wrapper()(model).eval()


def export_raw_maskrcnn(path: str, log):
    import onnx
    import torch

    model = build_raw_maskrcnn(log)
    dummy = torch.from_numpy(to_unit_chw(synthetic_image(320, 480, 2)))
    tmp = path + ".tmp"
    det = {0: "detections"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (dummy,), tmp,
            dynamo=False,
            opset_version=OPSET,
            do_constant_folding=True,
            input_names=["image"],
            output_names=["boxes", "labels", "scores", "masks", "masks_all"],
            dynamic_axes={"image": {1: "height", 2: "width"}, "boxes": det, "labels": det,
                          "scores": det, "masks": det, "masks_all": det},
        )
    onnx.checker.check_model(tmp, full_check=True)
    os.replace(tmp, path)


def check_raw_maskrcnn(path: str) -> dict:
    sess = _session(path)
    assert [i.name for i in sess.get_inputs()] == ["image"], sess.get_inputs()
    names = [o.name for o in sess.get_outputs()]
    assert names == ["boxes", "labels", "scores", "masks", "masks_all"], names
    h, w = RAW_CHECK_SIZE
    img = synthetic_image(h, w, CHECK_SEED)
    t0 = time.time()
    boxes, labels, scores, masks, masks_all = sess.run(None, {"image": to_unit_chw(img)})
    dt = time.time() - t0
    n = len(scores)
    assert boxes.shape == (n, 4) and labels.shape == (n,) and labels.dtype == np.int64
    assert masks.shape == (n, 1, 28, 28) and masks_all.shape == (n, 91, 28, 28), (masks.shape, masks_all.shape)
    assert np.allclose(masks[:, 0], masks_all[np.arange(n), labels], atol=1e-6), "masks != masks_all[label]"
    confident = int((scores > 0.05).sum())
    assert confident >= RAW_MIN_DETECTIONS, "only %d detections with score > 0.05" % confident
    fg = (masks > 0.5).mean(axis=(1, 2, 3))
    assert ((fg > 0.05) & (fg < 0.95)).sum() >= 2, "masks are all empty or all full: %s" % fg
    return {"stem": "maskrcnn_raw", "seconds": dt, "input": "3x%dx%d float32" % (h, w),
            "outputs": "%d detections, scores %.3f..%.3f" % (n, scores.min(), scores.max()),
            "labels": "classes %s; mask fg %s" % (sorted(set(labels.tolist())),
                                                  " ".join("%.2f" % v for v in fg))}


# ----------------------------------------------------------------------------
# models
# ----------------------------------------------------------------------------
def build_base_deeplab(log):
    """smp DeepLabV3+ (MobileNetV2) built and calibrated with export_models.py's functions
    (structured kernels, low-level gain, BN recalibration, head standardisation), on a
    smaller calibration set."""
    t0 = time.time()
    model = build_deeplab("mobilenet_v2", model_seed("seg_test_deeplabv3plus"))
    log("  built in %.1fs" % (time.time() - t0))
    calibrate_deeplab(model, log, n_bn=CALIB_BN_IMAGES, n_head=CALIB_HEAD_IMAGES, size=CALIB_SIZE)
    return model


def add_aux_head(base, log, n_images: int = CALIB_HEAD_IMAGES, batch: int = 4, size=CALIB_SIZE):
    """A second segmentation head for ``base`` (smp DeepLabV3+): same structure as its
    segmentation head (1x1 conv + x4 bilinear upsampling) on the same decoder features,
    with its own seeded weights, calibrated like the main head (every class logit zero mean,
    std SEG_LOGIT_SCALE on synthetic images). Returns the head."""
    import torch

    aux = copy.deepcopy(base.segmentation_head)
    conv = aux[0]
    assert isinstance(conv, torch.nn.Conv2d) and conv.out_channels == SEG_CLASSES, conv
    torch.manual_seed(model_seed("seg_test_aux_head"))
    conv.reset_parameters()
    aux.eval()
    t0 = time.time()
    h, w = size
    s1 = torch.zeros(SEG_CLASSES, dtype=torch.float64)
    s2 = torch.zeros(SEG_CLASSES, dtype=torch.float64)
    n = 0
    with torch.no_grad():
        for imgs in calib_batches(n_images, batch, h, w, seed0=30_000):
            x = torch.from_numpy(np.stack([to_normalized_chw(im) for im in imgs]))
            y = aux(base.decoder(base.encoder(x))).double()
            s1 += y.sum(dim=(0, 2, 3))
            s2 += (y * y).sum(dim=(0, 2, 3))
            n += y.shape[0] * y.shape[2] * y.shape[3]
    mean = s1 / n
    std = (s2 / n - mean * mean).clamp_min(1e-12).sqrt()
    standardize_linear_(conv.weight, conv.bias, mean.float(), std.float(), SEG_LOGIT_SCALE)
    log("  aux head calibration: %d images %dx%d, %.1fs" % (n_images, h, w, time.time() - t0))
    return aux


def reduced_of(base):
    """``base`` without the final x4 upsampling: logits at a quarter of the input
    resolution, the same as building smp DeepLabV3Plus(..., upsampling=1)."""
    import torch

    reduced = copy.deepcopy(base)
    reduced.segmentation_head[1] = torch.nn.Identity()
    return reduced.eval()


def export(model, path: str, example, input_names, output_names, dynamic_axes):
    """torch.onnx.export (legacy TorchScript exporter, as export_models.py) + onnx.checker."""
    import onnx
    import torch

    tmp = path + ".tmp"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (example,), tmp,
            dynamo=False,
            opset_version=OPSET,
            do_constant_folding=True,
            input_names=input_names,
            output_names=output_names,
            dynamic_axes=dynamic_axes,
        )
    onnx.checker.check_model(tmp, full_check=True)
    os.replace(tmp, path)


def export_all(out_dir: str, stems, log) -> dict:
    import torch

    Fp16IO, Softmax, Argmax, OutAux = _wrappers()
    times = {}
    eh, ew = EXPORT_SIZE
    x1 = torch.from_numpy(to_normalized_chw(synthetic_image(eh, ew, 1))).unsqueeze(0)
    x2 = torch.from_numpy(np.stack([to_normalized_chw(synthetic_image(eh, ew, 1 + i)) for i in range(2)]))
    nhw = {0: "batch", 2: "height", 3: "width"}

    def dyn(outs, label_out=False):
        d = {"input": nhw}
        for o in outs:
            d[o] = {0: "batch", 1: "height", 2: "width"} if label_out else nhw
        return d

    base = None
    if any(s.startswith("seg_") for s in stems):
        log("[build] DeepLabV3+ MobileNetV2 (shared by all the seg_ models)")
        t0 = time.time()
        base = build_base_deeplab(log)
        times["base_deeplab"] = time.time() - t0
    jobs = {
        "seg_fp16": lambda p: export(Fp16IO(base).eval(), p, x1.half(), ["input"], ["logits"], dyn(["logits"])),
        "seg_two_outputs": lambda p: export(OutAux(base, add_aux_head(base, log)).eval(), p, x1, ["input"],
                                            ["out", "aux"], dyn(["out", "aux"])),
        "seg_reduced": lambda p: export(reduced_of(base), p, x1, ["input"], ["logits"],
                                        {"input": nhw, "logits": {0: "batch", 2: "height_4", 3: "width_4"}}),
        "seg_probs": lambda p: export(Softmax(base).eval(), p, x1, ["input"], ["probabilities"],
                                      dyn(["probabilities"])),
        "seg_labels": lambda p: export(Argmax(base).eval(), p, x1, ["input"], ["labels"],
                                       dyn(["labels"], label_out=True)),
        "seg_fixed": lambda p: export(
            base, p, torch.from_numpy(to_normalized_chw(synthetic_image(*FIXED_SIZE, 1))).unsqueeze(0),
            ["input"], ["logits"], None),
        "seg_fcn": lambda p: export(fcn(), p, x1, ["input"], ["logits"], dyn(["logits"])),
        "seg_batch2": lambda p: export(base, p, x2, ["input"], ["logits"],
                                       {"input": {2: "height", 3: "width"}, "logits": {2: "height", 3: "width"}}),
        "maskrcnn_raw": lambda p: export_raw_maskrcnn(p, log),
    }
    for stem in [s for s in STEMS if s in stems]:
        t0 = time.time()
        path = os.path.join(out_dir, stem + ".onnx")
        jobs[stem](path)
        times[stem] = time.time() - t0
        log("[export] %s (%.1f MB) in %.1fs" % (path, os.path.getsize(path) / 1e6, times[stem]))
    return times


# ----------------------------------------------------------------------------
# checks (onnxruntime, CPU)
# ----------------------------------------------------------------------------
ORT_TYPES = {"float32": "tensor(float)", "float16": "tensor(float16)", "int64": "tensor(int64)"}


def _session(path: str):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = max(1, min(4, os.cpu_count() or 1))
    so.log_severity_level = 3
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def _label_stats(labels: np.ndarray):
    counts = np.bincount(labels.ravel().astype(np.int64), minlength=SEG_CLASSES)
    return int((counts > 0).sum()), float(counts.max() / counts.sum())


def _declared(shape):
    return [d if isinstance(d, int) else "?" for d in shape]


def check_one(stem: str, path: str) -> dict:
    in_dtype, fixed, outs = STEMS[stem]
    sess = _session(path)
    # declared I/O
    ins = sess.get_inputs()
    assert [i.name for i in ins] == ["input"], [i.name for i in ins]
    assert ins[0].type == ORT_TYPES[in_dtype], ins[0].type
    want_in = fixed or ["?", 3, "?", "?"]
    assert _declared(ins[0].shape) == _declared(want_in), ins[0].shape
    got_outs = sess.get_outputs()
    assert [o.name for o in got_outs] == [o[0] for o in outs], [o.name for o in got_outs]
    for o, (name, dt, shape) in zip(got_outs, outs):
        assert o.type == ORT_TYPES[dt], (name, o.type)
        assert len(o.shape) == len(shape), (name, o.shape)
        for d, s in zip(o.shape, shape):
            assert (d == s) if isinstance(s, int) else not isinstance(d, int), (name, o.shape, shape)

    # run on a synthetic image-like input
    h, w = FIXED_SIZE if fixed and isinstance(fixed[2], int) else CHECK_SIZE
    n = fixed[0] if fixed else 1
    x = np.stack([to_normalized_chw(synthetic_image(h, w, CHECK_SEED + i)) for i in range(n)])
    x = x.astype(np.float16 if in_dtype == "float16" else np.float32)
    t0 = time.time()
    ys = sess.run(None, {"input": x})
    dt = time.time() - t0
    env = {"N": n, "H": h, "W": w, "H/4": h // 4, "W/4": w // 4}
    labels = {}
    for y, (name, dtype, shape) in zip(ys, outs):
        want = tuple(env[s] if isinstance(s, str) else s for s in shape)
        assert y.shape == want, (name, y.shape, want)
        assert y.dtype == np.dtype(dtype), (name, y.dtype)
        if dtype.startswith("float"):
            assert np.isfinite(y).all(), name
        if name == "probabilities":
            assert np.allclose(y.sum(axis=1), 1.0, atol=1e-4), "probabilities do not sum to 1"
        labels[name] = y[0] if dtype == "int64" else y[0].astype(np.float32).argmax(0)
    row = {"stem": stem, "seconds": dt, "input": "x".join(map(str, x.shape)) + " " + in_dtype,
           "outputs": ", ".join("%s %s %s" % (nm, "x".join(map(str, y.shape)), y.dtype) for y, (nm, _, _) in zip(ys, outs))}
    per = []
    for name, lab in labels.items():
        present, share = _label_stats(lab)
        per.append("%s: %d cls, max %.0f%%" % (name, present, 100 * share))
        assert present >= MIN_CLASSES, "%s: only %d classes present" % (name, present)
        assert share < MAX_CLASS_SHARE, "%s: one class covers %.1f%%" % (name, 100 * share)
    if n > 1:  # batch items are independent
        assert not np.array_equal(ys[0][0], ys[0][1]), "batch items identical"
    if stem == "seg_two_outputs":
        diff = float((labels["out"] != labels["aux"]).mean())
        per.append("out/aux differ %.0f%%" % (100 * diff))
        assert diff > MIN_OUT_AUX_DIFF, "out/aux argmax differ on only %.1f%%" % (100 * diff)
    row["labels"] = "; ".join(per)
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output directory, e.g. ~/.cache/segstream/test-models")
    ap.add_argument("--only", nargs="+", metavar="STEM", choices=list(STEMS), help="export/check only these")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--check", dest="check", action="store_true", default=True,
                   help="run the onnxruntime check after export (default)")
    g.add_argument("--no-check", dest="check", action="store_false", help="skip the check")
    g.add_argument("--check-only", action="store_true", help="only check the existing files in --out")
    args = ap.parse_args(argv)

    out_dir = os.path.abspath(os.path.expanduser(args.out))
    os.makedirs(out_dir, exist_ok=True)
    stems = args.only or list(STEMS)

    def log(msg):
        print(msg, flush=True)

    t_start = time.time()
    if not args.check_only:
        import torch

        torch.set_num_threads(max(1, os.cpu_count() or 1))
        log("torch %s, opset %d, %d threads, out %s" % (torch.__version__, OPSET, torch.get_num_threads(), out_dir))
        export_all(out_dir, stems, log)
        log("export total %.1fs" % (time.time() - t_start))
    failures = []
    if args.check or args.check_only:
        t0 = time.time()
        rows = []
        for stem in stems:
            path = os.path.join(out_dir, stem + ".onnx")
            if not os.path.exists(path):
                failures.append("%s: missing" % stem)
                rows.append({"stem": stem, "status": "MISSING"})
                continue
            try:
                row = check_raw_maskrcnn(path) if stem == "maskrcnn_raw" else check_one(stem, path)
                row["status"] = "ok"
            except AssertionError as e:
                row = {"stem": stem, "status": "FAIL: %s" % e}
                failures.append("%s: %s" % (stem, e))
            rows.append(row)
        log("")
        log("%-16s %-6s %-20s %-6s %-48s %s" % ("model", "status", "input", "ms", "outputs", "labels"))
        for r in rows:
            if r["status"] != "ok":
                log("%-16s %s" % (r["stem"], r["status"]))
                continue
            log("%-16s %-6s %-20s %-6.0f %-48s %s" % (r["stem"], r["status"], r["input"], 1000 * r["seconds"],
                                                     r["outputs"], r["labels"]))
        log("check %.1fs" % (time.time() - t0))
    log("total %.1fs" % (time.time() - t_start))
    if failures:
        log("FAILED: " + "; ".join(failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Export the segstream ONNX models with seeded random (but calibrated) weights.

No pretrained weights are downloaded: every model is built with
``weights=None`` under a fixed ``torch.manual_seed`` and then calibrated so its
output behaves like a real model's (labels vary across the frame and follow
image content instead of collapsing to one class):

0. Structured random kernels: every spatial (kxk, k>1) conv kernel keeps its
   per-(out,in) spatial mean but only KERNEL_ALPHA of its zero-mean part, i.e.
   random kernels become mostly low-pass (non-overlapping transposed convs
   become exact nearest-neighbour upsamplers). Fully random kernels make the
   calibrated networks chaotic (+-1 LSB input noise flips ~70-80% of the
   labels); low-pass kernels keep them stable and make labels follow
   colour regions / shapes. DeepLabV3+ additionally gets its stride-4 skip
   features weighted up (DEEPLAB_LOWLEVEL_GAIN) so label boundaries follow
   image edges instead of the coarse stride-16 context.
1. BatchNorm recalibration: every BatchNorm layer's running statistics are
   reset and re-estimated (cumulative average, ``momentum=None``) on
   synthetic image-like inputs (:func:`synthetic_image`), normalised exactly
   as the model expects. For DeepLabV3+ the BN shifts are set to BN_BETA
   first, which keeps most ReLUs in their linear range (robust to small
   colour shifts, e.g. from video compression or colour conversion); Mask
   R-CNN keeps beta = 0.
2. Head calibration.
   DeepLabV3+: the segmentation head conv is affinely rescaled so every class
   logit has zero mean and std SEG_LOGIT_SCALE on the calibration set (classes
   balanced, large logit gaps).
   Mask R-CNN: the ROI head biases are zeroed and the class / mask logit
   layers are rebuilt so their decisions depend on the direction of the ROI
   features, not their magnitude (which varies a lot between images in a
   random network), see :func:`_ratio_head_`. Only a few street-scene COCO
   classes can win (DET_ACTIVE_CLASSES), about half of the calibration
   proposals are background, and at most DET_MAX_DETECTIONS detections are
   returned per image (the highest-scoring ones after per-class NMS).

Models (file stems, selectable with ``--only``):

* ``deeplabv3plus_mobilenet_v2`` / ``deeplabv3plus_resnet50``: smp
  DeepLabV3Plus, 19 classes. input ``input`` float32 [N,3,H,W] (RGB, x/255,
  ImageNet mean/std), H and W divisible by 16; output ``logits`` float32
  [N,19,H,W].
* ``maskrcnn_resnet50_fpn``: torchvision maskrcnn_resnet50_fpn, 91 COCO label
  indices (box_detections_per_img = 10).
* ``maskrcnn_mobilenet_v3``: torchvision Mask R-CNN on a MobileNetV3-Large FPN
  backbone (min_size 320, max_size 512, slim heads, 150 proposals), small and
  fast for CPU tests.
  Mask R-CNN input ``image`` float32 [3,H,W] RGB in 0..1 (normalisation and
  resizing are inside the graph); outputs ``boxes`` [N,4] (x1,y1,x2,y2 in
  input pixels), ``labels`` [N] int64, ``scores`` [N], ``masks`` [N,1,H,W]
  (probabilities 0..1, pasted at input resolution; threshold at 0.5).

Usage::

    python scripts/export_models.py --out ~/.cache/segstream/models            # export all + check
    python scripts/export_models.py --out DIR --only maskrcnn_mobilenet_v3      # subset
    python scripts/export_models.py --out DIR --check                           # check only

A ``manifest.json`` describing the files is written next to the models.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import math
import os
import sys
import time
import warnings

import numpy as np
from PIL import Image, ImageDraw

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SEG_CLASSES = 19
COCO_CLASSES = 91
OPSET = 17
BASE_SEED = 20240607
CHECK_SEED = 987654321

# Cityscapes train-id names, for the manifest (index == class id).
CITYSCAPES_NAMES = [
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light",
    "traffic sign", "vegetation", "terrain", "sky", "person", "rider", "car",
    "truck", "bus", "train", "motorcycle", "bicycle",
]


# ----------------------------------------------------------------------------
# synthetic image-like inputs
# ----------------------------------------------------------------------------
def synthetic_image(h: int, w: int, seed: int) -> np.ndarray:
    """Return an image-like ``uint8`` array of shape (h, w, 3), RGB.

    A smooth low-frequency colour field (random coarse grids upsampled
    bicubically, a linear gradient and soft blobs) overlaid with sharp-edged
    solid-colour shapes (rectangles, ellipses, polygons, a few striped /
    textured ones) and mild pixel noise. Deterministic for a given seed.
    """
    rng = np.random.default_rng(seed)
    field = np.zeros((h, w, 3), np.float32)
    # coarse random grids, bicubically upsampled (smooth colour variation)
    for gh, gw, amp in ((2, 3, 1.0), (4, 6, 0.6), (8, 12, 0.3)):
        grid = rng.uniform(0.0, 255.0, (gh, gw, 3)).astype(np.uint8)
        up = np.asarray(Image.fromarray(grid, "RGB").resize((w, h), Image.BICUBIC), np.float32)
        field += amp * (up - 128.0)
    field = field / 1.9 + 128.0
    # linear gradient in a random direction
    ang = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    g = (np.cos(ang) * xx / max(w, 1) + np.sin(ang) * yy / max(h, 1))
    field += (g[..., None] - 0.5) * rng.uniform(-120, 120, 3).astype(np.float32)
    # soft gaussian blobs
    for _ in range(int(rng.integers(1, 4))):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        s = rng.uniform(0.08, 0.3) * max(h, w)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
        field += blob[..., None] * rng.uniform(-100, 100, 3).astype(np.float32)
    img = Image.fromarray(np.clip(field, 0, 255).astype(np.uint8), "RGB")
    d = ImageDraw.Draw(img)

    def colour():
        kind = rng.random()
        if kind < 0.2:  # grey-ish
            v = int(rng.integers(0, 256))
            return tuple(int(np.clip(v + rng.integers(-12, 13), 0, 255)) for _ in range(3))
        if kind < 0.6:  # saturated
            c = rng.uniform(0, 255, 3)
            c[int(rng.integers(3))] = rng.uniform(0, 40)
            c[int(rng.integers(3))] = rng.uniform(200, 255)
            return tuple(int(v) for v in c)
        return tuple(int(v) for v in rng.integers(0, 256, 3))

    n_shapes = int(rng.integers(6, 18))
    for _ in range(n_shapes):
        kind = rng.random()
        sz = rng.uniform(0.04, 0.45)
        bw, bh = sz * w * rng.uniform(0.5, 1.5), sz * h * rng.uniform(0.5, 1.5)
        x0, y0 = rng.uniform(-0.1 * w, w), rng.uniform(-0.1 * h, h)
        box = [x0, y0, x0 + bw, y0 + bh]
        col = colour()
        if kind < 0.35:
            d.rectangle(box, fill=col)
        elif kind < 0.6:
            d.ellipse(box, fill=col)
        elif kind < 0.85:
            nv = int(rng.integers(3, 7))
            cx, cy = x0 + bw / 2, y0 + bh / 2
            angs = np.sort(rng.uniform(0, 2 * math.pi, nv))
            pts = [(cx + bw / 2 * math.cos(a) * rng.uniform(0.5, 1.0),
                    cy + bh / 2 * math.sin(a) * rng.uniform(0.5, 1.0)) for a in angs]
            d.polygon(pts, fill=col)
        else:
            # striped rectangle (texture / high frequency content)
            col2 = colour()
            d.rectangle(box, fill=col)
            period = max(2.0, rng.uniform(3, 14))
            if rng.random() < 0.5:
                x = x0
                while x < x0 + bw:
                    d.rectangle([x, y0, x + period / 2, y0 + bh], fill=col2)
                    x += period
            else:
                y = y0
                while y < y0 + bh:
                    d.rectangle([x0, y, x0 + bw, y + period / 2], fill=col2)
                    y += period
    # a few thin lines (poles / wires)
    for _ in range(int(rng.integers(0, 4))):
        p = [(rng.uniform(0, w), rng.uniform(0, h)), (rng.uniform(0, w), rng.uniform(0, h))]
        d.line(p, fill=colour(), width=int(rng.integers(1, 6)))
    out = np.asarray(img, np.float32)
    out += rng.normal(0.0, rng.uniform(0.0, 6.0), out.shape).astype(np.float32)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def to_normalized_chw(img: np.ndarray) -> np.ndarray:
    """uint8 HxWx3 RGB -> float32 3xHxW, x/255 then ImageNet mean/std."""
    x = img.astype(np.float32) / 255.0
    x = (x - np.array(IMAGENET_MEAN, np.float32)) / np.array(IMAGENET_STD, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def to_unit_chw(img: np.ndarray) -> np.ndarray:
    """uint8 HxWx3 RGB -> float32 3xHxW in 0..1."""
    return np.ascontiguousarray((img.astype(np.float32) / 255.0).transpose(2, 0, 1))


# ----------------------------------------------------------------------------
# calibration helpers
# ----------------------------------------------------------------------------
def _bn_modules(model):
    import torch.nn as nn

    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


BN_BETA = 2.0


def begin_bn_recalibration(model, beta: float = BN_BETA):
    """eval() everything, then reset every BatchNorm and put it in train mode
    with a cumulative moving average (momentum=None). The BN shift (beta) is
    set to ``beta`` (weight stays 1): the normalised activations then sit
    mostly in the linear part of the following ReLU, which keeps the random
    network from being chaotic in colour space (with beta = 0 a +2/255
    brightness change flips about half of the DeepLab labels, with beta = 2
    about 3%)."""
    import torch

    model.eval()
    bns = _bn_modules(model)
    with torch.no_grad():
        for m in bns:
            m.reset_running_stats()
            m.momentum = None
            if m.affine:
                m.weight.fill_(1.0)
                m.bias.fill_(beta)
            m.train()
    return bns


def end_bn_recalibration(model, bns):
    for m in bns:
        m.momentum = 0.1
    model.eval()


def calib_batches(n_images: int, batch: int, h: int, w: int, seed0: int):
    """Yield lists of uint8 images, n_images in total."""
    i = 0
    while i < n_images:
        k = min(batch, n_images - i)
        yield [synthetic_image(h, w, seed0 + i + j) for j in range(k)]
        i += k


KERNEL_ALPHA = 0.2


def structure_kernels_(model, alpha: float = KERNEL_ALPHA, exclude=()) -> int:
    """In place: w <- mean_xy(w) + alpha * (w - mean_xy(w)) for every Conv2d /
    ConvTranspose2d with a spatial kernel (kh > 1 and kw > 1), except inside
    the modules in ``exclude``. Returns the number of convs changed."""
    import torch

    skip = {id(m) for e in exclude for m in e.modules()}
    n = 0
    with torch.no_grad():
        for m in model.modules():
            if id(m) in skip:
                continue
            if type(m) in (torch.nn.Conv2d, torch.nn.ConvTranspose2d) and m.kernel_size[0] > 1 and m.kernel_size[1] > 1:
                mean = m.weight.mean(dim=(2, 3), keepdim=True)
                # non-overlapping transposed convs (stride == kernel, e.g. the
                # Mask R-CNN 2x2/2 upsampler) would print a checkerboard: make
                # them exact nearest-neighbour upsamplers
                a = 0.0 if type(m) is torch.nn.ConvTranspose2d and tuple(m.stride) == tuple(m.kernel_size) else alpha
                m.weight.copy_(mean + a * (m.weight - mean))
                n += 1
    return n


def standardize_linear_(weight, bias, mean, std, scale: float):
    """In place: y' = scale * (y - mean) / std per output channel, for a conv /
    linear layer y = W x + b (output channel = dim 0 of W)."""
    import torch

    with torch.no_grad():
        f = (scale / std.clamp_min(1e-6)).to(weight.dtype)
        weight.mul_(f.view(-1, *([1] * (weight.dim() - 1))))
        bias.copy_((bias - mean) * f)


# ----------------------------------------------------------------------------
# DeepLabV3+
# ----------------------------------------------------------------------------
SEG_LOGIT_SCALE = 8.0  # std of every class logit after head calibration
DEEPLAB_LOWLEVEL_GAIN = 10.0  # weight of the 48 stride-4 skip channels in decoder.block2


def build_deeplab(encoder: str, seed: int):
    import torch
    import segmentation_models_pytorch as smp

    torch.manual_seed(seed)
    model = smp.DeepLabV3Plus(encoder_name=encoder, encoder_weights=None, classes=SEG_CLASSES)
    model.eval()
    structure_kernels_(model)
    # decoder.block2 = SeparableConv2d(256 ASPP + 48 skip -> 256) + BN + ReLU;
    # the concat order is [aspp, skip]: scale the pointwise weights of the skip part
    pw = model.decoder.block2[0][1]
    assert isinstance(pw, torch.nn.Conv2d) and pw.in_channels == 256 + 48, pw
    with torch.no_grad():
        pw.weight[:, 256:] *= DEEPLAB_LOWLEVEL_GAIN
    return model


def calibrate_deeplab(model, log, n_bn: int = 32, n_head: int = 12, batch: int = 4, size=(256, 512)):
    import torch

    t0 = time.time()
    h, w = size
    bns = begin_bn_recalibration(model)
    with torch.no_grad():
        for imgs in calib_batches(n_bn, batch, h, w, seed0=10_000):
            x = torch.from_numpy(np.stack([to_normalized_chw(im) for im in imgs]))
            model(x)
    end_bn_recalibration(model, bns)
    log("  BN recalibration: %d layers, %d images %dx%d, %.1fs" % (len(bns), n_bn, h, w, time.time() - t0))

    # head calibration: per-class logit statistics on fresh images
    t0 = time.time()
    conv = model.segmentation_head[0]
    s1 = torch.zeros(SEG_CLASSES, dtype=torch.float64)
    s2 = torch.zeros(SEG_CLASSES, dtype=torch.float64)
    n = 0
    with torch.no_grad():
        for imgs in calib_batches(n_head, batch, h, w, seed0=20_000):
            x = torch.from_numpy(np.stack([to_normalized_chw(im) for im in imgs]))
            y = model(x).double()  # [B,C,H,W]
            s1 += y.sum(dim=(0, 2, 3))
            s2 += (y * y).sum(dim=(0, 2, 3))
            n += y.shape[0] * y.shape[2] * y.shape[3]
    mean = s1 / n
    std = (s2 / n - mean * mean).clamp_min(1e-12).sqrt()
    standardize_linear_(conv.weight, conv.bias, mean.float(), std.float(), SEG_LOGIT_SCALE)
    log("  head calibration: logit std before %.4g..%.4g -> %.1f, %.1fs"
        % (std.min().item(), std.max().item(), SEG_LOGIT_SCALE, time.time() - t0))


def export_deeplab(model, path: str):
    import torch

    dummy = torch.from_numpy(to_normalized_chw(synthetic_image(256, 512, 1))).unsqueeze(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (dummy,), path,
            dynamo=False,
            opset_version=OPSET,
            do_constant_folding=True,
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch", 2: "height", 3: "width"},
                          "logits": {0: "batch", 2: "height", 3: "width"}},
        )


# ----------------------------------------------------------------------------
# Mask R-CNN
# ----------------------------------------------------------------------------
DET_LOGIT_SCALE = 4.0  # logit units per unit of the normalised class score (confidence)
MASK_LOGIT_SCALE = 30.0  # same for the mask logits (large: masks are near-binary)
MASK_SHIFT = 0.25  # content masks: pixel is foreground iff r > -shift (~60% of the box)
DET_BG_QUANTILE = 0.5  # about half of the calibration proposals lose to the background
DET_MAX_DETECTIONS = 10  # box_detections_per_img (torchvision default: 100)
# Only street-scene COCO classes can win (torchvision 91-index label space):
# person, bicycle, car, motorcycle, bus, truck, traffic light, stop sign.
DET_ACTIVE_CLASSES = {1, 2, 3, 4, 6, 8, 10, 13}


def build_maskrcnn_resnet50(seed: int):
    import torch
    from torchvision.models.detection import maskrcnn_resnet50_fpn

    torch.manual_seed(seed)
    model = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=COCO_CLASSES,
                                  box_detections_per_img=DET_MAX_DETECTIONS)
    model.eval()
    structure_kernels_(model)
    return model


def build_maskrcnn_mobilenet(seed: int):
    import torch
    from torchvision.models.detection import MaskRCNN
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.backbone_utils import mobilenet_backbone

    torch.manual_seed(seed)
    backbone = mobilenet_backbone(backbone_name="mobilenet_v3_large", weights=None, fpn=True,
                                  trainable_layers=6, norm_layer=torch.nn.BatchNorm2d)
    # the MobileNet FPN has 3 levels ("0", "1", "pool"): one anchor set per level
    anchor_sizes = ((32, 64, 128, 256, 512),) * 3
    aspect_ratios = ((0.5, 1.0, 2.0),) * len(anchor_sizes)
    # slim heads (torchvision defaults: 1024-d box MLP, 4x256 mask convs)
    # keep the file small: ~9M parameters instead of ~22M
    box_head = TwoMLPHead(backbone.out_channels * 7 * 7, 256)
    mask_head = MaskRCNNHeads(backbone.out_channels, (128, 128, 128, 128), 1)
    model = MaskRCNN(
        backbone, num_classes=None,
        box_head=box_head, box_predictor=FastRCNNPredictor(256, COCO_CLASSES),
        mask_head=mask_head, mask_predictor=MaskRCNNPredictor(128, 128, COCO_CLASSES),
        min_size=320, max_size=512,
        rpn_anchor_generator=AnchorGenerator(anchor_sizes, aspect_ratios),
        rpn_pre_nms_top_n_test=300, rpn_post_nms_top_n_test=150,
        box_detections_per_img=DET_MAX_DETECTIONS,
    )
    model.eval()
    structure_kernels_(model)
    return model


def _maskrcnn_head_inputs(model, imgs):
    """Run transform + backbone + RPN (eval); return (features, proposals, image_sizes)."""
    import torch

    x = [torch.from_numpy(to_unit_chw(im)) for im in imgs]
    images, _ = model.transform(x)
    feats = model.backbone(images.tensors)
    proposals, _ = model.rpn(images, feats)
    return feats, proposals, images.image_sizes


def _ratio_head_(layer, feats, scale: float, active=None, bg_quantile=None, shift: float = 0.0):
    """Calibrate a classifier ``layer`` (Linear / 1x1 Conv2d, bias set to 0)
    acting on non-negative features ``feats`` [N, D] so that its decisions do
    not depend on the overall feature magnitude (which varies a lot from image
    to image in a random network):

    * u = mean feature direction; every row loses its u component and is
      divided by the std of its ratio r_c = w_c.f / (u.f), so r_c ~ N(0, 1);
      then ``shift`` * u is added (r_c -> r_c + shift);
    * rows not in ``active`` (if given; row 0 excluded) become -20 * u, i.e.
      those classes never win;
    * if ``bg_quantile`` is given, row 0 (background) becomes beta * u with
      beta = that quantile of max_{c active} r_c on the calibration features;
    * everything is multiplied by ``scale / median(u . f)``.

    Returns (beta, median(u.f))."""
    import torch

    with torch.no_grad():
        f = feats.double()
        w = layer.weight.detach().double().reshape(layer.weight.shape[0], -1)
        u = f.mean(0)
        u = u / u.norm().clamp_min(1e-12)
        uf = f @ u
        keep = uf > 1e-6 * uf.max().clamp_min(1e-30)
        f, uf = f[keep], uf[keep]
        w = w - (w @ u)[:, None] * u[None, :]
        r = (f @ w.T) / uf[:, None]
        w = w / r.std(0).clamp_min(1e-12)[:, None] + shift * u[None, :]
        rows = list(range(1, w.shape[0])) if active is None else sorted(active)
        if active is not None:
            for c in range(1, w.shape[0]):
                if c not in active:
                    w[c] = -20.0 * u
        beta = None
        if bg_quantile is not None:
            r = (f @ w[rows].T) / uf[:, None]
            beta = float(torch.quantile(r.max(1).values, bg_quantile))
            w[0] = beta * u
        m = float(uf.median())
        w = w * (scale / m)
        layer.weight.copy_(w.reshape(layer.weight.shape).to(layer.weight.dtype))
        if layer.bias is not None:
            layer.bias.zero_()
    return beta, m


def calibrate_maskrcnn(model, log, n_bn: int = 16, n_head: int = 8, batch: int = 2, size=(256, 384)):
    import torch

    h, w = size
    t0 = time.time()
    # beta = 0 here: the direction-based head calibration below needs the
    # sparse (ReLU-clipped) ROI features of an unshifted network; with a
    # positive shift one class and empty masks win everywhere
    bns = begin_bn_recalibration(model, beta=0.0)
    with torch.no_grad():
        for imgs in calib_batches(n_bn, batch, h, w, seed0=30_000):
            x = [torch.from_numpy(to_unit_chw(im)) for im in imgs]
            images, _ = model.transform(x)  # normalisation + resize exactly as in the graph
            model.backbone.body(images.tensors)
    end_bn_recalibration(model, bns)
    log("  BN recalibration: %d layers, %d images %dx%d, %.1fs" % (len(bns), n_bn, h, w, time.time() - t0))

    # Make the heads homogeneous (zero biases) so their decisions depend on the
    # direction of the ROI features rather than on per-image contrast.
    rh = model.roi_heads
    with torch.no_grad():
        for m in list(rh.box_head.modules()) + list(rh.mask_head.modules()) + list(rh.mask_predictor.modules()):
            if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d, torch.nn.ConvTranspose2d)) and m.bias is not None:
                m.bias.zero_()

    t0 = time.time()
    box_feats, mask_feats = [], []
    n_props = 0
    with torch.no_grad():
        for imgs in calib_batches(n_head, batch, h, w, seed0=40_000):
            feats, proposals, sizes = _maskrcnn_head_inputs(model, imgs)
            n_props += sum(len(p) for p in proposals)
            box_feats.append(rh.box_head(rh.box_roi_pool(feats, proposals, sizes)))
            mp = [p[:32] for p in proposals]
            mf = rh.mask_predictor.relu(rh.mask_predictor.conv5_mask(rh.mask_head(rh.mask_roi_pool(feats, mp, sizes))))
            mask_feats.append(mf)
    beta, m = _ratio_head_(rh.box_predictor.cls_score, torch.cat(box_feats), DET_LOGIT_SCALE,
                           active=DET_ACTIVE_CLASSES, bg_quantile=DET_BG_QUANTILE)
    log("  class head: %d proposals, active classes %s, background quantile %.2f (beta %.2f), feature scale %.3g"
        % (n_props, sorted(DET_ACTIVE_CLASSES), DET_BG_QUANTILE, beta, m))
    mf = torch.cat(mask_feats)
    _, mm = _ratio_head_(rh.mask_predictor.mask_fcn_logits, mf.permute(0, 2, 3, 1).reshape(-1, mf.shape[1]),
                         MASK_LOGIT_SCALE, shift=MASK_SHIFT)
    log("  mask head: feature scale %.3g, %.1fs" % (mm, time.time() - t0))


def export_maskrcnn(model, path: str, half_input: bool = False):
    """torchvision's Mask R-CNN to ONNX: one CHW image in 0..1 (float16 with `half_input`,
    for a model that takes half-precision frames) to boxes, labels, scores and pasted masks."""
    import torch

    dummy = torch.from_numpy(to_unit_chw(synthetic_image(320, 480, 2)))
    if half_input:
        dummy = dummy.half()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, ([dummy],), path,
            dynamo=False,
            opset_version=OPSET,
            do_constant_folding=True,
            input_names=["image"],
            output_names=["boxes", "labels", "scores", "masks"],
            dynamic_axes={"image": {1: "height", 2: "width"},
                          "boxes": {0: "detections"},
                          "labels": {0: "detections"},
                          "scores": {0: "detections"},
                          "masks": {0: "detections", 2: "height", 3: "width"}},
        )
    # the tracer leaves the (always 1) mask channel axis symbolic: pin it
    import onnx

    m = onnx.load(path)
    for out in m.graph.output:
        if out.name == "masks":
            dim = out.type.tensor_type.shape.dim[1]
            dim.Clear()
            dim.dim_value = 1
    empty_nms_from_input(m)
    onnx.save(m, path)


def empty_nms_from_input(m):
    """torchvision's batched NMS exports as an `If` on "no boxes" whose then-branch is an
    empty int64 Constant. OpenVINO's ONNX front end cannot convert that branch (its output
    "is not produced by any operation"), so OpenVINO could not load any Mask R-CNN export.
    The branch now returns the class indices it was given, which are empty exactly when the
    boxes are: the same value, from an operation OpenVINO converts."""
    from onnx import helper, numpy_helper

    for node in m.graph.node:
        if node.op_type != "If":
            continue
        branch = {a.name: a.g for a in node.attribute}
        then, other = branch["then_branch"], branch["else_branch"]
        if len(then.node) != 1 or then.node[0].op_type != "Constant":
            continue
        if numpy_helper.to_array(then.node[0].attribute[0].t).size != 0:
            continue
        # the else-branch's offsets: idxs.to(boxes) * (max_coordinate + 1)
        idxs = next(n.input[0] for n in other.node if n.op_type == "Cast")
        out = then.output[0].name
        del then.node[:]
        then.node.append(helper.make_node("Identity", [idxs], [out]))


# ----------------------------------------------------------------------------
# registry / manifest
# ----------------------------------------------------------------------------
SEG_INPUT = {
    "name": "input", "dtype": "float32", "shape": ["batch", 3, "height", "width"],
    "layout": "NCHW", "color": "RGB",
    "preprocess": "x/255, then (x - mean) / std per channel",
    "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
    "constraints": "height and width must be divisible by 16 (pad or resize)",
}
DET_INPUT = {
    "name": "image", "dtype": "float32", "shape": [3, "height", "width"],
    "layout": "CHW (single image, no batch axis)", "color": "RGB",
    "preprocess": "x/255 (0..1); ImageNet normalisation and resizing are inside the graph",
}
DET_OUTPUTS = [
    {"name": "boxes", "dtype": "float32", "shape": ["detections", 4],
     "meaning": "x1, y1, x2, y2 in input-image pixels"},
    {"name": "labels", "dtype": "int64", "shape": ["detections"],
     "meaning": "COCO category index in the torchvision 91-entry label space (0 = background, never emitted)"},
    {"name": "scores", "dtype": "float32", "shape": ["detections"],
     "meaning": "confidence, sorted descending, all > box_score_thresh"},
    {"name": "masks", "dtype": "float32", "shape": ["detections", 1, "height", "width"],
     "meaning": "per-detection mask probability 0..1 at input resolution; threshold at 0.5"},
]

MODELS = {
    "deeplabv3plus_mobilenet_v2": dict(kind="seg", encoder="mobilenet_v2"),
    "deeplabv3plus_resnet50": dict(kind="seg", encoder="resnet50"),
    "maskrcnn_resnet50_fpn": dict(kind="det", variant="resnet50"),
    "maskrcnn_mobilenet_v3": dict(kind="det", variant="mobilenet_v3"),
}


def model_seed(stem: str) -> int:
    return BASE_SEED + sum(ord(c) for c in stem)


def manifest_entry(stem: str, path: str, extra: dict) -> dict:
    spec = MODELS[stem]
    e = {"file": stem + ".onnx", "stem": stem}
    if spec["kind"] == "seg":
        e.update({
            "task": "semantic_segmentation",
            "architecture": "segmentation_models_pytorch.DeepLabV3Plus(encoder_name=%r, classes=%d)"
                            % (spec["encoder"], SEG_CLASSES),
            "num_classes": SEG_CLASSES,
            "class_names": CITYSCAPES_NAMES,
            "inputs": [SEG_INPUT],
            "outputs": [{"name": "logits", "dtype": "float32", "shape": ["batch", SEG_CLASSES, "height", "width"],
                         "meaning": "per-class logits at full input resolution; label = argmax over dim 1"}],
        })
    else:
        e.update({
            "task": "instance_segmentation",
            "architecture": ("torchvision maskrcnn_resnet50_fpn" if spec["variant"] == "resnet50" else
                             "torchvision MaskRCNN + mobilenet_backbone('mobilenet_v3_large', fpn=True), "
                             "min_size=320, max_size=512"),
            "num_classes": COCO_CLASSES,
            "label_space": "torchvision COCO 91-index (category ids incl. unused ones, 0 = background)",
            "inputs": [DET_INPUT],
            "outputs": DET_OUTPUTS,
        })
    e["weights"] = ("random (torch.manual_seed(%d)), low-pass structured kernels (alpha %.2f), "
                    "BatchNorm + head calibrated on synthetic images; NOT a trained model"
                    % (model_seed(stem), KERNEL_ALPHA))
    if os.path.exists(path):
        e["bytes"] = os.path.getsize(path)
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        e["sha256"] = h.hexdigest()
    e.update(extra)
    return e


def write_manifest(out_dir: str, stems, extras: dict):
    import onnx
    import torch
    import torchvision

    path = os.path.join(out_dir, "manifest.json")
    old = {}
    if os.path.exists(path):
        try:
            with open(path) as fh:
                old = {m["stem"]: m for m in json.load(fh).get("models", [])}
        except Exception:
            old = {}
    for stem in stems:
        entry = manifest_entry(stem, os.path.join(out_dir, stem + ".onnx"), extras.get(stem, {}))
        for k, v in old.get(stem, {}).items():  # keep e.g. export timings on --check runs
            entry.setdefault(k, v)
        old[stem] = entry
    try:
        import segmentation_models_pytorch as smp
        smp_v = smp.__version__
    except Exception:
        smp_v = None
    doc = {
        "generator": "scripts/export_models.py",
        "exporter": "torch.onnx.export(dynamo=False) (legacy TorchScript exporter)",
        "opset": OPSET,
        "versions": {"torch": torch.__version__, "torchvision": torchvision.__version__,
                     "segmentation_models_pytorch": smp_v, "onnx": onnx.__version__},
        "models": [old[k] for k in MODELS if k in old],
    }
    with open(path, "w") as fh:
        json.dump(doc, fh, indent=2)
        fh.write("\n")
    return path


# ----------------------------------------------------------------------------
# checks (onnxruntime, CPU)
# ----------------------------------------------------------------------------
def _session(path: str):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = max(1, min(4, os.cpu_count() or 1))
    so.log_severity_level = 3
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def _edge_alignment(img: np.ndarray, labels: np.ndarray, radius: int = 3) -> float:
    """How much more often label boundaries fall near image edges than chance
    (1.0 = no relation)."""
    g = img.astype(np.float32).mean(axis=2)
    gy = np.abs(np.diff(g, axis=0, append=g[-1:]))
    gx = np.abs(np.diff(g, axis=1, append=g[:, -1:]))
    edges = (gx + gy) > 20.0
    near = edges.copy()
    for _ in range(radius):  # cheap binary dilation
        n2 = near.copy()
        n2[1:] |= near[:-1]
        n2[:-1] |= near[1:]
        n2[:, 1:] |= near[:, :-1]
        n2[:, :-1] |= near[:, 1:]
        near = n2
    lb = np.zeros_like(edges)
    lb[:-1] |= labels[:-1] != labels[1:]
    lb[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    if lb.sum() == 0 or near.mean() == 0:
        return float("nan")
    return float(near[lb].mean() / near.mean())


def check_seg(path: str, log) -> dict:
    sess = _session(path)
    h, w = 384, 640  # differs from the export resolution (checks dynamic axes)
    img = synthetic_image(h, w, CHECK_SEED)

    def run(x):
        t0 = time.time()
        y = sess.run(["logits"], {"input": x})[0]
        return y, time.time() - t0

    x = to_normalized_chw(img)[None]
    y, dt = run(x)
    assert y.shape == (1, SEG_CLASSES, h, w), y.shape
    assert np.isfinite(y).all()
    lab = y[0].argmax(0)
    counts = np.bincount(lab.ravel(), minlength=SEG_CLASSES)
    frac = counts / counts.sum()
    present = int((counts > 0).sum())
    top2 = np.sort(y[0], axis=0)[-2:]
    gap = top2[1] - top2[0]
    y_bgr, _ = run(to_normalized_chw(img[..., ::-1].copy())[None])
    ch_bgr = float((y_bgr[0].argmax(0) != lab).mean())
    y_raw, _ = run(to_unit_chw(img)[None])
    ch_raw = float((y_raw[0].argmax(0) != lab).mean())
    # +-1 LSB input noise (e.g. different resize implementations)
    rng = np.random.default_rng(CHECK_SEED + 1)
    noisy = np.clip(img.astype(np.int16) + rng.integers(-1, 2, img.shape), 0, 255).astype(np.uint8)
    y_n, _ = run(to_normalized_chw(noisy)[None])
    ch_noise = float((y_n[0].argmax(0) != lab).mean())
    # global +2/255 brightness shift (e.g. a different YUV->RGB conversion)
    y_s, _ = run(to_normalized_chw(np.clip(img.astype(np.int16) + 2, 0, 255).astype(np.uint8))[None])
    ch_shift = float((y_s[0].argmax(0) != lab).mean())
    align = _edge_alignment(img, lab)
    # batch axis + another resolution
    xb = np.stack([to_normalized_chw(synthetic_image(160, 224, CHECK_SEED + 2 + i)) for i in range(2)])
    yb, _ = run(xb)
    assert yb.shape == (2, SEG_CLASSES, 160, 224), yb.shape

    dist = ", ".join("%d:%.1f%%" % (c, 100 * f) for c, f in sorted(enumerate(frac), key=lambda t: -t[1]) if f > 0)
    log("  input %dx%d: %.2fs on CPU; %d classes present; label distribution: %s" % (h, w, dt, present, dist))
    log("  max class share %.1f%%; top1-top2 logit gap median %.2f (p10 %.2f); "
        "labels changed: RGB->BGR %.1f%%, un-normalised %.1f%%, +-1 LSB noise %.2f%%, +2 brightness %.2f%%; "
        "label-boundary/image-edge alignment %.2fx chance"
        % (100 * frac.max(), float(np.median(gap)), float(np.percentile(gap, 10)),
           100 * ch_bgr, 100 * ch_raw, 100 * ch_noise, 100 * ch_shift, align))
    stats = {"classes_present": present, "max_class_fraction": round(float(frac.max()), 4),
             "label_fraction": {str(c): round(float(f), 4) for c, f in enumerate(frac)},
             "bgr_change": round(ch_bgr, 4), "unnormalized_change": round(ch_raw, 4),
             "lsb_noise_change": round(ch_noise, 5), "brightness_plus2_change": round(ch_shift, 5),
             "median_logit_gap": round(float(np.median(gap)), 3),
             "edge_alignment": round(align, 3), "cpu_seconds_384x640": round(dt, 3)}
    assert present >= 4, "only %d classes present" % present
    assert frac.max() <= 0.70, "one class covers %.1f%%" % (100 * frac.max())
    assert ch_bgr >= 0.10, "RGB->BGR changed only %.1f%% of labels" % (100 * ch_bgr)
    assert ch_raw >= 0.10, "un-normalised input changed only %.1f%% of labels" % (100 * ch_raw)
    return stats


def check_det(path: str, log) -> dict:
    sess = _session(path)
    h, w = 360, 640
    img = synthetic_image(h, w, CHECK_SEED)
    t0 = time.time()
    boxes, labels, scores, masks = sess.run(["boxes", "labels", "scores", "masks"], {"image": to_unit_chw(img)})
    dt = time.time() - t0
    n = len(scores)
    assert boxes.shape == (n, 4) and labels.shape == (n,) and masks.shape == (n, 1, h, w), \
        (boxes.shape, labels.shape, masks.shape)
    assert labels.dtype == np.int64, labels.dtype
    n_conf = int((scores > 0.05).sum())
    ulabels = sorted(set(int(v) for v in labels))
    fg = [float((m[0] > 0.5).mean()) for m in masks]
    distinct = len({hashlib.md5((m[0] > 0.5).tobytes()).hexdigest() for m in masks})
    # a second image at another resolution (dynamic H, W)
    img2 = synthetic_image(240, 320, CHECK_SEED + 5)
    b2, l2, s2, m2 = sess.run(None, {"image": to_unit_chw(img2)})
    assert m2.shape[2:] == (240, 320), m2.shape
    log("  input %dx%d: %.2fs on CPU; %d detections (%d with score > 0.05), scores %s, labels %s"
        % (h, w, dt, n, n_conf,
           ("%.3f..%.3f" % (scores.min(), scores.max())) if n else "-", ulabels[:20]))
    log("  masks: %d distinct binarised masks of %d; fg fraction (of frame) median %.4f; "
        "second image 240x320: %d detections" % (distinct, n, float(np.median(fg)) if fg else 0.0, len(s2)))
    stats = {"detections": n, "detections_score_gt_0_05": n_conf, "labels": ulabels,
             "score_max": round(float(scores.max()), 4) if n else None,
             "distinct_masks": distinct, "cpu_seconds_360x640": round(dt, 3)}
    assert n_conf >= 1, "no detection with score > 0.05"
    assert n < 2 or distinct > 1, "all masks identical"
    assert n < 1 or np.ptp(masks) > 0.0, "masks are constant"
    return stats


# ----------------------------------------------------------------------------
# main
# ----------------------------------------------------------------------------
def export_one(stem: str, out_dir: str, log) -> dict:
    import onnx

    spec = MODELS[stem]
    path = os.path.join(out_dir, stem + ".onnx")
    tmp = path + ".tmp"
    t_all = time.time()
    t0 = time.time()
    if spec["kind"] == "seg":
        model = build_deeplab(spec["encoder"], model_seed(stem))
        log("  built in %.1fs" % (time.time() - t0))
        calibrate_deeplab(model, log)
        t0 = time.time()
        export_deeplab(model, tmp)
    else:
        model = (build_maskrcnn_resnet50 if spec["variant"] == "resnet50" else build_maskrcnn_mobilenet)(model_seed(stem))
        log("  built in %.1fs" % (time.time() - t0))
        calibrate_maskrcnn(model, log)
        t0 = time.time()
        export_maskrcnn(model, tmp)
    t_exp = time.time() - t0
    onnx.checker.check_model(tmp)
    os.replace(tmp, path)
    log("  exported %s (%.1f MB) in %.1fs; total %.1fs"
        % (path, os.path.getsize(path) / 1e6, t_exp, time.time() - t_all))
    return {"export_seconds": round(time.time() - t_all, 1)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output directory (outside git, e.g. ~/.cache/segstream/models)")
    ap.add_argument("--only", nargs="+", metavar="NAME", choices=sorted(MODELS),
                    help="export/check only these file stems")
    ap.add_argument("--check", action="store_true",
                    help="only check existing ONNX files in --out (no export)")
    ap.add_argument("--no-check", action="store_true", help="skip the onnxruntime check after export")
    args = ap.parse_args(argv)

    out_dir = os.path.abspath(os.path.expanduser(args.out))
    os.makedirs(out_dir, exist_ok=True)
    stems = args.only or list(MODELS)

    def log(msg):
        print(msg, flush=True)

    import torch

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    log("torch %s, opset %d, %d threads, out %s" % (torch.__version__, OPSET, torch.get_num_threads(), out_dir))
    extras = {s: {} for s in stems}
    t_start = time.time()
    if not args.check:
        for stem in stems:
            log("[export] %s" % stem)
            extras[stem].update(export_one(stem, out_dir, log))
        log("export total %.1fs" % (time.time() - t_start))
    failures = []
    if args.check or not args.no_check:
        for stem in stems:
            path = os.path.join(out_dir, stem + ".onnx")
            log("[check] %s" % stem)
            if not os.path.exists(path):
                failures.append("%s: missing" % stem)
                log("  MISSING %s" % path)
                continue
            try:
                st = (check_seg if MODELS[stem]["kind"] == "seg" else check_det)(path, log)
                extras[stem]["check"] = st
                log("  OK")
            except AssertionError as e:
                failures.append("%s: %s" % (stem, e))
                log("  FAILED: %s" % e)
    if not args.check:
        for s in extras:
            extras[s]["exported_at"] = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    mpath = write_manifest(out_dir, [s for s in stems if os.path.exists(os.path.join(out_dir, s + ".onnx"))], extras)
    log("manifest: %s" % mpath)
    log("total %.1fs" % (time.time() - t_start))
    if failures:
        log("FAILED: " + "; ".join(failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

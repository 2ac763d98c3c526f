"""Independent reference for instance segmentation: ONNX Runtime's Python API and
torchvision's own post-processing.

Reads a segstream model config (task = "instance"), feeds the image as the config documents
(RGB or BGR, divided by `scale`, mean/std, padded or stretched with PyTorch), runs the model
with onnxruntime, keeps detections with score >= score_threshold of the configured classes,
and brings boxes and masks to the frame: raw 28x28 masks through torchvision's
`paste_masks_in_image`, pasted masks cropped (or resized with `F.interpolate`); masks are
`> 0.5`. With --tile W H OVERLAP the image is cut into slices (first at 0, last flush with
the edge, the rest spread evenly, as documented in the README), each slice padded to W x H,
optionally plus the whole frame (--full-frame), and detections of one class whose boxes
overlap by more than --merge-threshold (intersection over the smaller box, or over the
union with --merge iou) are merged greedily by descending score: boxes and masks united.

Writes JSON {"width", "height", "detections": [{"class", "score", "box", "mask"}]} where
"mask" is the frame-sized mask as a row-major string of '0'/'1'.

    python ort_instances.py --config c.toml --image in.png --out ref.json [--tile 160 128 32]
"""

import argparse
import json
import math
import pathlib
import tomllib

import numpy as np
import onnxruntime as ort
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.models.detection.roi_heads import paste_masks_in_image


def starts(length, tile, overlap):
    if length <= tile:
        return [0]
    count = 1 + math.ceil((length - tile) / (tile - overlap))
    span = length - tile
    return [(i * span + (count - 1) // 2) // (count - 1) for i in range(count)]


def detect(session, cfg, x, frame_hw, offset, region_hw, stretch_to=None):
    """x: normalized float32 [3, h, w] model input. Returns (boxes, labels, scores, masks)
    in frame coordinates, masks as bool [n, H, W] over the frame."""
    inp, out = cfg["input"], cfg["output"]
    names = [out["boxes"], out["labels"], out["scores"], out["masks"]]
    feed = x if inp["layout"] == "CHW" else x[None]
    boxes, labels, scores, masks = session.run(names, {inp["name"]: feed.numpy()})
    boxes, labels, scores = torch.from_numpy(boxes), torch.from_numpy(labels).long(), torch.from_numpy(scores)
    masks = torch.from_numpy(masks.astype(np.float32))
    keep = scores >= out.get("score_threshold", 0.5)
    names_all = cfg["classes"]["names"]
    if "classes" in out:
        wanted = torch.tensor([names_all[int(c)] in out["classes"] for c in labels], dtype=torch.bool)
        keep &= wanted
    boxes, labels, scores, masks = boxes[keep], labels[keep], scores[keep], masks[keep]
    H, W = frame_hw
    rh, rw = region_hw
    b = boxes.clone()
    b[:, 0::2] = b[:, 0::2].clamp(0, rw)
    b[:, 1::2] = b[:, 1::2].clamp(0, rh)
    if stretch_to is not None:  # torchvision's resize_boxes: float32 original / resized
        mh, mw = stretch_to
        b[:, 0::2] *= torch.tensor(W, dtype=torch.float32) / torch.tensor(mw, dtype=torch.float32)
        b[:, 1::2] *= torch.tensor(H, dtype=torch.float32) / torch.tensor(mh, dtype=torch.float32)
    b[:, 0::2] += offset[0]
    b[:, 1::2] += offset[1]
    n = len(scores)
    if out["masks_format"] == "raw":
        if masks.shape[1] > 1:
            masks = masks[torch.arange(n), labels][:, None]
        full = paste_masks_in_image(masks, b, (H, W), padding=1)[:, 0] > 0.5 if n else torch.zeros(0, H, W, dtype=torch.bool)
    else:
        if stretch_to is not None:
            m = F.interpolate(masks, size=(H, W), mode="bilinear", align_corners=False)[:, 0] if n else torch.zeros(0, H, W)
            full = m > 0.5
        else:
            full = torch.zeros(n, H, W, dtype=torch.bool)
            part = masks[:, 0, :rh, :rw] > 0.5
            full[:, offset[1]:offset[1] + rh, offset[0]:offset[0] + rw] = part
    return b, labels, scores, full


def merge(dets, metric, threshold):
    order = sorted(range(len(dets)), key=lambda i: -dets[i]["score"])  # stable
    dets = [dets[i] for i in order]
    used = [False] * len(dets)
    out = []
    for i, d in enumerate(dets):
        if used[i]:
            continue
        keep = dict(d)
        a = d["box"]
        for j in range(i + 1, len(dets)):
            o = dets[j]
            if used[j] or o["class"] != keep["class"]:
                continue
            bx = o["box"]
            iw = max(min(a[2], bx[2]) - max(a[0], bx[0]), 0.0)
            ih = max(min(a[3], bx[3]) - max(a[1], bx[1]), 0.0)
            inter = iw * ih
            area_a = max(a[2] - a[0], 0.0) * max(a[3] - a[1], 0.0)
            area_b = max(bx[2] - bx[0], 0.0) * max(bx[3] - bx[1], 0.0)
            denom = min(area_a, area_b) if metric == "ios" else area_a + area_b - inter
            if denom <= 0 or inter / denom <= threshold:
                continue
            used[j] = True
            kb = keep["box"]
            keep["box"] = [min(kb[0], bx[0]), min(kb[1], bx[1]), max(kb[2], bx[2]), max(kb[3], bx[3])]
            keep["mask"] = keep["mask"] | o["mask"]
        out.append(keep)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True, type=pathlib.Path)
    ap.add_argument("--image", required=True, type=pathlib.Path)
    ap.add_argument("--out", required=True, type=pathlib.Path)
    ap.add_argument("--tile", nargs=3, type=int, metavar=("W", "H", "OVERLAP"))
    ap.add_argument("--full-frame", action="store_true")
    ap.add_argument("--merge", default="ios", choices=["ios", "iou"])
    ap.add_argument("--merge-threshold", type=float, default=0.5)
    a = ap.parse_args()

    cfg = tomllib.loads(a.config.read_text())
    inp, out = cfg["input"], cfg["output"]
    session = ort.InferenceSession(str((a.config.parent / cfg["onnx"]).resolve()),
                                   providers=["CPUExecutionProvider"])
    rgb = np.asarray(Image.open(a.image).convert("RGB"), dtype=np.float32)
    H, W = rgb.shape[:2]
    order = [0, 1, 2] if inp.get("color", "RGB") == "RGB" else [2, 1, 0]
    x = rgb[..., order] / inp.get("scale", 255.0)
    x = (x - np.array(inp.get("mean", [0, 0, 0]), np.float32)) / np.array(inp.get("std", [1, 1, 1]), np.float32)
    x = torch.from_numpy(x.astype(np.float32)).permute(2, 0, 1).contiguous()

    def whole():
        size = inp["size"]
        if size["policy"] == "stretch":
            mh, mw = size["height"], size["width"]
            t = F.interpolate(x[None], size=(mh, mw), mode="bilinear", align_corners=False)[0]
            return detect(session, cfg, t, (H, W), (0, 0), (mh, mw), stretch_to=(mh, mw))
        m = size.get("multiple_of", 1)
        mh, mw = math.ceil(H / m) * m, math.ceil(W / m) * m
        t = F.pad(x, (0, mw - W, 0, mh - H))
        return detect(session, cfg, t, (H, W), (0, 0), (H, W))

    results = []
    if a.tile:
        tw, th, overlap = a.tile
        for y0 in starts(H, th, overlap):
            for x0 in starts(W, tw, overlap):
                rw, rh = min(tw, W), min(th, H)
                t = torch.zeros(3, th, tw)
                t[:, :rh, :rw] = x[:, y0:y0 + rh, x0:x0 + rw]
                results.append(detect(session, cfg, t, (H, W), (x0, y0), (rh, rw)))
        if a.full_frame and len(results) > 1:
            results.append(whole())
    else:
        results.append(whole())
    dets = []
    for b, l, s, m in results:
        for i in range(len(s)):
            dets.append({"class": int(l[i]), "score": float(s[i]), "box": [float(v) for v in b[i]],
                         "mask": m[i].numpy()})
    if len(results) > 1:
        dets = merge(dets, a.merge, a.merge_threshold)
    dets = sorted(dets, key=lambda d: -d["score"])[: out.get("max_detections", 100)]
    for d in dets:
        d["mask"] = "".join("1" if v else "0" for v in d["mask"].astype(np.uint8).ravel())
    json.dump({"width": W, "height": H, "detections": dets}, open(a.out, "w"))


if __name__ == "__main__":
    main()

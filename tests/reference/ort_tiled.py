"""Independent reference for tiled segmentation: ONNX Runtime's Python API plus NumPy.

Implements the tiling documented in segstream's src/tile.rs from its description: tiles of
the model input size spread evenly so the first starts at 0 and the last ends at the edge
(at least OVERLAP pixels shared between neighbours); each seam gets a blending band OVERLAP
wide (at most the actual overlap and the smallest stride), centred in the overlap, across
which one tile's weight ramps down and the other's up (linear or smoothstep); elsewhere a
pixel belongs to one tile. Weighted sum of scores, optional frame scaling before tiling
(bilinear, half-pixel centres) and back after, then argmax.

    python ort_tiled.py --config C.toml --image in.png --tile 192 128 --overlap 32 \
        [--scale 0.5] [--blend linear|gaussian] --out ref.png
"""

import argparse
import math
import pathlib
import tomllib

import numpy as np
import onnxruntime as ort
import torch
import torch.nn.functional as F
from PIL import Image


def starts(length: int, tile: int, overlap: int) -> list[int]:
    if length <= tile:
        return [0]
    count = 1 + math.ceil((length - tile) / (tile - overlap))
    span = length - tile
    return [(i * span + (count - 1) // 2) // (count - 1) for i in range(count)]


def ramp(t: np.ndarray, blend: str) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t if blend == "linear" else t * t * (3 - 2 * t)


def axis_weights(st: list[int], i: int, ext: int, band: float, blend: str) -> np.ndarray:
    x = st[i] + np.arange(ext, dtype=np.float64) + 0.5  # pixel centres
    w = np.ones(ext)

    def seam(k: int) -> tuple[float, float]:
        nxt, end = st[k + 1], st[k] + ext
        mid, half = (nxt + end) / 2, min(band, end - nxt) / 2
        return mid - half, mid + half

    if i > 0:
        lo, hi = seam(i - 1)
        inside = (x >= lo) & (x < hi)
        w = np.where(inside, np.minimum(w, ramp((x - lo) / max(hi - lo, 1e-9), blend)), w)
        w = np.where(x < lo, 0.0, w)
    if i + 1 < len(st):
        lo, hi = seam(i)
        inside = (x > lo) & (x < hi)
        w = np.where(inside, np.minimum(w, ramp((hi - x) / max(hi - lo, 1e-9), blend)), w)
        w = np.where(x >= hi, 0.0, w)
    return w


def band_width(length: int, tile: int, overlap: int, count: int) -> int:
    return overlap if count == 1 else min(overlap, (length - tile) // (count - 1))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True, type=pathlib.Path)
    ap.add_argument("--image", required=True, type=pathlib.Path)
    ap.add_argument("--tile", nargs=2, type=int, required=True, metavar=("W", "H"))
    ap.add_argument("--overlap", type=int, required=True)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--blend", default="linear")
    ap.add_argument("--out", required=True, type=pathlib.Path)
    a = ap.parse_args()

    cfg = tomllib.loads(a.config.read_text())
    inp, out = cfg["input"], cfg["output"]
    rgb = np.asarray(Image.open(a.image).convert("RGB"), dtype=np.float32)
    h, w = rgb.shape[:2]
    order = [0, 1, 2] if inp.get("color", "RGB") == "RGB" else [2, 1, 0]
    x = (rgb[..., order] / inp.get("scale", 255.0) - np.array(inp.get("mean", [0, 0, 0]), np.float32)) / np.array(
        inp.get("std", [1, 1, 1]), np.float32
    )
    t = torch.from_numpy(x.astype(np.float32)).permute(2, 0, 1)[None]
    sw, sh = max(1, math.floor(w * a.scale + 0.5)), max(1, math.floor(h * a.scale + 0.5))
    if (sw, sh) != (w, h):
        t = F.interpolate(t, size=(sh, sw), mode="bilinear", align_corners=False)
    img = t[0].numpy()

    tw, th = a.tile
    xs, ys = starts(sw, tw, a.overlap), starts(sh, th, a.overlap)
    ew, eh = min(tw, sw), min(th, sh)
    bx, by = band_width(sw, tw, a.overlap, len(xs)), band_width(sh, th, a.overlap, len(ys))
    session = ort.InferenceSession(str((a.config.parent / cfg["onnx"]).resolve()), providers=["CPUExecutionProvider"])
    acc = None
    wsum = np.zeros((sh, sw))
    for r, y0 in enumerate(ys):
        for c, x0 in enumerate(xs):
            item = np.zeros((1, 3, th, tw), np.float32)
            item[0, :, :eh, :ew] = img[:, y0 : y0 + eh, x0 : x0 + ew]
            scores = torch.from_numpy(session.run([out["name"]], {inp["name"]: item})[0].astype(np.float32))
            if scores.shape[-2:] != (th, tw):
                scores = F.interpolate(scores, size=(th, tw), mode="bilinear", align_corners=False)
            scores = scores[0].numpy()[:, :eh, :ew].astype(np.float64)
            wt = np.outer(axis_weights(ys, r, eh, by, a.blend), axis_weights(xs, c, ew, bx, a.blend))
            if acc is None:
                acc = np.zeros((scores.shape[0], sh, sw))
            acc[:, y0 : y0 + eh, x0 : x0 + ew] += wt * scores
            wsum[y0 : y0 + eh, x0 : x0 + ew] += wt
    assert np.allclose(wsum, 1.0), "weights must sum to one"
    blended = torch.from_numpy(acc.astype(np.float32))[None]
    if (sw, sh) != (w, h):
        blended = F.interpolate(blended, size=(h, w), mode="bilinear", align_corners=False)
    labels = np.argmax(blended[0].numpy(), axis=0)
    Image.fromarray(labels.astype(np.uint8), mode="L").save(a.out)


if __name__ == "__main__":
    main()

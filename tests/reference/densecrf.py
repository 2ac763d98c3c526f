"""Independent reference for `refine`: Krähenbühl's densecrf through pydensecrf2.

    python densecrf.py make --width W --height H --seed S --classes C --dir DIR
        -> DIR/image.png and DIR/probs.f32 (C x H x W float32, little-endian): an image-like
           picture and natural-looking class probabilities (colour regions of the picture,
           blurred, with low-frequency and pixel noise)
    python densecrf.py crf --dir DIR --classes C [--iterations 5] [--sxy 3] [--wsmooth 3]
                           [--bxy 80] [--srgb 13] [--wapp 10] --out LABELS.png
        -> the refined label map (argmax of Q after the iterations)
    python densecrf.py time --dir DIR --classes C [--runs 3]
        -> JSON {"seconds": median wall time of one full refinement (set-up + inference),
                 "cpu_seconds": median CPU time of the same}
"""

import argparse
import json
import pathlib
import sys
import time

import numpy as np
from PIL import Image

import pydensecrf.densecrf as dcrf
from pydensecrf.utils import unary_from_softmax

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "scripts"))
from export_models import synthetic_image  # noqa: E402


def box_blur(a: np.ndarray, r: int) -> np.ndarray:
    """Mean over a (2r+1)^2 window along the last two axes, edges clamped."""
    for axis in (-2, -1):
        n = a.shape[axis]
        pad = [(0, 0)] * a.ndim
        pad[axis] = (r + 1, r)
        c = np.cumsum(np.pad(a, pad, mode="edge"), axis=axis, dtype=np.float64)
        hi = np.take(c, np.arange(2 * r + 1, 2 * r + 1 + n), axis=axis)
        lo = np.take(c, np.arange(0, n), axis=axis)
        a = ((hi - lo) / (2 * r + 1)).astype(np.float32)
    return a


def make(a) -> None:
    out = pathlib.Path(a.dir)
    out.mkdir(parents=True, exist_ok=True)
    img = synthetic_image(a.height, a.width, a.seed)
    Image.fromarray(img).save(out / "image.png")
    rng = np.random.default_rng(a.seed + 1000)
    h, w, c = a.height, a.width, a.classes
    # Classes are colour regions: the nearest of C colours sampled from the picture.
    ys, xs = rng.integers(0, h, c), rng.integers(0, w, c)
    centres = img[ys, xs].astype(np.float32)
    dist = ((img[None].astype(np.float32) - centres[:, None, None]) ** 2).sum(-1)
    truth = dist.argmin(0)
    logits = 3.0 * (np.arange(c)[:, None, None] == truth[None]).astype(np.float32)
    # A blurry, noisy model: blurred boundaries, smooth random biases and pixel noise.
    logits = box_blur(box_blur(logits, max(2, w // 100)), max(2, w // 100))
    coarse = rng.normal(0, 0.8, (c, 6, 8)).astype(np.float32)
    smooth = np.stack(
        [np.asarray(Image.fromarray(g).resize((w, h), Image.BICUBIC)) for g in coarse]
    )
    logits = logits + smooth + rng.normal(0, 0.3, (c, h, w)).astype(np.float32)
    e = np.exp(logits - logits.max(0, keepdims=True))
    probs = (e / e.sum(0, keepdims=True)).astype("<f4")
    probs.tofile(out / "probs.f32")


def load(a):
    d = pathlib.Path(a.dir)
    img = np.array(Image.open(d / "image.png").convert("RGB"), dtype=np.uint8, order="C")
    h, w = img.shape[:2]
    probs = np.fromfile(d / "probs.f32", dtype="<f4").reshape(a.classes, h, w)
    return img, probs


def refine(a, img, probs) -> np.ndarray:
    c, h, w = probs.shape
    crf = dcrf.DenseCRF2D(w, h, c)
    crf.setUnaryEnergy(np.ascontiguousarray(unary_from_softmax(np.array(probs))))
    crf.addPairwiseGaussian(sxy=a.sxy, compat=a.wsmooth)
    crf.addPairwiseBilateral(sxy=a.bxy, srgb=a.srgb, rgbim=img, compat=a.wapp)
    q = np.array(crf.inference(a.iterations)).reshape(c, h, w)
    return q.argmax(0).astype(np.uint8)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["make", "crf", "time"])
    ap.add_argument("--dir", required=True)
    ap.add_argument("--classes", type=int, default=19)
    ap.add_argument("--width", type=int)
    ap.add_argument("--height", type=int)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--iterations", type=int, default=5)
    ap.add_argument("--sxy", type=float, default=3.0)
    ap.add_argument("--wsmooth", type=float, default=3.0)
    ap.add_argument("--bxy", type=float, default=80.0)
    ap.add_argument("--srgb", type=float, default=13.0)
    ap.add_argument("--wapp", type=float, default=10.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out")
    a = ap.parse_args()
    if a.mode == "make":
        make(a)
    elif a.mode == "crf":
        img, probs = load(a)
        Image.fromarray(refine(a, img, probs), mode="L").save(a.out)
    else:
        img, probs = load(a)
        times, cpu = [], []
        for _ in range(a.runs):
            t, c = time.perf_counter(), time.process_time()
            refine(a, img, probs)
            times.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
        print(json.dumps({"seconds": float(np.median(times)), "cpu_seconds": float(np.median(cpu))}))


if __name__ == "__main__":
    main()

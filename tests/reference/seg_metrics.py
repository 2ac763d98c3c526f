"""Independent reference for `segstream eval`: writes random ground-truth and predicted
label PNGs and computes the metrics with NumPy straight from their definitions.

    python seg_metrics.py DIR SEED   -> DIR/truth/*.png, DIR/pred/*.png; metrics JSON on stdout
"""

import json
import pathlib
import sys

import numpy as np
from PIL import Image

CLASSES, IGNORE = 19, 255


def main() -> None:
    out, seed = pathlib.Path(sys.argv[1]), int(sys.argv[2])
    rng = np.random.default_rng(seed)
    (out / "truth").mkdir(parents=True, exist_ok=True)
    (out / "pred").mkdir(parents=True, exist_ok=True)
    truths, preds = [], []
    for i in range(4):
        h, w = (int(v) for v in rng.integers(20, 60, size=2))
        t = rng.integers(0, CLASSES - 3, size=(h, w))  # classes 16..18 never in the truth
        t[rng.random((h, w)) < 0.1] = IGNORE
        p = np.where(rng.random((h, w)) < 0.7, t, rng.integers(0, CLASSES, size=(h, w)))
        p = np.where(p == IGNORE, rng.integers(0, CLASSES, size=(h, w)), p)
        Image.fromarray(t.astype(np.uint8), mode="L").save(out / "truth" / f"{i:06d}.png")
        Image.fromarray(p.astype(np.uint8), mode="L").save(out / "pred" / f"{i:06d}.png")
        truths.append(t.ravel())
        preds.append(p.ravel())
    t, p = np.concatenate(truths), np.concatenate(preds)
    keep = t != IGNORE
    t, p = t[keep], p[keep]
    per_class = []
    for c in range(CLASSES):
        tp = int(np.sum((t == c) & (p == c)))
        fp = int(np.sum((t != c) & (p == c)))
        fn = int(np.sum((t == c) & (p != c)))
        union = tp + fp + fn
        per_class.append(
            {
                "class": c,
                "iou": tp / union if union else None,
                "dice": 2 * tp / (2 * tp + fp + fn) if union else None,
                "pixels": int(np.sum(t == c)),
            }
        )
    ious = [c["iou"] for c in per_class if c["iou"] is not None]
    dices = [c["dice"] for c in per_class if c["dice"] is not None]
    print(
        json.dumps(
            {
                "pixel_accuracy": float(np.mean(t == p)),
                "mean_iou": float(np.mean(ious)),
                "mean_dice": float(np.mean(dices)),
                "pixels": int(t.size),
                "per_class": per_class,
            }
        )
    )


if __name__ == "__main__":
    main()

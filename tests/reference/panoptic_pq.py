"""Independent reference for `segstream eval --panoptic-*`: writes random ground-truth and
predicted 16-bit panoptic PNGs (class * 1000 + instance, 65535 void) and computes panoptic
quality with NumPy, following panopticapi's `pq_compute` (pq_compute_single_core and
PQStat.pq_average) line by line.

    python panoptic_pq.py DIR SEED   -> DIR/truth/*.png, DIR/pred/*.png; PQ JSON on stdout
"""

import json
import pathlib
import sys
from collections import defaultdict

import numpy as np
from PIL import Image

VOID, OFFSET = 65535, 1 << 16
STUFF, THINGS = [0, 1, 2, 8], [11, 12, 13]


def scene(rng, h, w):
    """A truth map: stuff bands, thing rectangles with instance ids, void patches."""
    m = np.zeros((h, w), np.int64)
    cuts = np.sort(rng.integers(0, h, size=3))
    for c, (a, b) in zip(rng.permutation(STUFF), zip([0, *cuts], [*cuts, h])):
        m[a:b] = c * 1000
    for i in range(int(rng.integers(3, 9))):
        c = int(rng.choice(THINGS))
        y, x = int(rng.integers(0, h - 8)), int(rng.integers(0, w - 8))
        m[y:y + int(rng.integers(4, h // 2)), x:x + int(rng.integers(4, w // 2))] = c * 1000 + i + 1
    for _ in range(int(rng.integers(0, 3))):
        y, x = int(rng.integers(0, h)), int(rng.integers(0, w))
        m[y:y + int(rng.integers(2, 12)), x:x + int(rng.integers(2, 12))] = VOID
    return m


def predict(rng, t):
    """A prediction: the truth shifted, some segments relabelled, extra blobs, some void."""
    h, w = t.shape
    p = np.roll(t, tuple(int(v) for v in rng.integers(-2, 3, size=2)), axis=(0, 1)).copy()
    p[p == VOID] = STUFF[0] * 1000
    for v in np.unique(p):
        r = rng.random()
        if r < 0.15:  # wrong class
            p[p == v] = int(rng.choice(STUFF + THINGS)) * 1000 + (v % 1000)
        elif r < 0.25 and v % 1000:  # instance split in two
            ys, xs = np.nonzero(p == v)
            half = (p == v) & (np.arange(w)[None, :] > xs.mean())
            p[half] = v + 500
    for i in range(int(rng.integers(1, 4))):  # false positives
        y, x = int(rng.integers(0, h)), int(rng.integers(0, w))
        p[y:y + int(rng.integers(3, 15)), x:x + int(rng.integers(3, 15))] = 13 * 1000 + 900 + i
    if rng.random() < 0.5:
        p[: int(rng.integers(1, 5))] = VOID
    return p


def pq_image(gt, pred, stat):
    gt_labels, gt_cnt = np.unique(gt, return_counts=True)
    gt_segms = {int(l): {"area": int(c), "category_id": int(l) // 1000}
                for l, c in zip(gt_labels, gt_cnt) if l != VOID}
    pred_labels, pred_cnt = np.unique(pred, return_counts=True)
    pred_segms = {int(l): {"area": int(c), "category_id": int(l) // 1000}
                  for l, c in zip(pred_labels, pred_cnt) if l != VOID}
    pan_gt_pred = gt.astype(np.uint64) * OFFSET + pred.astype(np.uint64)
    gt_pred_map = {}
    labels, labels_cnt = np.unique(pan_gt_pred, return_counts=True)
    for label, intersection in zip(labels, labels_cnt):
        gt_pred_map[(int(label) // OFFSET, int(label) % OFFSET)] = int(intersection)
    gt_matched, pred_matched = set(), set()
    for (gt_label, pred_label), intersection in gt_pred_map.items():
        if gt_label not in gt_segms or pred_label not in pred_segms:
            continue
        if gt_segms[gt_label]["category_id"] != pred_segms[pred_label]["category_id"]:
            continue
        union = (pred_segms[pred_label]["area"] + gt_segms[gt_label]["area"] - intersection
                 - gt_pred_map.get((VOID, pred_label), 0))
        iou = intersection / union
        if iou > 0.5:
            stat[gt_segms[gt_label]["category_id"]]["tp"] += 1
            stat[gt_segms[gt_label]["category_id"]]["iou"] += iou
            gt_matched.add(gt_label)
            pred_matched.add(pred_label)
    for gt_label, info in gt_segms.items():
        if gt_label not in gt_matched:
            stat[info["category_id"]]["fn"] += 1
    for pred_label, info in pred_segms.items():
        if pred_label in pred_matched:
            continue
        if gt_pred_map.get((VOID, pred_label), 0) / info["area"] > 0.5:
            continue
        stat[info["category_id"]]["fp"] += 1


def pq_average(stat, isthing):
    pq = sq = rq = 0.0
    n = 0
    for c in sorted(STUFF + THINGS):
        if isthing is not None and (c in THINGS) != isthing:
            continue
        s = stat[c]
        tp, fp, fn, iou = s["tp"], s["fp"], s["fn"], s["iou"]
        if tp + fp + fn == 0:
            continue
        n += 1
        pq += iou / (tp + 0.5 * fp + 0.5 * fn)
        sq += iou / tp if tp != 0 else 0
        rq += tp / (tp + 0.5 * fp + 0.5 * fn)
    return {"pq": pq / n, "sq": sq / n, "rq": rq / n, "classes": n}


def main() -> None:
    out, seed = pathlib.Path(sys.argv[1]), int(sys.argv[2])
    rng = np.random.default_rng(seed)
    (out / "truth").mkdir(parents=True, exist_ok=True)
    (out / "pred").mkdir(parents=True, exist_ok=True)
    stat = defaultdict(lambda: {"tp": 0, "fp": 0, "fn": 0, "iou": 0.0})
    for i in range(5):
        h, w = int(rng.integers(40, 90)), int(rng.integers(50, 120))
        t = scene(rng, h, w)
        p = predict(rng, t)
        Image.fromarray(t.astype(np.uint16)).save(out / "truth" / f"{i:06d}.png")
        Image.fromarray(p.astype(np.uint16)).save(out / "pred" / f"{i:06d}.png")
        pq_image(t, p, stat)
    per_class = []
    for c in sorted(stat):
        s = stat[c]
        d = s["tp"] + 0.5 * s["fp"] + 0.5 * s["fn"]
        per_class.append({"class": c, "tp": s["tp"], "fp": s["fp"], "fn": s["fn"],
                          "pq": s["iou"] / d if d else 0.0,
                          "sq": s["iou"] / s["tp"] if s["tp"] else 0.0,
                          "rq": s["tp"] / d if d else 0.0})
    print(json.dumps({"all": pq_average(stat, None), "things": pq_average(stat, True),
                      "stuff": pq_average(stat, False), "per_class": per_class}))


if __name__ == "__main__":
    main()

"""Independent reference for `segstream eval --instances`: writes random COCO ground truth
and JSONL predictions (as the JSONL sink writes them) and scores them with pycocotools'
COCOeval (iouType "segm").

    python coco_ap.py DIR SEED   -> DIR/gt.json, DIR/pred.jsonl; COCOeval's figures on stdout

The fixture has several images of different sizes, categories with non-consecutive ids (one
with no ground truth, and predictions of a category the ground truth does not list), objects
given as polygons, crowd regions stored as uncompressed RLE, objects of all three area ranges, tied scores, an image
with no predictions line, an empty prediction line and one image with over 100 detections.
"""

import contextlib
import io
import json
import pathlib
import sys

import numpy as np
from pycocotools import mask as mask_util
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

CATEGORIES = [{"id": 1, "name": "car"}, {"id": 2, "name": "person"}, {"id": 5, "name": "bus"},
              {"id": 7, "name": "train"}]


def shape(rng, h, w, big):
    """A random filled ellipse or rectangle as an (h, w) uint8 mask."""
    m = np.zeros((h, w), np.uint8)
    size = rng.integers(30, 160) if big else rng.integers(3, 30)
    cy, cx = (rng.integers(h // 4, 3 * h // 4), rng.integers(w // 4, 3 * w // 4)) if big else (
        rng.integers(0, h), rng.integers(0, w))
    ry, rx = max(1, size // 2), max(1, int(size * rng.uniform(0.5, 1.5)) // 2)
    yy, xx = np.mgrid[0:h, 0:w]
    if rng.random() < 0.5:
        m[((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1] = 1
    else:
        m[max(0, cy - ry):cy + ry, max(0, cx - rx):cx + rx] = 1
    if m.sum() == 0:
        m[min(cy, h - 1), min(cx, w - 1)] = 1
    return m


def polygon(rng, h, w):
    """A random star-shaped polygon with fractional vertices."""
    cx, cy = rng.uniform(w / 4, 3 * w / 4), rng.uniform(h / 4, 3 * h / 4)
    n = int(rng.integers(3, 10))
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    radii = rng.uniform(5, 60, n)
    return [float(v) for v in np.stack([cx + radii * np.cos(angles),
                                        cy + radii * np.sin(angles)], axis=1).ravel()]


def jitter(rng, m):
    """A prediction near a ground-truth mask: shifted, grown or shrunk."""
    dy, dx = rng.integers(-3, 4, size=2)
    p = np.roll(np.roll(m, dy, axis=0), dx, axis=1)
    if rng.random() < 0.2:
        p = p.copy()
        p[:, : rng.integers(0, p.shape[1] // 2)] = 0
    return p


def rle(m):
    r = mask_util.encode(np.asfortranarray(m))
    return {"size": [int(v) for v in r["size"]], "counts": r["counts"].decode("ascii")}


def uncompressed(m):
    flat = m.flatten(order="F")
    counts, current, run = [], 0, 0
    for v in flat:
        if v != current:
            counts.append(run)
            current, run = v, 0
        run += 1
    counts.append(run)
    return {"size": list(m.shape), "counts": counts}


def main() -> None:
    out, seed = pathlib.Path(sys.argv[1]), int(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    images, annotations, lines = [], [], []
    ann_id = 1
    for img in range(6):
        h, w = int(rng.integers(120, 200)), int(rng.integers(140, 240))
        images.append({"id": img, "width": w, "height": h, "file_name": f"{img:06d}.png"})
        preds = []
        for _ in range(int(rng.integers(2, 7))):
            cat = int(rng.choice([1, 2, 5]))
            if rng.random() < 0.3:  # polygons, rasterized by pycocotools
                polys = [polygon(rng, h, w) for _ in range(int(rng.integers(1, 3)))]
                m = mask_util.decode(mask_util.merge(mask_util.frPyObjects(polys, h, w)))
                segmentation = polys
            else:
                m = shape(rng, h, w, rng.random() < 0.5)
                segmentation = rle(m)
            annotations.append({"id": ann_id, "image_id": img, "category_id": cat,
                                "segmentation": segmentation, "area": float(m.sum()),
                                "bbox": [0, 0, 0, 0], "iscrowd": 0})
            ann_id += 1
            for _ in range(int(rng.choice([0, 1, 1, 1, 2]))):  # misses, hits and duplicates
                preds.append((cat, jitter(rng, m)))
        if rng.random() < 0.7:  # a crowd region, and detections inside it
            cat = int(rng.choice([1, 2]))
            m = shape(rng, h, w, True)
            annotations.append({"id": ann_id, "image_id": img, "category_id": cat,
                                "segmentation": uncompressed(m), "area": float(m.sum()),
                                "bbox": [0, 0, 0, 0], "iscrowd": 1})
            ann_id += 1
            for _ in range(int(rng.integers(1, 3))):
                preds.append((cat, jitter(rng, m) * shape(rng, h, w, True)))
        for _ in range(int(rng.integers(1, 4))):  # false positives, one of an unlisted category
            preds.append((int(rng.choice([1, 2, 5, 9])), shape(rng, h, w, rng.random() < 0.5)))
        if img == 3:  # over 100 detections of one category
            preds += [(1, shape(rng, h, w, False)) for _ in range(110)]
        instances = []
        for j, (cat, m) in enumerate(preds):
            score = round(float(rng.uniform(0.05, 1.0)), 2)  # two decimals: ties happen
            instances.append({"id": j + 1, "category_id": cat, "category": str(cat),
                              "score": score, "bbox": [0.0, 0.0, 1.0, 1.0],
                              "segmentation": rle(m.astype(np.uint8))})
        if img == 4:
            continue  # a frame with no line at all
        if img == 5:
            instances = []
        lines.append({"stream": 0, "seq": img, "pts_ms": img * 40.0, "width": w, "height": h,
                      "instances": instances})
    gt = {"images": images, "annotations": annotations, "categories": CATEGORIES}
    (out / "gt.json").write_text(json.dumps(gt))
    (out / "pred.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))

    results = []
    for line in (out / "pred.jsonl").read_text().splitlines():
        frame = json.loads(line)
        for inst in frame["instances"]:
            results.append({"image_id": frame["seq"], "category_id": inst["category_id"],
                            "segmentation": inst["segmentation"], "score": inst["score"]})
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(str(out / "gt.json"))
        coco_dt = coco_gt.loadRes(results)
        ev = COCOeval(coco_gt, coco_dt, "segm")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    names = ["ap", "ap50", "ap75", "ap_small", "ap_medium", "ap_large",
             "ar1", "ar10", "ar100", "ar_small", "ar_medium", "ar_large"]
    report = {n: (None if v == -1 else float(v)) for n, v in zip(names, ev.stats)}
    per_category = []
    for k, cat in enumerate(ev.params.catIds):
        p = ev.eval["precision"][:, :, k, 0, 2]
        p50 = ev.eval["precision"][0, :, k, 0, 2]
        per_category.append({
            "id": int(cat),
            "ap": float(np.mean(p[p > -1])) if np.any(p > -1) else None,
            "ap50": float(np.mean(p50[p50 > -1])) if np.any(p50 > -1) else None,
        })
    report["per_category"] = per_category
    print(json.dumps(report))


if __name__ == "__main__":
    main()

"""Independent reference for polygon ground truth: random polygons (one or several per
object, fractional and out-of-image vertices) rasterized by pycocotools
(`merge(frPyObjects(polygons, h, w))`, as COCO.annToRLE does).

    python coco_polygons.py SEED   -> JSON list of {height, width, polygons, counts}
"""

import json
import sys

import numpy as np
from pycocotools import mask as mask_util


def polygon(rng, h, w):
    cx, cy = rng.uniform(-5, w + 5), rng.uniform(-5, h + 5)
    n = int(rng.integers(3, 12))
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    radii = rng.uniform(1, max(h, w) / 2, n)
    xy = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], axis=1)
    return [float(v) for v in xy.ravel()]


def main() -> None:
    rng = np.random.default_rng(int(sys.argv[1]))
    out = []
    for _ in range(60):
        h, w = int(rng.integers(1, 80)), int(rng.integers(1, 80))
        polys = [polygon(rng, h, w) for _ in range(int(rng.integers(1, 4)))]
        rle = mask_util.merge(mask_util.frPyObjects(polys, h, w))
        out.append({"height": h, "width": w, "polygons": polys,
                    "counts": rle["counts"].decode("ascii")})
    print(json.dumps(out))


if __name__ == "__main__":
    main()

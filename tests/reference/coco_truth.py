"""Independent check of the `coco_truth` sink: reads its COCO file with pycocotools and
compares every annotation with the truth label maps the PNG sink wrote beside it.

    python coco_truth.py TRUTH.json LABELS_DIR   -> JSON on stdout

For each image: the masks (pycocotools' annToMask) are disjoint; for each category, their
union is exactly the label map's pixels of that class (the categories are the truth's
Cityscapes train ids when no instance model names them); `area` is the mask's pixel count
and `bbox` pycocotools' own box of the RLE.
"""

import contextlib
import io
import json
import pathlib
import sys

import numpy as np
from PIL import Image
from pycocotools import mask as mask_util
from pycocotools.coco import COCO


def main():
    path, labels_dir = sys.argv[1], pathlib.Path(sys.argv[2])
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(path)
    out = {"images": 0, "annotations": 0, "problems": [], "categories": {}}
    for cat in coco.loadCats(coco.getCatIds()):
        out["categories"][cat["name"]] = cat["id"]
    for img in coco.loadImgs(coco.getImgIds()):
        out["images"] += 1
        labels = np.asarray(Image.open(labels_dir / img["file_name"]))
        if labels.shape != (img["height"], img["width"]):
            out["problems"].append("%s: size %s" % (img["file_name"], labels.shape))
            continue
        seen = np.zeros(labels.shape, np.int32)
        union = {}
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=img["id"])):
            out["annotations"] += 1
            m = coco.annToMask(ann).astype(bool)
            seen += m
            union[ann["category_id"]] = union.get(ann["category_id"], np.zeros_like(m)) | m
            if int(m.sum()) != ann["area"]:
                out["problems"].append("ann %d: area %s vs %d" % (ann["id"], ann["area"], m.sum()))
            box = mask_util.toBbox(ann["segmentation"]).tolist()
            if box != ann["bbox"]:
                out["problems"].append("ann %d: bbox %s vs %s" % (ann["id"], ann["bbox"], box))
            if ann["iscrowd"] != 0:
                out["problems"].append("ann %d: crowd" % ann["id"])
        if seen.max(initial=0) > 1:
            out["problems"].append("%s: masks overlap" % img["file_name"])
        for cat_id in coco.getCatIds():
            want = labels == cat_id
            got = union.get(cat_id, np.zeros_like(want))
            if not np.array_equal(got, want):
                out["problems"].append("%s: category %d differs on %d pixels"
                                       % (img["file_name"], cat_id, int((got != want).sum())))
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()

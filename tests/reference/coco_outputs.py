"""Independent check of segstream's instance outputs with pycocotools and NumPy.

    python coco_outputs.py JSONL INSTANCES_DIR LABELS_DIR PANOPTIC_DIR SEMANTIC_NAMES INSTANCE_NAMES

For every frame: the JSONL line parses and has the documented fields; pycocotools decodes
each mask's RLE; the 16-bit instance-id PNG segstream wrote (the masks it composited) equals
the map painted from the decoded masks, highest score on top; and the panoptic PNG equals
the one built from the label PNG and the decoded masks. Prints a JSON summary.
"""

import json
import pathlib
import sys

import numpy as np
import pycocotools.mask as mask_util
from PIL import Image


def read16(path: pathlib.Path) -> np.ndarray:
    return np.array(Image.open(path)).astype(np.int64)


def main() -> None:
    jsonl, inst_dir, labels_dir, pan_dir = (pathlib.Path(a) for a in sys.argv[1:5])
    semantic = [s.lower() for s in sys.argv[5].split(",")]
    instance = [s.lower() for s in sys.argv[6].split(",")]
    things = {c: semantic.index(n) for c, n in enumerate(instance) if n in semantic}
    frames = instances = 0
    areas = []
    for line in jsonl.read_text().splitlines():
        rec = json.loads(line)
        for key in ("stream", "seq", "pts_ms", "time_ms", "width", "height", "instances"):
            assert key in rec, f"line {frames} has no {key!r}: {line[:200]}"
        h, w = rec["height"], rec["width"]
        name = f"{rec['seq']:06d}.png"
        ids = read16(inst_dir / name)
        assert ids.shape == (h, w), (ids.shape, h, w)
        painted = np.zeros((h, w), np.int64)
        masks = []
        for k, inst in enumerate(rec["instances"]):
            seg = inst["segmentation"]
            assert seg["size"] == [h, w]
            m = mask_util.decode({"size": seg["size"], "counts": seg["counts"].encode()})
            assert m.shape == (h, w)
            assert int(mask_util.area({"size": seg["size"], "counts": seg["counts"].encode()})) == int(m.sum())
            x, y, bw, bh = inst["bbox"]
            assert bw >= 0 and bh >= 0
            assert inst["category"].lower() == instance[inst["category_id"]]
            ys, xs = np.nonzero(m)
            if len(xs):
                # The mask lies within its box (torchvision pastes inside the box, widened
                # by one 28th each side for the padding).
                assert xs.min() >= np.floor(x - bw / 28 - 1) and xs.max() <= np.ceil(x + bw + bw / 28 + 1)
                assert ys.min() >= np.floor(y - bh / 28 - 1) and ys.max() <= np.ceil(y + bh + bh / 28 + 1)
            masks.append((inst["score"], inst.get("id", k + 1), m.astype(bool), inst["category_id"]))
            areas.append(int(m.sum()))
        for score, ident, m, _ in sorted(masks, key=lambda t: t[0]):
            painted[m] = ident
        diff = int((painted != ids).sum())
        assert diff == 0, f"frame {rec['seq']}: {diff} pixels differ from the decoded RLEs"
        # Panoptic: stuff from the label map, things from the masks, void for uncovered things.
        labels = np.array(Image.open(labels_dir / name)).astype(np.int64)
        pan = np.where(np.isin(labels, list(things.values())), 65535, labels * 1000)
        numbers, count = {}, {}
        for k, (score, _, _, cat) in sorted(enumerate(masks), key=lambda t: -t[1][0]):
            if cat in things:
                count[things[cat]] = count.get(things[cat], 0) + 1
                numbers[k] = count[things[cat]]
        for k, (score, _, m, cat) in sorted(enumerate(masks), key=lambda t: t[1][0]):
            if k in numbers:
                pan[m] = things[cat] * 1000 + numbers[k]
        ours = read16(pan_dir / name)
        diff = int((pan != ours).sum())
        assert diff == 0, f"frame {rec['seq']}: panoptic differs on {diff} pixels"
        frames += 1
        instances += len(masks)
    print(json.dumps({"frames": frames, "instances": instances, "nonempty": sum(a > 0 for a in areas)}))


if __name__ == "__main__":
    main()

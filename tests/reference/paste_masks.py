"""Independent reference for mask pasting: torchvision's own `paste_masks_in_image`.

Reads JSON cases {"cases": [{"probs": [m*m floats], "m": 28, "box": [x1, y1, x2, y2],
"width": W, "height": H}, ...]} and writes, per case, the pasted mask thresholded at 0.5
(torchvision's `masks > 0.5`) as a string of '0'/'1', row-major over the whole frame,
and the indices of the cases torchvision raised on (boxes wholly outside the frame).

    python paste_masks.py --cases cases.json --out pasted.json
"""

import argparse
import json

import torch
from torchvision.models.detection.roi_heads import paste_masks_in_image


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    cases = json.load(open(a.cases))["cases"]
    out = []
    failed = []  # cases torchvision raised on
    for c in cases:
        m = c["m"]
        probs = torch.tensor(c["probs"], dtype=torch.float32).reshape(1, 1, m, m)
        box = torch.tensor([c["box"]], dtype=torch.float32)
        try:
            pasted = paste_masks_in_image(probs, box, (c["height"], c["width"]), padding=1)
        except RuntimeError:
            # torchvision cannot slice a box that lies wholly outside the image (its
            # slice bounds go negative); there is nothing to paste.
            pasted = torch.zeros(1, 1, c["height"], c["width"])
            failed.append(len(out))
        bits = (pasted[0, 0] > 0.5).to(torch.uint8).flatten().tolist()
        out.append("".join("1" if b else "0" for b in bits))
    json.dump({"masks": out, "failed": failed}, open(a.out, "w"))


if __name__ == "__main__":
    main()

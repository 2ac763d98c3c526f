"""Writes an image-like test picture (smooth colour fields with sharp-edged shapes) as PNG.

    python make_image.py --width 250 --height 170 --seed 7 --out in.png
"""

import argparse
import pathlib
import sys

from PIL import Image

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "scripts"))
from export_models import synthetic_image  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--width", type=int, required=True)
    ap.add_argument("--height", type=int, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    Image.fromarray(synthetic_image(a.height, a.width, a.seed)).save(a.out)


if __name__ == "__main__":
    main()

"""Independent checks that outputs are whole: Pillow decodes PNGs, Python's json parses lines.

    python outputs.py pngs DIR     -> {"png": N, "unreadable": [...], "other": [...]}
    python outputs.py jsonl FILE   -> {"lines": N, "complete": true, "bad": N}
"""

import json
import pathlib
import sys

from PIL import Image


def main() -> None:
    cmd, path = sys.argv[1], pathlib.Path(sys.argv[2])
    if cmd == "pngs":
        png, unreadable, other = 0, [], []
        for p in sorted(path.iterdir()):
            if p.suffix != ".png":
                other.append(p.name)
                continue
            try:
                with Image.open(p) as im:
                    im.load()
                png += 1
            except Exception:  # noqa: BLE001 - any failure means the file is not whole
                unreadable.append(p.name)
        print(json.dumps({"png": png, "unreadable": unreadable, "other": other}))
    elif cmd == "jsonl":
        data = path.read_bytes()
        lines = data.split(b"\n")
        complete = data.endswith(b"\n") or not data
        bad = 0
        for line in lines[:-1]:
            try:
                json.loads(line)
            except ValueError:
                bad += 1
        print(json.dumps({"lines": len(lines) - 1, "complete": complete, "bad": bad}))
    else:
        raise SystemExit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()

"""Independent reference for video outputs: PyAV (FFmpeg) decodes a file.

    python video.py info FILE            -> {"frames": N, "width": W, "height": H, "format": F}
    python video.py frames FILE DIR      -> DIR/000000.png ... (RGB), as PyAV decodes them
"""

import json
import pathlib
import sys

import av


def main() -> None:
    cmd, path = sys.argv[1], sys.argv[2]
    with av.open(path) as container:
        stream = container.streams.video[0]
        if cmd == "info":
            n = sum(1 for _ in container.decode(stream))
            print(json.dumps({"frames": n, "width": stream.width, "height": stream.height,
                              "format": container.format.name}))
        elif cmd == "frames":
            out = pathlib.Path(sys.argv[3])
            out.mkdir(parents=True, exist_ok=True)
            for i, frame in enumerate(container.decode(stream)):
                frame.to_image().save(out / f"{i:06d}.png")
        else:
            raise SystemExit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()

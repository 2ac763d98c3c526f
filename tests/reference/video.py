"""Independent reference for video outputs: PyAV (FFmpeg) decodes a file.

    python video.py info FILE            -> {"frames": N, "width": W, "height": H, "format": F}
    python video.py frames FILE DIR      -> DIR/000000.png ... (RGB), as PyAV decodes them
    python video.py displayed FILE DIR   -> the same, turned as the file's display matrix says
                                            (FFmpeg's autorotate); prints {"rotation_cw": D}
    python video.py pts FILE             -> [seconds, ...] of every decoded frame
    python video.py tracks FILE          -> {"video_s": S, "audio_s": S, "audio_codec": C,
                                            "video_start": T, "audio_start": T}: each track's
                                            span as decoded (audio: samples / rate)
    python video.py make-rotated FILE    -> writes 5 frames at 320x240 whose display matrix
                                            says "turn 90 degrees clockwise" (as phones do)
    python video.py make-vfr FILE        -> writes 40 frames at 320x240 with a gap and a
                                            change of rate (variable frame rate), H.264 in MP4
    python video.py exact FILE DIR N     -> DIR/000000.png ... of the first N frames of a
                                            4:2:0 file: its YUV planes as decoded, to RGB by
                                            the standard's formula in floats (the matrix and
                                            range the stream states, each chroma sample for
                                            its 2x2 pixels), rounded to bytes once
"""

import fractions

import numpy as np

import json
import pathlib
import sys

import av


def make_vfr(path: str) -> None:
    """30 fps for 20 frames, a 20-frame gap, 30 fps for 10, then 15 fps for 10."""
    out = av.open(path, "w")
    stream = out.add_stream("libx264", rate=30)
    stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
    stream.time_base = fractions.Fraction(1, 90000)
    ticks = list(range(20)) + list(range(40, 50)) + [50 + 2 * i for i in range(10)]
    for k, t in enumerate(ticks):
        image = np.full((240, 320, 3), (k * 6) % 255, np.uint8)
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts, frame.time_base = t * 3000, stream.time_base
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)
    out.close()


def make_rotated(path: str) -> None:
    out = av.open(path, "w")
    stream = out.add_stream("libx264", rate=30)
    stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
    stream.set_display_rotation(-90)  # counterclockwise degrees: -90 is a clockwise turn
    image = np.zeros((240, 320, 3), np.uint8)
    image[:, :, 0] = (np.arange(320) * 255 // 320).astype(np.uint8)
    image[:120, :160, 1] = 255  # a corner that shows which way is up
    for _ in range(5):
        for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)
    out.close()


def tracks(path: str) -> None:
    with av.open(path) as container:
        video = container.streams.video[0]
        times = [f.time for f in container.decode(video)]
        video_start = times[0] if times else None
        rate = video.average_rate or 30
        video_s = (times[-1] - times[0] + 1 / float(rate)) if times else 0.0
    with av.open(path) as container:
        if not container.streams.audio:
            print(json.dumps({"video_s": video_s, "audio_s": None, "audio_codec": None,
                              "video_start": video_start, "audio_start": None}))
            return
        audio = container.streams.audio[0]
        frames = list(container.decode(audio))
        samples = sum(f.samples for f in frames)
        print(json.dumps({"video_s": video_s, "audio_s": samples / audio.rate,
                          "audio_codec": audio.codec_context.name,
                          "video_start": video_start,
                          "audio_start": frames[0].time if frames else None}))


def exact_rgb(frame) -> np.ndarray:
    """One 4:2:0 frame's planes to RGB by the formula (BT.601 or BT.709, limited or full)."""
    planes = frame.to_ndarray(format="yuv420p")  # (H * 3/2, W): Y, then U, then V
    h, w = frame.height, frame.width
    y = planes[:h].astype(np.float64)
    chroma = planes[h:].reshape(2, (h + 1) // 2, (w + 1) // 2).astype(np.float64)
    u, v = (np.repeat(np.repeat(c, 2, axis=0), 2, axis=1)[:h, :w] for c in chroma)
    # FFmpeg's codes: colour space 1 is BT.709 (else BT.601 here); range 2 is full (JPEG).
    kr, kb = (0.2126, 0.0722) if int(frame.colorspace) == 1 else (0.299, 0.114)
    if int(frame.color_range) == 2:
        yy, uu, vv = y, u - 128.0, v - 128.0
    else:
        yy, uu, vv = (y - 16.0) * 255 / 219, (u - 128.0) * 255 / 224, (v - 128.0) * 255 / 224
    r = yy + 2 * (1 - kr) * vv
    b = yy + 2 * (1 - kb) * uu
    g = (yy - kr * r - kb * b) / (1 - kr - kb)
    return np.clip(np.rint(np.stack([r, g, b], axis=-1)), 0, 255).astype(np.uint8)


def main() -> None:
    cmd, path = sys.argv[1], sys.argv[2]
    if cmd == "make-vfr":
        make_vfr(path)
        return
    if cmd == "make-rotated":
        make_rotated(path)
        return
    if cmd == "tracks":
        tracks(path)
        return
    with av.open(path) as container:
        stream = container.streams.video[0]
        if cmd == "info":
            n = sum(1 for _ in container.decode(stream))
            print(json.dumps({"frames": n, "width": stream.width, "height": stream.height,
                              "format": container.format.name}))
        elif cmd == "pts":
            print(json.dumps([float(f.time) for f in container.decode(stream)]))
        elif cmd == "displayed":
            out = pathlib.Path(sys.argv[3])
            out.mkdir(parents=True, exist_ok=True)
            clockwise = 0
            for i, frame in enumerate(container.decode(stream)):
                # av_display_rotation_get is counterclockwise; players turn clockwise by -it.
                clockwise = int(round(-frame.rotation)) % 360
                image = np.rot90(frame.to_ndarray(format="rgb24"), k=-(clockwise // 90))
                av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24") \
                    .to_image().save(out / f"{i:06d}.png")
            print(json.dumps({"rotation_cw": clockwise}))
        elif cmd == "exact":
            out = pathlib.Path(sys.argv[3])
            out.mkdir(parents=True, exist_ok=True)
            for i, frame in enumerate(container.decode(stream)):
                if i == int(sys.argv[4]):
                    break
                av.VideoFrame.from_ndarray(exact_rgb(frame), format="rgb24") \
                    .to_image().save(out / f"{i:06d}.png")
        elif cmd == "frames":
            out = pathlib.Path(sys.argv[3])
            out.mkdir(parents=True, exist_ok=True)
            for i, frame in enumerate(container.decode(stream)):
                frame.to_image().save(out / f"{i:06d}.png")
        else:
            raise SystemExit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Generate the synthetic "driving scene" sample video (assets/sample.mp4).

The scene is drawn procedurally with numpy + Pillow (sky gradient, buildings
with window grids, a perspective road with moving lane dashes, sidewalks,
trees, cars and a pedestrian) and encoded to H.264/MP4 by piping raw RGB
frames into gst-launch-1.0:

    fdsrc ! rawvideoparse ! videoconvert ! x264enc ! h264parse ! mp4mux ! filesink

Usage:
    python scripts/make_sample.py --out assets/sample.mp4 \
        [--width 640 --height 360 --fps 30 --frames 90 --seed 7 --bitrate 900]

Output is deterministic for a given set of arguments (same RGB frames; the
encoded bytes also come out identical with the same GStreamer/x264 build: x264
runs single-threaded and the MP4 header timestamps are zeroed afterwards).
"""
from __future__ import annotations

import argparse
import math
import os
import shutil
import subprocess
import sys
import time

import numpy as np
from PIL import Image, ImageDraw


# ----------------------------------------------------------------------------
# camera / perspective helpers
# ----------------------------------------------------------------------------
class Camera:
    """Pin-hole camera looking down the road (+z), camera height `cam_h` m."""

    def __init__(self, w: int, h: int):
        self.w = w
        self.h = h
        self.cx = w / 2.0
        self.horizon = 0.46 * h
        self.f = 0.9 * w  # focal length in pixels
        self.cam_h = 1.4  # metres above the road

    def project(self, x: float, y: float, z: float) -> tuple[float, float]:
        """World (x right, y up from road, z forward) -> pixel (u, v)."""
        z = max(z, 0.05)
        u = self.cx + self.f * x / z
        v = self.horizon + self.f * (self.cam_h - y) / z
        return u, v

    def scale(self, z: float) -> float:
        """Pixels per metre at depth z."""
        return self.f / max(z, 0.05)


ROAD_HALF = 3.6  # road half width (two lanes of 3.6 m)
WALK_W = 3.0  # sidewalk width
FAR_Z = 400.0
NEAR_Z = 0.8


def ground_quad(cam: Camera, x0: float, x1: float, z0: float, z1: float, y: float = 0.0):
    return [cam.project(x0, y, z0), cam.project(x1, y, z0), cam.project(x1, y, z1), cam.project(x0, y, z1)]


# ----------------------------------------------------------------------------
# static background
# ----------------------------------------------------------------------------
def draw_background(cam: Camera, rng: np.random.Generator) -> Image.Image:
    w, h = cam.w, cam.h
    hz = int(round(cam.horizon))

    # sky: vertical gradient (deep blue -> pale near the horizon) with a soft
    # horizontal variation so it is not perfectly flat.
    yy = np.linspace(0.0, 1.0, hz + 1)[:, None]
    xx = np.linspace(0.0, 1.0, w)[None, :]
    top = np.array([70, 120, 200], np.float32)
    bot = np.array([190, 215, 235], np.float32)
    t = (yy ** 0.8)[..., None]
    sky = top * (1 - t) + bot * t
    sky = sky + (8.0 * np.sin(2 * math.pi * (xx * 1.3 + 0.2)))[..., None] * (1 - t)
    img = np.zeros((h, w, 3), np.float32)
    img[: hz + 1] = np.broadcast_to(sky, (hz + 1, w, 3))
    # ground base colour (asphalt-ish grey, overwritten by road / sidewalk)
    img[hz + 1 :] = np.array([95, 100, 90], np.float32)
    canvas = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")
    d = ImageDraw.Draw(canvas)

    # a couple of clouds
    for _ in range(3):
        cx = rng.uniform(0.05, 0.95) * w
        cy = rng.uniform(0.05, 0.25) * h
        for _k in range(5):
            rx = rng.uniform(0.03, 0.07) * w
            ry = rx * rng.uniform(0.35, 0.55)
            ox = rng.uniform(-0.06, 0.06) * w
            oy = rng.uniform(-0.015, 0.015) * h
            d.ellipse([cx + ox - rx, cy + oy - ry, cx + ox + rx, cy + oy + ry], fill=(236, 240, 245))

    # ---------------- buildings: facades along both sides of the street ------
    palette = [
        (150, 90, 70), (170, 160, 140), (120, 125, 135), (200, 180, 150),
        (110, 80, 70), (160, 150, 120), (90, 100, 115), (185, 120, 90),
    ]
    # distant skyline closing the street at the far end
    x = -60.0
    while x < 60.0:
        bw = rng.uniform(6.0, 14.0)
        bh = rng.uniform(10.0, 40.0)
        col = tuple(int(0.6 * v + 0.4 * 180) for v in palette[int(rng.integers(len(palette)))])
        p0 = cam.project(x, 0.0, 170.0)
        p1 = cam.project(x + bw, bh, 170.0)
        d.rectangle([p0[0], p1[1], p1[0], p0[1]], fill=col)
        x += bw

    blocks = []
    for side in (-1, 1):
        z = 5.0
        while z < 160.0:
            depth = rng.uniform(9.0, 18.0)
            height = rng.uniform(7.0, 20.0)
            col = palette[int(rng.integers(len(palette)))]
            blocks.append((side, z, z + depth, height, col, int(rng.integers(1 << 30))))
            z = z + depth + rng.uniform(0.0, 3.0)
    # painter's order: far blocks first so nearer ones occlude them
    for side, z0, z1, height, col, bseed in sorted(blocks, key=lambda b: -b[1]):
        brng = np.random.default_rng(bseed)
        depth = z1 - z0
        x_face = side * (ROAD_HALF + WALK_W + 0.2)
        # facade parallel to the street (perspective trapezoid)
        a = cam.project(x_face, 0.0, z0)
        b = cam.project(x_face, height, z0)
        c = cam.project(x_face, height, z1)
        e = cam.project(x_face, 0.0, z1)
        d.polygon([a, b, c, e], fill=col)
        # front face toward the camera (side wall visible at z0)
        x_out = side * (ROAD_HALF + WALK_W + 40.0)
        f0 = cam.project(x_out, 0.0, z0)
        f1 = cam.project(x_out, height, z0)
        shade = tuple(int(v * 0.7) for v in col)
        d.polygon([a, b, f1, f0], fill=shade)
        # window grid on the street facade
        win = (60, 75, 95) if brng.random() < 0.7 else (230, 215, 150)
        n_floors = int(height // 3.2)
        n_cols = max(1, int(depth // 2.6))
        for fl in range(n_floors):
            y0 = 1.2 + fl * 3.2
            y1 = y0 + 1.6
            if y1 > height - 0.6:
                break
            for ci in range(n_cols):
                wz0 = z0 + 0.8 + ci * (depth - 1.2) / n_cols
                wz1 = wz0 + 1.2
                if wz1 > z1 - 0.4:
                    break
                q = [cam.project(x_face, y0, wz0), cam.project(x_face, y1, wz0),
                     cam.project(x_face, y1, wz1), cam.project(x_face, y0, wz1)]
                if abs(q[0][0] - q[2][0]) < 0.6:
                    continue
                lit = win if brng.random() < 0.85 else (235, 220, 160)
                d.polygon(q, fill=lit)

    # ---------------- sidewalks + curbs ----------------------------------------
    for side in (-1, 1):
        xa, xb = sorted((side * ROAD_HALF, side * (ROAD_HALF + WALK_W + 0.2)))
        d.polygon(ground_quad(cam, xa, xb, NEAR_Z, FAR_Z, y=0.0), fill=(170, 165, 155))
        xc0, xc1 = sorted((side * ROAD_HALF, side * (ROAD_HALF + 0.25)))
        d.polygon(ground_quad(cam, xc0, xc1, NEAR_Z, FAR_Z, y=0.0), fill=(205, 205, 200))
        # paving joints
        zz = 2.0
        while zz < 80:
            p = cam.project(xa, 0.0, zz)
            q = cam.project(xb, 0.0, zz)
            d.line([p, q], fill=(140, 136, 128), width=1)
            zz += 2.0

    # ---------------- road surface ---------------------------------------------
    d.polygon(ground_quad(cam, -ROAD_HALF, ROAD_HALF, NEAR_Z, FAR_Z), fill=(70, 72, 76))
    # solid white edge lines
    for xe in (-ROAD_HALF + 0.3, ROAD_HALF - 0.45):
        d.polygon(ground_quad(cam, xe, xe + 0.15, NEAR_Z, FAR_Z), fill=(225, 225, 220))

    # ---------------- trees on the sidewalks -----------------------------------
    trees = []
    for side in (-1, 1):
        z = rng.uniform(8.0, 11.0)
        while z < 90.0:
            trees.append((side * (ROAD_HALF + 1.2), z))
            z += rng.uniform(9.0, 15.0)
    trees.sort(key=lambda t: -t[1])  # far to near (painter's order)
    for tx, tz in trees:
        s = cam.scale(tz)
        base = cam.project(tx, 0.0, tz)
        trunk_h = 2.4 * s
        trunk_w = max(1.0, 0.3 * s)
        d.rectangle([base[0] - trunk_w / 2, base[1] - trunk_h, base[0] + trunk_w / 2, base[1]], fill=(95, 65, 40))
        r = 1.5 * s
        cy = base[1] - trunk_h - 0.6 * r
        g = int(rng.integers(0, 40))
        for ox, oy, rr, cc in ((0.0, 0.0, 1.0, (45 + g, 120 + g, 50)),
                               (-0.55, 0.3, 0.7, (35 + g, 100 + g, 40)),
                               (0.55, 0.25, 0.72, (55 + g, 135 + g, 55))):
            d.ellipse([base[0] + ox * r - rr * r, cy + oy * r - rr * r,
                       base[0] + ox * r + rr * r, cy + oy * r + rr * r], fill=cc)
    return canvas


# ----------------------------------------------------------------------------
# dynamic objects
# ----------------------------------------------------------------------------
def draw_lane_dashes(d: ImageDraw.ImageDraw, cam: Camera, travelled: float):
    """Centre-line dashes (3 m dash, 6 m gap) moving toward the camera."""
    period, dash = 9.0, 3.0
    off = travelled % period
    z = NEAR_Z - off
    while z < 120.0:
        z0, z1 = max(z, NEAR_Z), z + dash
        if z1 > NEAR_Z:
            d.polygon(ground_quad(cam, -0.08, 0.08, z0, z1), fill=(240, 235, 225))
        z += period


def draw_car_rear(d: ImageDraw.ImageDraw, cam: Camera, x: float, z: float, body, facing_us: bool):
    """Car seen from behind / front at lateral position x, depth z."""
    s = cam.scale(z)
    cw, ch = 1.8, 1.45
    left, _ = cam.project(x - cw / 2, 0.0, z)
    right, ground = cam.project(x + cw / 2, 0.0, z)
    top = ground - ch * s
    # shadow
    d.ellipse([left - 0.1 * s, ground - 0.12 * s, right + 0.1 * s, ground + 0.1 * s], fill=(40, 40, 42))
    # wheels
    ww, wh = 0.28 * s, 0.45 * s
    d.rectangle([left + 0.05 * s, ground - wh, left + 0.05 * s + ww, ground], fill=(20, 20, 20))
    d.rectangle([right - 0.05 * s - ww, ground - wh, right - 0.05 * s, ground], fill=(20, 20, 20))
    # lower body
    d.rectangle([left, ground - 0.95 * s, right, ground - 0.25 * s], fill=body)
    # cabin (trapezoid)
    d.polygon([(left + 0.12 * s, ground - 0.95 * s), (right - 0.12 * s, ground - 0.95 * s),
               (right - 0.3 * s, top), (left + 0.3 * s, top)], fill=tuple(int(v * 0.85) for v in body))
    # window
    d.polygon([(left + 0.22 * s, ground - 1.0 * s), (right - 0.22 * s, ground - 1.0 * s),
               (right - 0.36 * s, top + 0.06 * s), (left + 0.36 * s, top + 0.06 * s)], fill=(45, 60, 75))
    # lights
    lc = (255, 245, 200) if facing_us else (210, 30, 30)
    lh = 0.18 * s
    d.rectangle([left + 0.08 * s, ground - 0.8 * s, left + 0.4 * s, ground - 0.8 * s + lh], fill=lc)
    d.rectangle([right - 0.4 * s, ground - 0.8 * s, right - 0.08 * s, ground - 0.8 * s + lh], fill=lc)
    # plate
    pc = (cam.project(x, 0, z)[0])
    d.rectangle([pc - 0.25 * s, ground - 0.55 * s, pc + 0.25 * s, ground - 0.42 * s], fill=(235, 235, 225))


def draw_car_side(d: ImageDraw.ImageDraw, cam: Camera, x: float, z: float, body, heading: int):
    """Car seen from the side, centred at lateral x, depth z, driving in +x (heading=1) or -x."""
    s = cam.scale(z)
    L, H = 4.3, 1.45
    cx, ground = cam.project(x, 0.0, z)
    x0, x1 = cx - L / 2 * s, cx + L / 2 * s
    d.ellipse([x0 - 0.1 * s, ground - 0.1 * s, x1 + 0.1 * s, ground + 0.08 * s], fill=(40, 40, 42))
    # body
    d.rounded_rectangle([x0, ground - 0.95 * s, x1, ground - 0.28 * s], radius=max(1, int(0.18 * s)), fill=body)
    # cabin
    fr = 1 if heading > 0 else -1
    c0 = cx - fr * 1.3 * s
    c1 = cx + fr * 0.9 * s
    c_lo, c_hi = sorted((c0, c1))
    d.polygon([(c_lo, ground - 0.95 * s), (c_hi, ground - 0.95 * s),
               (c_hi - (0.45 * s if fr > 0 else 0.2 * s), ground - H * s),
               (c_lo + (0.2 * s if fr > 0 else 0.45 * s), ground - H * s)], fill=tuple(int(v * 0.85) for v in body))
    # side windows
    d.polygon([(c_lo + 0.12 * s, ground - 1.0 * s), (c_hi - 0.12 * s, ground - 1.0 * s),
               (c_hi - (0.48 * s if fr > 0 else 0.28 * s), ground - (H - 0.07) * s),
               (c_lo + (0.28 * s if fr > 0 else 0.48 * s), ground - (H - 0.07) * s)], fill=(45, 60, 75))
    d.line([(cx - fr * 0.2 * s, ground - 1.0 * s), (cx - fr * 0.2 * s, ground - (H - 0.07) * s)],
           fill=tuple(int(v * 0.85) for v in body), width=max(1, int(0.08 * s)))
    # wheels
    r = 0.33 * s
    for wx in (cx - 1.35 * s, cx + 1.35 * s):
        d.ellipse([wx - r, ground - 2 * r, wx + r, ground], fill=(20, 20, 20))
        d.ellipse([wx - 0.5 * r, ground - 1.5 * r, wx + 0.5 * r, ground - 0.5 * r], fill=(150, 150, 155))
    # head / tail lights
    hx = x1 if fr > 0 else x0
    tx = x0 if fr > 0 else x1
    d.rectangle([hx - 0.15 * s, ground - 0.85 * s, hx + 0.0 * s, ground - 0.7 * s] if fr > 0 else
                [hx, ground - 0.85 * s, hx + 0.15 * s, ground - 0.7 * s], fill=(255, 245, 200))
    d.rectangle([tx, ground - 0.85 * s, tx + 0.12 * s, ground - 0.7 * s] if fr > 0 else
                [tx - 0.12 * s, ground - 0.85 * s, tx, ground - 0.7 * s], fill=(210, 30, 30))


def draw_pedestrian(d: ImageDraw.ImageDraw, cam: Camera, x: float, z: float, phase: float):
    s = cam.scale(z)
    fx, ground = cam.project(x, 0.0, z)
    hgt = 1.75 * s
    hip = ground - 0.9 * s
    shoulder = ground - 1.45 * s
    swing = 0.28 * s * math.sin(phase)
    lw = max(2, int(0.14 * s))
    # legs
    d.line([(fx, hip), (fx + swing, ground)], fill=(40, 45, 70), width=lw)
    d.line([(fx, hip), (fx - swing, ground)], fill=(35, 40, 60), width=lw)
    # torso
    d.rounded_rectangle([fx - 0.2 * s, shoulder, fx + 0.2 * s, hip + 0.05 * s], radius=max(1, int(0.06 * s)),
                        fill=(180, 50, 50))
    # arms
    d.line([(fx, shoulder + 0.05 * s), (fx - swing * 0.8, hip + 0.05 * s)], fill=(160, 45, 45), width=max(1, lw - 1))
    d.line([(fx, shoulder + 0.05 * s), (fx + swing * 0.8, hip + 0.05 * s)], fill=(160, 45, 45), width=max(1, lw - 1))
    # head
    hr = 0.13 * s
    hy = ground - hgt + hr
    d.ellipse([fx - hr, hy - hr, fx + hr, hy + hr], fill=(225, 185, 150))
    d.chord([fx - hr, hy - hr, fx + hr, hy + hr], 180, 360, fill=(60, 40, 30))


def render_frames(width: int, height: int, fps: int, frames: int, seed: int):
    """Yield `frames` uint8 HxWx3 RGB arrays."""
    rng = np.random.default_rng(seed)
    cam = Camera(width, height)
    bg = draw_background(cam, rng)
    speed = 9.0  # our speed in m/s (lane dashes / oncoming car)
    colours = [(200, 40, 40), (40, 90, 170), (230, 230, 235), (30, 30, 35), (210, 170, 40)]
    c_cross = colours[int(rng.integers(len(colours)))]
    c_onc = colours[(colours.index(c_cross) + 1 + int(rng.integers(len(colours) - 1))) % len(colours)]
    c_lead = (90, 140, 90)
    for i in range(frames):
        t = i / fps
        im = bg.copy()
        d = ImageDraw.Draw(im)
        draw_lane_dashes(d, cam, speed * t)
        objs = []
        # car ahead in our lane, slowly pulling away
        objs.append((24.0 + 2.0 * t, lambda d, z: draw_car_rear(d, cam, 1.8, z, c_lead, facing_us=False)))
        # oncoming car in the left lane (closing speed: ours + its own)
        z_onc = 42.0 - (speed + 7.0) * t
        if z_onc > 1.2:
            objs.append((z_onc, lambda d, z: draw_car_rear(d, cam, -1.8, z, c_onc, facing_us=True)))
        # car crossing the street at an intersection ~15 m ahead (it stays at
        # a roughly constant depth because we slow down for it)
        x_cross = -14.0 + 9.5 * t
        objs.append((15.0, lambda d, z, xc=x_cross: draw_car_side(d, cam, xc, z, c_cross, heading=1)))
        # pedestrian walking on the right sidewalk toward the camera
        z_ped = 14.0 - 1.3 * t
        objs.append((z_ped, lambda d, z, ph=t * 2 * math.pi * 1.8: draw_pedestrian(d, cam, ROAD_HALF + 0.9, z, ph)))
        for z, fn in sorted(objs, key=lambda o: -o[0]):
            fn(d, z)
        yield np.asarray(im, dtype=np.uint8)


# ----------------------------------------------------------------------------
# encoding
# ----------------------------------------------------------------------------
def gst_pipeline(out: str, width: int, height: int, fps: int, bitrate: int) -> list[str]:
    return [
        "gst-launch-1.0", "-q", "-e",
        "fdsrc", "fd=0", "blocksize=%d" % (width * height * 3), "!",
        "rawvideoparse", "format=rgb", "width=%d" % width, "height=%d" % height,
        "framerate=%d/1" % fps, "!",
        "videoconvert", "!", "video/x-raw,format=I420", "!",
        "x264enc", "speed-preset=medium", "tune=zerolatency", "bitrate=%d" % bitrate,
        "key-int-max=%d" % (2 * fps), "threads=1", "!",
        "video/x-h264,profile=high", "!",
        "h264parse", "!", "mp4mux", "faststart=true", "!",
        "filesink", "location=%s" % out,
    ]


def _zero_mp4_times(path: str) -> int:
    """Set creation/modification times in mvhd/tkhd/mdhd boxes to 0.

    mp4mux stamps the current wall-clock time into these headers; zeroing them
    makes the output byte-for-byte reproducible. Returns the number of boxes patched.
    """
    with open(path, "rb") as fh:
        data = bytearray(fh.read())
    containers = {b"moov", b"trak", b"mdia"}
    patched = 0

    def walk(start: int, end: int) -> None:
        nonlocal patched
        pos = start
        while pos + 8 <= end:
            size = int.from_bytes(data[pos:pos + 4], "big")
            kind = bytes(data[pos + 4:pos + 8])
            hdr = 8
            if size == 1:
                size = int.from_bytes(data[pos + 8:pos + 16], "big")
                hdr = 16
            elif size == 0:
                size = end - pos
            if size < hdr or pos + size > end:
                return
            body = pos + hdr
            if kind in containers:
                walk(body, pos + size)
            elif kind in (b"mvhd", b"tkhd", b"mdhd"):
                n = 8 if data[body] == 1 else 4  # version 1 uses 64-bit times
                data[body + 4:body + 4 + 2 * n] = bytes(2 * n)
                patched += 1
            pos += size

    walk(0, len(data))
    with open(path, "wb") as fh:
        fh.write(data)
    return patched


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="assets/sample.mp4")
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=360)
    ap.add_argument("--fps", type=int, default=30)
    ap.add_argument("--frames", type=int, default=90)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--bitrate", type=int, default=900, help="x264 bitrate in kbit/s")
    ap.add_argument("--png", default=None, help="also save frame --png-frame as PNG here")
    ap.add_argument("--png-frame", type=int, default=0)
    args = ap.parse_args(argv)

    if args.width % 2 or args.height % 2:
        ap.error("width and height must be even (I420)")
    if shutil.which("gst-launch-1.0") is None:
        print("error: gst-launch-1.0 not found", file=sys.stderr)
        return 1
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tmp = args.out + ".tmp.mp4"
    cmd = gst_pipeline(tmp, args.width, args.height, args.fps, args.bitrate)
    t0 = time.time()
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE)
    try:
        for i, fr in enumerate(render_frames(args.width, args.height, args.fps, args.frames, args.seed)):
            if args.png and i == args.png_frame:
                Image.fromarray(fr).save(args.png)
            proc.stdin.write(np.ascontiguousarray(fr).tobytes())
        proc.stdin.close()
    except BrokenPipeError:
        pass
    rc = proc.wait()
    if rc != 0:
        print("error: gst-launch-1.0 exited with %d" % rc, file=sys.stderr)
        if os.path.exists(tmp):
            os.remove(tmp)
        return 1
    _zero_mp4_times(tmp)
    os.replace(tmp, args.out)
    print("wrote %s: %dx%d, %d frames @ %d fps, %d bytes in %.1fs"
          % (args.out, args.width, args.height, args.frames, args.fps, os.path.getsize(args.out), time.time() - t0))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Independent reference for semantic segmentation: ONNX Runtime's Python API.

Reads a segstream model config, applies the pre-processing it documents with NumPy and
PyTorch (not segstream's code), runs the model with onnxruntime, maps the scores back to
the image (bilinear, half-pixel centres) and takes the argmax. Writes an 8-bit label PNG.

    python ort_semantic.py --config configs/x.toml --image in.png --out ref.png
        [--image in2.png --out ref2.png ...]   (one session, each image in turn)
"""

import argparse
import json
import math
import pathlib
import tomllib

import numpy as np
import onnxruntime as ort
import torch
import torch.nn.functional as F
from PIL import Image


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True, type=pathlib.Path)
    ap.add_argument("--image", required=True, type=pathlib.Path, action="append")
    ap.add_argument("--out", required=True, type=pathlib.Path, action="append")
    ap.add_argument("--openvino", metavar="PRECISION", choices=["FP32", "BF16"],
                    help="run on ONNX Runtime's OpenVINO plugin EP (CPU) at this precision")
    ap.add_argument("--openvino-library", type=pathlib.Path,
                    help="the OpenVINO plugin library (libonnxruntime_providers_openvino_plugin.so)")
    args = ap.parse_args()
    if len(args.image) != len(args.out):
        raise SystemExit("give one --out for each --image")

    cfg = tomllib.loads(args.config.read_text())
    onnx_path = (args.config.parent / cfg["onnx"]).resolve()
    if args.openvino:
        ort.register_execution_provider_library("OpenVINO", str(args.openvino_library))
        so = ort.SessionOptions()
        devices = [d for d in ort.get_ep_devices() if d.ep_name == "OpenVINOExecutionProvider"
                   and d.device.type == ort.OrtHardwareDeviceType.CPU]
        hint = {"FP32": "f32", "BF16": "bf16"}[args.openvino]
        so.add_provider_for_devices(devices, {
            "load_config": json.dumps({"CPU": {"INFERENCE_PRECISION_HINT": hint}})})
        session = ort.InferenceSession(str(onnx_path), so)
    else:
        session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    for image, out_path in zip(args.image, args.out):
        segment(cfg, session, image, out_path)


def segment(cfg: dict, session: ort.InferenceSession, image: pathlib.Path,
            out_path: pathlib.Path) -> None:
    inp, out = cfg["input"], cfg["output"]
    rgb = np.asarray(Image.open(image).convert("RGB"), dtype=np.float32)
    h, w = rgb.shape[:2]
    order = [0, 1, 2] if inp.get("color", "RGB") == "RGB" else [2, 1, 0]
    x = rgb[..., order] / inp.get("scale", 255.0)
    x = (x - np.array(inp.get("mean", [0, 0, 0]), np.float32)) / np.array(
        inp.get("std", [1, 1, 1]), np.float32
    )
    t = torch.from_numpy(x.astype(np.float32)).permute(2, 0, 1)[None]  # NCHW

    size = inp["size"]
    if size["policy"] == "pad":
        m = size.get("multiple_of", 1)
        mh, mw = math.ceil(h / m) * m, math.ceil(w / m) * m
        t = F.pad(t, (0, mw - w, 0, mh - h))  # zeros after normalization
    elif size["policy"] == "stretch":
        mh, mw = size["height"], size["width"]
        t = F.interpolate(t, size=(mh, mw), mode="bilinear", align_corners=False)
    else:
        raise SystemExit(f"unknown size policy {size['policy']}")

    layout = inp["layout"]
    feed = t if layout == "NCHW" else t.permute(0, 2, 3, 1)
    model_input = next(i for i in session.get_inputs() if i.name == inp["name"])
    feed = feed.numpy()
    if model_input.type == "tensor(float16)":  # FP16 model: cast the normalized input
        feed = feed.astype(np.float16)
    batch = model_input.shape[0] if model_input.shape else None
    replicated = isinstance(batch, int) and batch > 1  # fixed batch B > 1: B copies, use item 0
    if replicated:
        feed = np.repeat(feed, batch, axis=0)
    result = session.run([out["name"]], {inp["name"]: feed})[0]
    if replicated:
        result = result[:1]

    if out["kind"] in ("logits", "probabilities"):
        scores = torch.from_numpy(result.astype(np.float32))
        if size["policy"] == "pad":
            if scores.shape[-2:] != (mh, mw):
                scores = F.interpolate(scores, size=(mh, mw), mode="bilinear", align_corners=False)
            scores = scores[..., :h, :w]
        else:
            scores = F.interpolate(scores, size=(h, w), mode="bilinear", align_corners=False)
        labels = np.argmax(scores[0].numpy(), axis=0)  # first maximum wins ties
    elif out["kind"] == "labels":
        idx = torch.from_numpy(result.astype(np.int64)).reshape(1, 1, *result.shape[-2:]).float()
        if size["policy"] == "pad":
            idx = F.interpolate(idx, size=(mh, mw), mode="nearest")[..., :h, :w]
        else:
            idx = F.interpolate(idx, size=(h, w), mode="nearest")
        labels = idx[0, 0].numpy().astype(np.int64)
    else:
        raise SystemExit(f"not a semantic output kind: {out['kind']}")

    Image.fromarray(labels.astype(np.uint8), mode="L").save(out_path)
    counts = np.bincount(labels.ravel(), minlength=1)
    print(json.dumps({"classes_present": int((counts > 0).sum()), "largest_share": float(counts.max() / labels.size)}))


if __name__ == "__main__":
    main()

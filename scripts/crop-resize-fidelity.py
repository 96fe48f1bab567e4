#!/usr/bin/env python3
"""How close are ingest's crops of people filmed large to the resize re-id networks train with?

For every crop a demo run (make demo) shrank (its box taller than the 256-pixel crop), cut the same
padded region out of the source frame and resize it three ways to 128x256: OpenCV INTER_LINEAR,
OpenCV INTER_AREA, and PIL's antialiased bilinear (what torchreid's transforms do). Embed each with
the shared OSNet x0.25 ONNX export through OpenCV DNN and print the cosines to the PIL one.

usage: scripts/crop-resize-fidelity.py DATA_DIR [SHARED_DIR]   (DATA_DIR: the demo's ./data)
"""
import glob, json, os, statistics, sys

import cv2
import numpy as np
from PIL import Image

data = sys.argv[1]
shared = sys.argv[2] if len(sys.argv) > 2 else os.environ.get("REID_SHARED", "../shared")
net = cv2.dnn.readNetFromONNX(os.path.join(shared, "models/reid/osnet_x0_25_msmt17.onnx"))
mean, std = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)


def embed(rgb):
    net.setInput(((rgb.astype(np.float32) / 255 - mean) / std).transpose(2, 0, 1)[None])
    feature = net.forward()[0]
    return feature / np.linalg.norm(feature)


def crop_record(path):
    """The metadata a stored crop carries in its JPEG comment (cropstore/format.go), or beside it
    in <id>.json in a store written before that."""
    legacy = path[:-len(".jpg")] + ".json"
    if os.path.exists(legacy):
        return json.load(open(legacy))
    data, at = open(path, "rb").read(), 2
    while at + 4 <= len(data) and data[at] == 0xFF and (data[at + 1] == 0xFE or 0xE0 <= data[at + 1] <= 0xEF):
        end = at + 2 + int.from_bytes(data[at + 2:at + 4], "big")
        text = data[at + 4:end]
        if data[at + 1] == 0xFE and text.startswith(b"reid.CropRecord/1\n"):
            return json.loads(text[len(b"reid.CropRecord/1\n"):])
        at = end
    raise ValueError(f"{path}: no crop metadata")


def measure(camera, video):
    records = [crop_record(f) for f in sorted(glob.glob(f"{data}/crops/{camera}/*/*.jpg"))]
    records = [r for r in records if r["box"]["h"] > 256]
    if not records:
        return
    frames, wanted = {}, {r["frame"] for r in records}
    capture, index = cv2.VideoCapture(video), 0
    while wanted:
        ok, frame = capture.read()
        if not ok:
            break
        if index in wanted:
            frames[index] = frame
            wanted.discard(index)
        index += 1
    cosines = {"INTER_LINEAR": [], "INTER_AREA": []}
    for r in records:
        frame = frames.get(r["frame"])
        if frame is None:
            continue
        box = r["box"]
        pad_x, pad_y = box["w"] * 0.05, box["h"] * 0.05  # crops.padding
        x1, y1 = max(0, int(np.floor(box["x"] - pad_x))), max(0, int(np.floor(box["y"] - pad_y)))
        x2 = min(frame.shape[1], int(np.ceil(box["x"] + box["w"] + pad_x)))
        y2 = min(frame.shape[0], int(np.ceil(box["y"] + box["h"] + pad_y)))
        region = cv2.cvtColor(frame[y1:y2, x1:x2], cv2.COLOR_BGR2RGB)
        reference = embed(np.asarray(Image.fromarray(region).resize((128, 256), Image.BILINEAR)))
        for name in cosines:
            resized = cv2.resize(region, (128, 256), interpolation=getattr(cv2, name))
            cosines[name].append(float(embed(resized) @ reference))
    heights = [r["box"]["h"] for r in records]
    print(f"{camera}: {len(cosines['INTER_AREA'])} shrunk crops, median box height {statistics.median(heights)}")
    for name, values in cosines.items():
        print(f"  {name:12s} cosine to PIL antialiased: median {statistics.median(values):.4f}, 10th percentile {np.percentile(values, 10):.4f}")


measure("lobby", os.path.join(shared, "video/one-by-one-person-detection.mp4"))
measure("hall", os.path.join(data, "synth-video/camera02.avi"))

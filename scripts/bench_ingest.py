#!/usr/bin/python3
"""Reference ingest pipeline in Debian's python3-opencv, for side-by-side benchmarks with
`reid ingest`: the same steps with the same model, thresholds and defaults.

decode (cv2.VideoCapture, FFmpeg) -> letterbox (square, or with --fit-input shaped to the frame as
detector.InputFor does) -> cv2.dnn Yolo-Fastest body -> decode yolo rows
-> size/aspect filter -> greedy NMS -> SORT tracker (constant-velocity Kalman, IoU, Hungarian
via scipy) -> per-track rate limit -> padded crop resized to 128x256 -> JPEG -> crop store files
(jpg + json, temp file, fsync, rename) written on a writer thread.

Prints one JSON object: frames, detections, crops, tracks, seconds, fps.
"""
import argparse
import json
import os
import queue
import tempfile
import threading
import time

import cv2
import numpy as np
from scipy.optimize import linear_sum_assignment

# Defaults of config.Default() in the Go code.
CONFIDENCE, NMS_IOU = 0.5, 0.45
MIN_WIDTH, MIN_HEIGHT, MIN_ASPECT, MAX_ASPECT = 12, 32, 1.0, 5.0
TRACK_IOU, MAX_AGE, MIN_HITS = 0.3, 5, 2
CROP_W, CROP_H, JPEG_QUALITY, MIN_INTERVAL, PADDING = 128, 256, 90, 0.3, 0.05
SIZE = 320


def input_for(fw, fh, size):
    """The network input detector.InputFor gives a frame (config detector.fit_input): long side
    size, short side the scaled frame's rounded up to a multiple of 32."""
    scale = min(size / fw, size / fh)

    def round_up(side):
        return min((max(int(side * scale + 0.5), 1) + 31) // 32 * 32, size)
    return round_up(fw), round_up(fh)


def iou_matrix(a, b):
    """IoU between every box of a (n,4) and b (m,4), boxes as x1,y1,x2,y2."""
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def nms(boxes, scores, threshold):
    order = np.argsort(-scores, kind="stable")
    keep = []
    for i in order:
        if keep and iou_matrix(boxes[i:i + 1], boxes[keep]).max() > threshold:
            continue
        keep.append(i)
    return keep


F = np.eye(7)
F[0, 4] = F[1, 5] = F[2, 6] = 1
H = np.eye(4, 7)
R = np.diag([1.0, 1, 10, 10])
Q = np.diag([1.0, 1, 1, 1, 0.01, 0.01, 0.0001])
P0 = np.diag([10.0, 10, 10, 10, 10000, 10000, 10000])


def to_z(box):
    w, h = box[2] - box[0], box[3] - box[1]
    return np.array([box[0] + w / 2, box[1] + h / 2, w * h, w / max(h, 1e-6)])


class Track:
    def __init__(self, track_id, box):
        self.id, self.hits, self.unmatched = track_id, 1, 0
        self.x = np.zeros(7)
        self.x[:4] = to_z(box)
        self.P = P0.copy()

    def predict(self):
        if self.x[2] + self.x[6] <= 0:
            self.x[6] = 0
        self.x = F @ self.x
        self.P = F @ self.P @ F.T + Q
        s, r = self.x[2], self.x[3]
        if s <= 0 or r <= 0:
            return None
        w = np.sqrt(s * r)
        h = s / w
        return np.array([self.x[0] - w / 2, self.x[1] - h / 2, self.x[0] + w / 2, self.x[1] + h / 2])

    def update(self, box):
        y = to_z(box) - H @ self.x
        S = H @ self.P @ H.T + R
        K = self.P @ H.T @ np.linalg.inv(S)
        self.x = self.x + K @ y
        self.P = (np.eye(7) - K @ H) @ self.P


class Sort:
    def __init__(self):
        self.tracks, self.last_id = [], 0

    def update(self, boxes):
        live, predicted = [], []
        for t in self.tracks:
            p = t.predict()
            if p is not None:
                live.append(t)
                predicted.append(p)
        self.tracks = live
        matched_track = [-1] * len(boxes)
        if len(boxes) and live:
            ious = iou_matrix(np.array(boxes), np.array(predicted))
            rows, cols = linear_sum_assignment(-ious)
            for i, j in zip(rows, cols):
                if ious[i, j] >= TRACK_IOU:
                    matched_track[i] = j
        matched = [False] * len(live)
        out, started = [], []
        for i, box in enumerate(boxes):
            j = matched_track[i]
            if j >= 0:
                t = live[j]
                matched[j] = True
                t.update(box)
                t.hits += 1
                t.unmatched = 0
            else:
                self.last_id += 1
                t = Track(self.last_id, box)
                started.append(t)
            out.append((t.id, t.hits >= MIN_HITS))
        kept = []
        for j, t in enumerate(live):
            if not matched[j]:
                t.unmatched += 1
            if t.unmatched <= MAX_AGE:
                kept.append(t)
        self.tracks = kept + started
        return out


def write_atomic(path, data):
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, path)


def writer(q, root):
    while True:
        item = q.get()
        if item is None:
            return
        name, jpeg, meta = item
        write_atomic(os.path.join(root, name + ".jpg"), jpeg)
        write_atomic(os.path.join(root, name + ".json"), json.dumps(meta).encode())


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--source", required=True)
    parser.add_argument("--models", required=True, help="directory of the yolo-fastest files")
    parser.add_argument("--out", required=True, help="crop directory")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--fit-input", action="store_true", help="network input shaped to the frame (detector.fit_input)")
    args = parser.parse_args()
    cv2.setNumThreads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    net = cv2.dnn.readNet(os.path.join(args.models, "yolo-fastest-1.1_body.weights"),
                          os.path.join(args.models, "yolo-fastest-1.1_body.cfg"))
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    outputs = [net.getLayerNames()[i - 1] for i in np.array(net.getUnconnectedOutLayers()).flatten()]

    q = queue.Queue(maxsize=64)
    thread = threading.Thread(target=writer, args=(q, args.out))
    thread.start()
    start = time.perf_counter()
    cap = cv2.VideoCapture(args.source, cv2.CAP_FFMPEG)
    if not cap.isOpened():
        raise SystemExit("cannot open " + args.source)
    tracker = Sort()
    last_crop, seen_tracks = {}, set()
    frames = detections = crops = 0
    canvas = None
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        index = frames
        stream_time = cap.get(cv2.CAP_PROP_POS_MSEC) / 1000
        fh, fw = frame.shape[:2]
        iw, ih = input_for(fw, fh, SIZE) if args.fit_input else (SIZE, SIZE)
        scale = min(iw / fw, ih / fh)
        sw, sh = min(max(int(fw * scale + 0.5), 1), iw), min(max(int(fh * scale + 0.5), 1), ih)
        px, py = (iw - sw) // 2, (ih - sh) // 2
        if canvas is None:
            canvas = np.full((ih, iw, 3), 127, np.uint8)
        canvas[py:py + sh, px:px + sw] = cv2.resize(frame, (sw, sh), interpolation=cv2.INTER_LINEAR)
        net.setInput(cv2.dnn.blobFromImage(canvas, 1 / 255.0, (iw, ih), (0, 0, 0), swapRB=True, crop=False))
        rows = np.concatenate([o.reshape(-1, o.shape[-1]) for o in net.forward(outputs)])
        rows = rows[rows[:, 4] >= CONFIDENCE]
        scores = rows[:, 5:].max(axis=1) if len(rows) else np.zeros(0)
        rows, scores = rows[scores >= CONFIDENCE], scores[scores >= CONFIDENCE]
        cx, cy, w, h = rows[:, 0] * iw, rows[:, 1] * ih, rows[:, 2] * iw, rows[:, 3] * ih
        boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
        boxes[:, [0, 2]] = np.clip((boxes[:, [0, 2]] - px) / scale, 0, fw)
        boxes[:, [1, 3]] = np.clip((boxes[:, [1, 3]] - py) / scale, 0, fh)
        bw, bh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        ok = (bw > 0) & (bh > 0) & (bw >= MIN_WIDTH) & (bh >= MIN_HEIGHT)
        aspect = bh / np.maximum(bw, 1e-9)
        ok &= (aspect >= MIN_ASPECT) & (aspect <= MAX_ASPECT)
        boxes, scores = boxes[ok], scores[ok]
        keep = nms(boxes, scores, NMS_IOU)
        boxes, scores = boxes[keep], scores[keep]
        frames += 1
        detections += len(boxes)
        for i, (track_id, confirmed) in enumerate(tracker.update(list(boxes))):
            if not confirmed:
                continue
            last = last_crop.get(track_id)
            if last is not None and stream_time - last < MIN_INTERVAL - 1e-9:
                continue
            x1, y1, x2, y2 = boxes[i]
            padx, pady = (x2 - x1) * PADDING, (y2 - y1) * PADDING
            rx1, ry1 = max(int(np.floor(x1 - padx)), 0), max(int(np.floor(y1 - pady)), 0)
            rx2, ry2 = min(int(np.ceil(x2 + padx)), fw), min(int(np.ceil(y2 + pady)), fh)
            if rx2 - rx1 < 2 or ry2 - ry1 < 2:
                continue
            # As ingest: area averaging when the region shrinks on both sides, else bilinear.
            shrinks = rx2 - rx1 > CROP_W and ry2 - ry1 > CROP_H
            crop = cv2.resize(frame[ry1:ry2, rx1:rx2], (CROP_W, CROP_H),
                              interpolation=cv2.INTER_AREA if shrinks else cv2.INTER_LINEAR)
            ok, jpeg = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            seen_tracks.add(track_id)
            last_crop[track_id] = stream_time
            meta = {"camera": "py", "frame": index, "track": track_id, "score": float(scores[i]),
                    "box": {"x": int(round(x1)), "y": int(round(y1)), "w": int(round(x2 - x1)), "h": int(round(y2 - y1))}}
            q.put(("py_%06d_%d" % (index, i), jpeg.tobytes(), meta))
            crops += 1
    q.put(None)
    thread.join()
    seconds = time.perf_counter() - start
    print(json.dumps({"frames": frames, "detections": detections, "crops": crops, "tracks": len(seen_tracks),
                      "seconds": seconds, "fps": frames / seconds}))


if __name__ == "__main__":
    main()

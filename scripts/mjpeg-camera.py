#!/usr/bin/python3
"""A live camera for trying reid on live video without one: serves a video file, looped, as an IP
camera's multipart MJPEG stream over HTTP, paced at a frame rate, for a while.

usage: mjpeg-camera.py VIDEO [--fps 25] [--seconds 60] [--port 8554]
then a camera with source http://127.0.0.1:8554/camera.mjpg

Each connection gets its own stream from the first frame; after --seconds the stream ends, as a
camera that goes offline does.
"""
import argparse
import http.server
import socketserver
import time

import cv2


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("video")
    parser.add_argument("--fps", type=float, default=25)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--port", type=int, default=8554)
    args = parser.parse_args()

    capture = cv2.VideoCapture(args.video)
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(cv2.imencode(".jpg", frame)[1].tobytes())
    if not frames:
        raise SystemExit(f"{args.video}: no frames")

    class Camera(http.server.BaseHTTPRequestHandler):
        def log_message(self, *_):
            pass

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            self.end_headers()
            start, sent = time.time(), 0
            while time.time() - start < args.seconds:
                jpeg = frames[sent % len(frames)]
                sent += 1
                try:
                    self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%s\r\n" % (len(jpeg), jpeg))
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    return  # the client went away
                time.sleep(max(0.0, start + sent / args.fps - time.time()))

    socketserver.ThreadingTCPServer.allow_reuse_address = True
    with socketserver.ThreadingTCPServer(("127.0.0.1", args.port), Camera) as server:
        print(f"http://127.0.0.1:{args.port}/camera.mjpg: {len(frames)} frames at {args.fps} frames/s", flush=True)
        server.serve_forever()


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""Minimal RTSP server for the camera tests.

Usage: rtsp_server.py PORT [WIDTHxHEIGHT] [FPS]

Serves a live MJPEG test pattern at rtsp://127.0.0.1:PORT/test and prints
"ready" on stdout once it listens. The encoder chain converts to I420 before
jpegenc; without it DESCRIBE hangs ~20 s (see /work/shared/NOTES.md).
"""
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main() -> None:
    port = sys.argv[1]
    width, height = (sys.argv[2] if len(sys.argv) > 2 else "320x240").split("x")
    fps = sys.argv[3] if len(sys.argv) > 3 else "30"
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        f"( videotestsrc is-live=true pattern=ball ! video/x-raw,width={width},height={height},framerate={fps}/1 "
        "! videoconvert ! video/x-raw,format=I420 ! jpegenc quality=80 ! rtpjpegpay name=pay0 pt=26 )"
    )
    factory.set_shared(True)
    server.get_mount_points().add_factory("/test", factory)
    if server.attach(None) == 0:
        print("attach failed", flush=True)
        sys.exit(1)
    print("ready", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()

// Package camera owns frame acquisition: V4L2 devices, GStreamer pipelines,
// RTSP streams and file or image-directory replay, opened and read under
// deadlines. It is one of the two packages allowed to use cgo (OpenCV through
// gocv); callers receive plain Go images (*preprocess.BGR) and no gocv.Mat
// leaves the package.
//
// [New] builds a [Camera] from config.Camera; it implements
// inspection.Camera. One reader goroutine per camera reads frames, copies
// each into a pooled BGR image and keeps only the newest one; older frames
// nobody asked for are released and counted as dropped.
//
// Every open runs on its own goroutine and is abandoned after open_timeout
// (a GStreamer pipeline naming a missing element can hang inside open).
// Every read runs on a per-capture worker goroutine and is watched from
// outside: a read that outlives read_timeout (a frozen RTSP server or a
// pulled cable blocks OpenCV's Read for ~30 s) makes the camera "stalled",
// then "reconnecting". A GStreamer capture is closed from the watchdog,
// which unblocks its Read ~0.1 s later; a V4L2 or FFmpeg capture cannot be
// unblocked, so it is abandoned and closed by its worker when Read returns.
// The source is reopened with exponential backoff (100 ms doubling to 5 s,
// reset by the next frame, so a source that opens but fails every read is
// not reopened ten times a second).
// An image replay is the exception: its reads are local files, so a read
// past read_timeout is reported as "stalled" and then waited for, never
// abandoned — one decode at a time, and no file lost.
//
// Sources:
//   - v4l2: camera.device is a path such as /dev/video0 or an index;
//     width, height and fps are requested through capture properties.
//   - gstreamer: camera.pipeline, ending in an appsink delivering BGR (or
//     GRAY8/BGRx); width, height and fps belong in the pipeline.
//   - rtsp: camera.url, read through GStreamer (rtspsrc over TCP,
//     decodebin, videoconvert to BGR, optional videoscale to width×height).
//   - file: a video file read with FFmpeg, paced at fps, or at the file's
//     own rate when fps is 0.
//   - images: the .png/.jpg/.jpeg/.bmp files of a directory in byte-wise
//     name order (zero-pad numbers), paced at fps; with fps 0 each image
//     is read when the previous one was taken, so every image is delivered
//     exactly once (offline evaluation). Symbolic links to regular files
//     are followed.
//
// Hostile images: before a still image is decoded, its PNG, JPEG or BMP
// header is read in Go and the size it claims checked against
// camera.max_pixels and OpenCV's own limit of 2^20 pixels per side (past
// which OpenCV throws an exception that aborts the process). The file is
// read once into memory, checked and decoded from those bytes, one decode
// at a time in the process. A file that cannot be replayed — vanished,
// empty, a named pipe or device (never opened, so a FIFO cannot block),
// not a PNG, JPEG or BMP, too large, undecodable — is skipped: logged with
// its name and claimed size, counted ([Camera.Skipped]) and passed to
// [Camera.OnSkip]; the replay goes on with the next file. A video source
// whose capture reports frames past camera.max_pixels is refused when
// opened. [CheckSource] runs New's checks without building a camera, for
// check-config.
//
// Replays loop with camera.loop; otherwise Next returns
// inspection.ErrEndOfStream after the last frame.
//
// The camera delivers full frames; the engine crops camera.roi. The camera
// checks the ROI against the first frame of each size, logs a misfit, and
// reports it through [Camera.CheckROI].
package camera

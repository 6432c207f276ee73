// Package camera owns frame acquisition: V4L2 devices, GStreamer pipelines,
// RTSP streams and file or image-directory replay, opened and read under
// deadlines. It is one of the two packages allowed to use cgo (OpenCV through
// gocv); callers receive plain Go images.
package camera

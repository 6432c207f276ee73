// Package archive keeps the images and results of inspected parts on local
// disk under a size budget, for technicians and for re-training. It is the
// "archive" inspection.Sink of inspectd, configured by the archive section of
// the configuration file (config.Archive).
//
// # Layout
//
// Each archived result is a set of up to three files in a directory per UTC
// day of its verdict time:
//
//	<dir>/<YYYY-MM-DD>/<HHMMSS.mmm>_<VERDICT>_<result id>.jpg          original frame
//	<dir>/<YYYY-MM-DD>/<HHMMSS.mmm>_<VERDICT>_<result id>.overlay.jpg  heatmap overlay
//	<dir>/<YYYY-MM-DD>/<HHMMSS.mmm>_<VERDICT>_<result id>.json         the Result
//
// Dates and times are UTC (VerdictTime.UTC()), so names sort chronologically
// across daylight-saving changes and match the RFC 3339 times in the JSON.
// The result ID is sanitised to [A-Za-z0-9_-] (at most 64 characters); when
// anything had to be changed a short hash of the original ID is appended so
// that names stay unique. The .json file is always written (also for results
// without a frame, such as camera-timeout ERRORs); the images only when the
// result carries a Snapshot with a frame, and the overlay only when
// heatmap_overlay is set and the snapshot has a heatmap.
//
// # Overlay
//
// The overlay is the whole frame with the heatmap blended over the inspected
// ROI: each ROI pixel is mapped through the inverse of the alignment warp
// and the resize that preprocess.Fill applied for the model, so the heat
// lies on the part as the camera saw it. Pixels the model never saw are left
// as they are. Colours run from dark blue (0) to red at max(threshold,
// score), 25% to 70% opaque; the Regions (frame coordinates) are outlined in
// magenta just outside their boxes.
//
// # Atomicity and safety
//
// Every file is written to a ".tmp-*" name in its day directory, fsynced and
// renamed into place, and the .json is renamed last, so a .json means its set
// is complete. A failed write removes its temporary file and the files of the
// set already renamed. Renaming replaces a symbolic link planted at a final
// name instead of following it; day directories that are symbolic links are
// refused. The archive only deletes files whose names match its own pattern
// inside day directories it manages (and empty such day directories), and
// ".tmp-*" files older than one hour left by a crash; anything else in the
// directory (notes, foreign directories) is left alone.
//
// # Disk budget
//
// max_size_mb (MiB, 2^20 bytes) is enforced oldest set first on the disk
// space the sets' files take: their allocated blocks, as du counts them,
// so a 1-byte file on a 4 KiB-block file system costs 4096 bytes and a
// sparse file only what it holds (outside Linux, the file sizes). The
// archive scans the directory once when it opens it and then tracks the
// total incrementally: before a set is written, the oldest sets are
// deleted (whole sets) until the new one fits, its usage estimated from
// its sizes rounded up to the file system's allocation unit; once written
// it counts with its measured usage. A set larger than the whole budget is
// not written and raises a disk_budget event.
//
// # Failures
//
// An unusable directory (a file, unwritable, a symbolic-link loop) does not
// stop the daemon: Start still leaves a working sink that reports the problem
// (critical archive_error event, Stats.Errors) and tries again on every
// later result, so the archive recovers as soon as the directory is fixed.
// Write errors, including a full disk, are handled the same way. Errors are
// logged and raised as events at most once a minute per kind, with the
// number suppressed in between; the counters always count. Deliver returns
// an error only for a cancelled context or after Close, never for disk
// problems, which it has already reported.
//
// # Lifecycle and metrics
//
// New only checks the configuration; Start (with the Host that receives
// events) opens the directory; Close waits for a Deliver in progress, as
// long as its ctx allows (a write blocked on a frozen disk does not hang
// the shutdown). The archive starts no goroutine. Archive is a
// prometheus.Collector of the inspectd_archive_* series, read from
// counters that a scrape never waits for behind disk I/O: with the disk
// frozen, /metrics and the status page still answer.
package archive

//go:build linux

package archive

import (
	"io/fs"
	"syscall"
)

// diskUsage returns the bytes fi's file takes on disk: its allocated
// 512-byte blocks, as du counts them (a 1-byte file on a 4 KiB-block file
// system takes 4096, a sparse file less than its size). Without the
// kernel's stat it is the file's size.
func diskUsage(fi fs.FileInfo) int64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int64(st.Blocks) * 512
	}
	return fi.Size()
}

// allocUnit returns the allocation unit of the file system holding dir
// (the fragment size, else the block size), with which a file's size is
// rounded up to estimate its disk usage before it is written; 1 when it
// cannot be read.
func allocUnit(dir string) int64 {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 1
	}
	if st.Frsize > 0 {
		return int64(st.Frsize)
	}
	if st.Bsize > 0 {
		return int64(st.Bsize)
	}
	return 1
}

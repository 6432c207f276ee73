//go:build !(linux && cgo)

package infer

// trimNativeHeap does nothing where glibc's malloc_trim is not available.
func trimNativeHeap() {}

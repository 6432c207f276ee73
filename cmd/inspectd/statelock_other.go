//go:build !unix

package main

// lockStateDir does nothing where flock(2) does not exist.
func lockStateDir(string) (func(), error) { return func() {}, nil }

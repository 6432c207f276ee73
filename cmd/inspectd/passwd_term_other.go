//go:build !linux

package main

import (
	"errors"
	"os"
)

// isTerminal reports false where the terminal cannot be switched to no
// echo: the password is read as a line from standard input.
func isTerminal(*os.File) bool { return false }

func readNoEcho(*os.File) ([]byte, error) { return nil, errors.New("no terminal support") }

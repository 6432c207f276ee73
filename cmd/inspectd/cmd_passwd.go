package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/inspectd/inspectd/io/web"
)

const passwdSynopsis = `passwd --user NAME --role viewer|operator|admin

Reads a password from standard input (twice and without echo when it is a
terminal; else the first line) and prints the line for http.users_file:

  NAME:ROLE:BCRYPT-HASH

Append it to the users file yourself, e.g.
  inspectd passwd --user anna --role operator >> /etc/inspectd/users
then send SIGHUP (or restart). The daemon never writes the users file.
Roles: viewer (status, results, metrics), operator (+ labels, trigger,
pause/resume, product, clear fault), admin (+ thresholds, models).
Passwords: 8 to 72 bytes. See docs/security.md.`

// passwdCommand is `inspectd passwd`.
func passwdCommand(_ context.Context, s streams, args []string) error {
	fs := newFlagSet(s, "passwd", passwdSynopsis)
	user := fs.String("user", "", "user `name` (1-64 of A-Z a-z 0-9 _ . @ -)")
	roleName := fs.String("role", "", "`role`: viewer, operator or admin")
	if done, err := parseFlags(fs, s, args); done {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	if *user == "" || *roleName == "" {
		return usageErr("passwd: --user and --role are required, e.g. inspectd passwd --user anna --role operator")
	}
	if err := web.CheckUserName(*user); err != nil {
		return usageErr("passwd: --user: %v", err)
	}
	role, err := web.ParseRole(*roleName)
	if err != nil {
		return usageErr("passwd: --role: %v", err)
	}
	pw, err := readPassword(os.Stdin, s.stderr)
	if err != nil {
		return failure(fmt.Errorf("passwd: %w", err))
	}
	line, err := web.HashPassword(*user, role, pw)
	if err != nil {
		return failure(fmt.Errorf("passwd: %w", err))
	}
	fmt.Fprintln(s.stdout, line)
	return nil
}

// readPassword reads the password: from a terminal twice without echo
// (prompts on prompt), else the first line of in.
func readPassword(in *os.File, prompt io.Writer) ([]byte, error) {
	if isTerminal(in) {
		fmt.Fprint(prompt, "Password: ")
		a, err := readNoEcho(in)
		fmt.Fprintln(prompt)
		if err != nil {
			return nil, err
		}
		fmt.Fprint(prompt, "Repeat: ")
		b, err := readNoEcho(in)
		fmt.Fprintln(prompt)
		if err != nil {
			return nil, err
		}
		if string(a) != string(b) {
			return nil, errors.New("the passwords differ")
		}
		return a, nil
	}
	line, err := bufio.NewReader(io.LimitReader(in, 4096)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("reading the password from standard input: %w", err)
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return nil, errors.New("no password on standard input (one line)")
	}
	return []byte(line), nil
}

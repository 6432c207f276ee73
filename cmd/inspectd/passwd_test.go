package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/inspectd/inspectd/io/web"
)

// withStdin runs f with os.Stdin reading text from a file.
func withStdin(t *testing.T, text string, f func()) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "stdin")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	in, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	old := os.Stdin
	os.Stdin = in
	defer func() { os.Stdin = old }()
	f()
}

func TestPasswdCommand(t *testing.T) {
	var code int
	var stdout, stderr string
	withStdin(t, "s3cret-password\n", func() { code, stdout, stderr = runCLI(t, "passwd", "--user", "anna", "--role", "operator") })
	if code != 0 || !strings.HasPrefix(stdout, "anna:operator:$2a$12$") || strings.Contains(stdout+stderr, "s3cret") {
		t.Fatalf("exit %d stdout %q stderr %q", code, stdout, stderr)
	}
	users, err := web.ParseUsers("printed", []byte(stdout))
	if err != nil || users["anna"].Role != web.RoleOperator {
		t.Fatalf("the printed line does not parse: %v %v", users, err)
	}
	for _, tc := range []struct {
		name, stdin string
		args        []string
		code        int
		want        string
	}{
		{"no role", "s3cret-password\n", []string{"--user", "anna"}, 2, "passwd: --user and --role are required"},
		{"bad role", "s3cret-password\n", []string{"--user", "anna", "--role", "root"}, 2, `passwd: --role: role "root" is not one of "viewer", "operator", "admin"`},
		{"bad name", "s3cret-password\n", []string{"--user", "an:na", "--role", "viewer"}, 2, `passwd: --user: user name "an:na" has the character ':'`},
		{"no password", "", []string{"--user", "anna", "--role", "viewer"}, 1, "passwd: no password on standard input (one line)"},
		{"short password", "short\n", []string{"--user", "anna", "--role", "viewer"}, 1, "passwd: the password must have at least 8 characters"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			withStdin(t, tc.stdin, func() { code, stdout, stderr = runCLI(t, append([]string{"passwd"}, tc.args...)...) })
			if code != tc.code || !strings.Contains(stderr, tc.want) || stdout != "" {
				t.Fatalf("exit %d stdout %q stderr %q; want exit %d and %q", code, stdout, stderr, tc.code, tc.want)
			}
		})
	}
}

// TestCheckConfigAccessControl: check-config refuses a remote listen
// address without TLS and users, a broken users file and a broken
// certificate, naming the key and its line.
func TestCheckConfigAccessControl(t *testing.T) {
	dir := t.TempDir()
	users := filepath.Join(dir, "users")
	if err := os.WriteFile(users, []byte("anna:root:$2a$12$abc\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	notPEM := filepath.Join(dir, "cert.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		replace []string
		key     string
		want    string
	}{
		{"all interfaces without TLS and users", []string{`listen = "127.0.0.1:9120"`, `listen = ":9120"`}, `listen = `,
			`http.listen: ":9120" is reachable from other machines but has no TLS (tls_cert, tls_key) and no users (users_file)`},
		{"bad users file", []string{`users_file = ""`, fmt.Sprintf("users_file = %q", users)}, `users_file = `,
			fmt.Sprintf(`http.users_file: %s:1: user "anna": role "root" is not one of "viewer", "operator", "admin"`, users)},
		{"bad certificate", []string{`tls_cert = ""`, fmt.Sprintf("tls_cert = %q", notPEM), `tls_key = ""`, fmt.Sprintf("tls_key = %q", notPEM)}, `tls_cert = `,
			fmt.Sprintf(`http.tls_cert: http.tls_cert %s / http.tls_key %s: tls: failed to find any PEM data in certificate input`, notPEM, notPEM)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := configWith(t, tc.replace...)
			code, stdout, stderr := runCLI(t, "check-config", "-c", path)
			want := fmt.Sprintf("%s:%d: %s", path, lineOf(t, path, tc.key), tc.want)
			if code != 1 || !strings.Contains(stderr, want) {
				t.Fatalf("check-config: exit %d\nstdout: %s\nstderr: %s\nwant exit 1 and %q", code, stdout, stderr, want)
			}
		})
	}
	// allow_insecure_remote lets it pass.
	path := configWith(t, `listen = "127.0.0.1:9120"`, `listen = "0.0.0.0:0"`, `allow_insecure_remote = false`, `allow_insecure_remote = true`)
	if code, _, stderr := runCLI(t, "check-config", "-c", path); strings.Contains(stderr, "reachable from other machines") {
		t.Fatalf("allow_insecure_remote = true: exit %d %s", code, stderr)
	}
}

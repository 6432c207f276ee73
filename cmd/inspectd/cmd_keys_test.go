package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/inspectd/inspectd/models/rollout"
)

// generateKeys runs keys generate into a temporary directory and returns
// the prefix.
func generateKeys(t *testing.T) string {
	t.Helper()
	prefix := filepath.Join(t.TempDir(), "publisher")
	if code, out, errOut := runCLI(t, "keys", "generate", "--out", prefix); code != 0 {
		t.Fatalf("keys generate: exit %d\n%s%s", code, out, errOut)
	}
	return prefix
}

func TestKeysGenerateAndShow(t *testing.T) {
	prefix := filepath.Join(t.TempDir(), "publisher")
	code, out, errOut := runCLI(t, "keys", "generate", "--out", prefix)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	pubLine, err := os.ReadFile(prefix + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	pub, err := rollout.ParsePublicKey(string(pubLine))
	if err != nil {
		t.Fatalf(".pub: %v", err)
	}
	id := rollout.KeyID(pub)
	for _, want := range []string{
		"wrote " + prefix + ".key (private key, mode 0600",
		"key id: " + id + "\n",
		"trusted_keys = [\"" + strings.TrimSpace(string(pubLine)) + "\"]\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	for path, mode := range map[string]os.FileMode{prefix + ".key": 0o600, prefix + ".pub": 0o644} {
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != mode {
			t.Errorf("%s: mode %v (%v), want %v", path, fi.Mode().Perm(), err, mode)
		}
	}
	data, _ := os.ReadFile(prefix + ".key")
	if !strings.HasPrefix(string(data), "-----BEGIN PRIVATE KEY-----\n") {
		t.Errorf(".key is not a PEM PRIVATE KEY:\n%s", data)
	}
	for _, f := range []string{prefix + ".pub", prefix + ".key"} {
		code, out, errOut := runCLI(t, "keys", "show", f)
		if code != 0 || !strings.Contains(out, "key id: "+id+"\n") || errOut != "" {
			t.Errorf("keys show %s: exit %d\n%s%s", f, code, out, errOut)
		}
	}
	if matched, _ := regexp.MatchString(`^[0-9a-f]{16}$`, id); !matched {
		t.Errorf("key id %q", id)
	}
}

func TestKeysRefuse(t *testing.T) {
	dir := t.TempDir()
	existing := generateKeys(t)
	before, _ := os.ReadFile(existing + ".key")
	dangling := filepath.Join(dir, "dangling")
	os.Symlink(filepath.Join(dir, "nowhere"), dangling+".pub")
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo+".key", 0o644); err != nil {
		t.Fatal(err)
	}
	loose := filepath.Join(dir, "loose.key")
	keyData, _ := os.ReadFile(existing + ".key")
	os.WriteFile(loose, keyData, 0o644)
	garbage := filepath.Join(dir, "garbage")
	os.WriteFile(garbage, []byte("hello"), 0o644)
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"existing pair", []string{"keys", "generate", "--out", existing}, 1,
			"inspectd: keys generate: " + existing + ".key exists (a file); refusing to overwrite it, choose a new name\n"},
		{"dangling symlink", []string{"keys", "generate", "--out", dangling}, 1,
			"inspectd: keys generate: " + dangling + ".pub exists (a symbolic link); refusing to overwrite it, choose a new name\n"},
		{"named pipe", []string{"keys", "generate", "--out", fifo}, 1,
			"inspectd: keys generate: " + fifo + ".key exists (a named pipe); refusing to overwrite it, choose a new name\n"},
		{"missing directory", []string{"keys", "generate", "--out", filepath.Join(dir, "no", "k")}, 1,
			"inspectd: keys generate: directory " + filepath.Join(dir, "no") + " of " + filepath.Join(dir, "no", "k") + ".key does not exist\n"},
		{"no --out", []string{"keys", "generate"}, 2,
			"inspectd: keys generate: --out is required, e.g. --out /secure/plant-publisher\n"},
		{"unknown subcommand", []string{"keys", "rotate"}, 2,
			"inspectd: keys: unknown subcommand \"rotate\"; use \"generate\" or \"show\" (see inspectd keys --help)\n"},
		{"show a named pipe", []string{"keys", "show", fifo + ".key"}, 1,
			"inspectd: keys show: " + fifo + ".key is a named pipe, not a regular file\n"},
		{"show garbage", []string{"keys", "show", garbage}, 1,
			"inspectd: keys show: " + garbage + " is neither a public key line (ed25519:<base64>) nor a private key: no PEM block found; expected a \"PRIVATE KEY\" block written by `inspectd keys generate`\n"},
		{"show a readable private key", []string{"keys", "show", loose}, 0,
			"inspectd: warning: " + loose + " is readable by others (mode 0644); chmod 600 it\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errOut := runCLI(t, tc.args...)
			if code != tc.code || errOut != tc.want {
				t.Errorf("exit %d, stderr:\n%s\nwant exit %d, stderr:\n%s", code, errOut, tc.code, tc.want)
			}
		})
	}
	if after, _ := os.ReadFile(existing + ".key"); string(after) != string(before) {
		t.Error("the existing key changed")
	}
	for _, p := range []string{dangling + ".key", fifo + ".pub"} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s was written although its pair was refused", p)
		}
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".partial-") {
			t.Errorf("left behind: %s", e.Name())
		}
	}
}

// TestRolloutCommandsHelp: keys, sign and pack are in both builds and
// explain themselves.
func TestRolloutCommandsHelp(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"keys", "--help"}, "Usage: inspectd keys generate --out PREFIX | keys show FILE"},
		{[]string{"keys", "generate", "--help"}, "Usage: inspectd keys generate --out PREFIX"},
		{[]string{"sign", "--help"}, "Usage: inspectd sign --key PREFIX.key FILE.tar.gz [--url URL] [--force]"},
		{[]string{"pack", "--help"}, "Usage: inspectd pack --bundle DIR --out FILE.tar.gz"},
		{[]string{"--help"}, "  keys "},
	} {
		code, out, errOut := runCLI(t, tc.args...)
		if code != 0 || !strings.Contains(out, tc.want) {
			t.Errorf("%v: exit %d\n%s%s\nwant %q", tc.args, code, out, errOut, tc.want)
		}
	}
	if code, _, errOut := runCLI(t, "keys"); code != 2 || !strings.Contains(errOut, "Usage: inspectd keys") {
		t.Errorf("keys without a subcommand: exit %d, %s", code, errOut)
	}
}

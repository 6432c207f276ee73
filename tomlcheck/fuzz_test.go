package tomlcheck

import (
	"errors"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

var bareKey = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// addSeeds adds the repository's hand-written TOML files as seeds.
func addSeeds(f *testing.F) {
	for _, p := range []string{"../config/inspectd.example.toml", "../models/train/recipe.example.toml"} {
		if data, err := os.ReadFile(p); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte("a = 1\n[t]\nb = \"\"\"\n[x]\n\"\"\"\nc = 'd'\n[[arr]]\ne = { f = 1 }\n"))
}

// FuzzIndex: the key index never panics, never points outside the text,
// and finds a line for every key of a well-formed file (bare keys only:
// quoted keys may hold dots).
func FuzzIndex(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		text := string(data)
		idx := NewIndex(text)
		n := strings.Count(text, "\n") + 1
		for k, l := range idx.lines {
			if l < 1 || l > n {
				t.Fatalf("key %q at line %d of %d", k, l, n)
			}
		}
		var raw map[string]any
		md, err := toml.Decode(text, &raw)
		if err != nil {
			return
		}
	keys:
		for _, k := range md.Keys() {
			for _, part := range k {
				if !bareKey.MatchString(part) {
					continue keys
				}
			}
			if l := idx.Line(k.String()); l < 1 || l > n {
				t.Fatalf("defined key %q has line %d (file of %d lines)", k, l, n)
			}
		}
	})
}

type fuzzTarget struct {
	S string            `toml:"s"`
	I int8              `toml:"i"`
	U uint16            `toml:"u"`
	F float64           `toml:"f"`
	B bool              `toml:"b"`
	D Duration          `toml:"d"`
	L []int             `toml:"l"`
	M map[string]string `toml:"m"`
	T struct {
		X int `toml:"x"`
	} `toml:"t"`
	A []struct {
		Y string `toml:"y"`
	} `toml:"a"`
}

// FuzzDecode: Decode never panics; it fails only with a *SyntaxError or
// Problems (both ErrInvalid) whose lines lie inside the text.
func FuzzDecode(f *testing.F) {
	addSeeds(f)
	f.Add([]byte("s = 1\ni = 300\nu = -1\nf = nan\nd = \"x\"\nt = 3\n[[a]]\ny = 2\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var dst fuzzTarget
		v, _, err := Decode("f.toml", data, &dst, "example")
		n := strings.Count(string(data), "\n") + 1
		if err == nil {
			v.Duration("d", dst.D, 0, 1<<62)
			err = v.Err()
			if err == nil {
				return
			}
		}
		if !errors.Is(err, ErrInvalid) {
			t.Fatalf("error %v (%T) is not ErrInvalid", err, err)
		}
		var se *SyntaxError
		var ps Problems
		switch {
		case errors.As(err, &se):
			if se.Line < 1 || se.Line > n {
				t.Fatalf("syntax error at line %d of %d: %v", se.Line, n, se)
			}
		case errors.As(err, &ps):
			for _, p := range ps {
				if p.Line < 0 || p.Line > n || p.Key == "" {
					t.Fatalf("problem %+v in a file of %d lines", p, n)
				}
			}
		default:
			t.Fatalf("error %T", err)
		}
	})
}

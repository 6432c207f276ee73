package tomlcheck

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestIndex(t *testing.T) {
	text := `a = 1 # comment with = sign
"quoted" = 2
[camera]
source = "x#y" # not a comment inside the string
roi = { x = 1 }
[camera.roi]
y = 2
[ gpio ]
dotted.key = 3
notes = """
[not.a.table]
fake = 1
"""
after = 4
`
	idx := NewIndex(text)
	for key, want := range map[string]int{
		"a": 1, "quoted": 2, "camera": 3, "camera.source": 4, "camera.roi": 5,
		"camera.roi.x": 5, "camera.roi.y": 7, "gpio": 8, "gpio.dotted.key": 9, "nope": 0,
		"gpio.notes": 10, "gpio.after": 14, "not.a.table": 0,
	} {
		if got := idx.Line(key); got != want {
			t.Errorf("Line(%q) = %d, want %d", key, got, want)
		}
	}
	if !idx.Has("camera.roi") || idx.Has("camera.roi.x") || idx.Has("gpio.fake") {
		t.Errorf("Has: camera.roi %v (want true), camera.roi.x %v (want false: only its parent is on a line)", idx.Has("camera.roi"), idx.Has("camera.roi.x"))
	}
	var none *Index
	if none.Line("a") != 0 {
		t.Error("nil Index knows a line")
	}
}

type sample struct {
	Name    string   `toml:"name"`
	Count   int      `toml:"count"`
	Ratio   float64  `toml:"ratio"`
	Mode    string   `toml:"mode"`
	Wait    Duration `toml:"wait"`
	Section struct {
		Level int8 `toml:"level"`
	} `toml:"section"`
}

func (s *sample) check(v *Checker) {
	v.Required("name", s.Name, "name it")
	v.IntRange("count", s.Count, 1, 10, "parts")
	v.FloatRange("ratio", s.Ratio, 0, 1, "")
	v.OneOf("mode", s.Mode, "fast", "slow")
	v.Duration("wait", s.Wait, time.Millisecond, time.Second)
	v.In("section").IntRange("level", int(s.Section.Level), 0, 3, "")
}

// TestDecodeReportsEveryProblem: every kind of problem comes back at once,
// ordered by line, rendered as file:line: key: message.
func TestDecodeReportsEveryProblem(t *testing.T) {
	text := `name = ""
count = 11
ratio = nan
mode = "medium"
wait = "5"
colour = "red"
[section]
level = 4
[extra]
a = 1
b = 2
`
	s := sample{Wait: Dur(time.Millisecond)}
	v, _, err := Decode("f.toml", []byte(text), &s, "example.toml")
	if err != nil {
		t.Fatal(err)
	}
	s.check(v)
	err = v.Err()
	want := `f.toml:1: name: must not be empty; name it
f.toml:2: count: 11 is out of range; allowed 1 to 10 parts
f.toml:3: ratio: NaN is not a finite number; allowed 0 to 1
f.toml:4: mode: "medium" is not allowed; use one of "fast", "slow"
f.toml:5: wait: "5" is not a duration; write a number with a unit, e.g. "250ms", "2s", "1m"
f.toml:6: colour: unknown key; check the spelling against example.toml
f.toml:8: section.level: 4 is out of range; allowed 0 to 3
f.toml:9: extra: unknown key; check the spelling against example.toml`
	if err == nil || err.Error() != want {
		t.Fatalf("got\n%v\nwant\n%s", err, want)
	}
	if !errors.Is(err, ErrInvalid) {
		t.Error("Problems is not ErrInvalid")
	}
}

func TestDecodeTypeAndSyntaxErrors(t *testing.T) {
	for _, tc := range []struct{ name, text, want string }{
		{"wrong type", "name = \"a\"\n\ncount = \"three\"\n", "f.toml:3: count: wrong type: expected an integer, got a string"},
		{"table expected", "section = 3\n", "f.toml:1: section: wrong type: expected a table ([section] section), got"},
		{"overflow", "[section]\nlevel = 300\n", "f.toml:2: section.level: "},
		{"syntax", "name = \"a\"\ncount = = 3\n", "f.toml:2:9: syntax error: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var s sample
			_, _, err := Decode("f.toml", []byte(tc.text), &s, "example.toml")
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("err = %v, want prefix %q", err, tc.want)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Error("not ErrInvalid")
			}
		})
	}
	// The syntax error shows the line and a caret under the column.
	var s sample
	_, _, err := Decode("f.toml", []byte("name = \"a\"\ncount = = 3\n"), &s, "")
	var se *SyntaxError
	if !errors.As(err, &se) {
		t.Fatalf("%T is not a *SyntaxError", err)
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != 3 || lines[1] != "    | count = = 3" || lines[2] != "    | "+strings.Repeat(" ", se.Col-1)+"^" {
		t.Errorf("rendering:\n%s", err)
	}
}

func TestCheckerHelpers(t *testing.T) {
	v := NewChecker("f", NewIndex("[net]\naddr = 1\nport = 2\n"))
	n := v.In("net")
	n.HostPort("addr", "localhost")
	n.HostPort("port", "host:99999")
	n.HostPort("ok", "127.0.0.1:80")
	n.ExistingFile("file", t.TempDir())
	n.ExistingDir("dir", "/nonexistent/dir")
	got := v.Problems()
	want := []Problem{
		{"f", 1, "net.dir", `"/nonexistent/dir": no such file or directory; expected an existing directory`},
		{"f", 1, "net.file", ""}, // message holds a temp path, checked below
		{"f", 2, "net.addr", `"localhost" is not host:port, e.g. "127.0.0.1:9120" or ":9120"`},
		{"f", 3, "net.port", `"host:99999" has port "99999"; expected a number from 0 to 65535`},
	}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for i := range want {
		if got[i].Key != want[i].Key || got[i].Line != want[i].Line || (want[i].Msg != "" && got[i].Msg != want[i].Msg) {
			t.Errorf("problem %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	if !strings.HasSuffix(got[1].Msg, "is a directory; expected a file") {
		t.Errorf("file problem %q", got[1].Msg)
	}
	if NewChecker("f", nil).Err() != nil {
		t.Error("empty Checker has an error")
	}
}

// TestIndexArrayOfTables: each [[array]] element's keys are found by
// their 1-based position, with the sub-tables that follow the element.
func TestIndexArrayOfTables(t *testing.T) {
	text := `[[product]]
name = "gear"
[product.decision]
threshold = 0.5
[[product]]
name = "shaft"
[product.roi]
x = 1
[other]
name = "x"
`
	idx := NewIndex(text)
	for key, want := range map[string]int{
		"product": 1, "product[1]": 1, "product[1].name": 2, "product[1].decision.threshold": 4,
		"product[2]": 5, "product[2].name": 6, "product[2].roi": 7, "product[2].roi.x": 8,
		"product[2].decision.threshold": 5, "product.name": 2, "product.roi.x": 8, "other.name": 10,
		"product[3].name": 0,
	} {
		if got := idx.Line(key); got != want {
			t.Errorf("Line(%q) = %d, want %d", key, got, want)
		}
	}
}

package tomlcheck

import (
	"fmt"

	"github.com/BurntSushi/toml"
	"strings"
	"testing"
	"time"
)

// unknownKeysText is a file of n unknown keys: half in an unknown table
// (reported once, as the table) and half unknown keys of a known table
// (each reported).
func unknownKeysText(n int) string {
	var b strings.Builder
	b.WriteString("name = \"a\"\n[junk]\n")
	for i := 0; i < n/2; i++ {
		fmt.Fprintf(&b, "k%d = %d\n", i, i)
	}
	b.WriteString("[section]\n")
	for i := 0; i < n-n/2; i++ {
		fmt.Fprintf(&b, "u%d = %d\n", i, i)
	}
	return b.String()
}

// decodeUnknown decodes unknownKeysText(n) and checks that every unknown
// key is reported once: the table junk, and each key of section.
func decodeUnknown(tb testing.TB, text []byte, n int) {
	var s sample
	v, _, err := Decode("f.toml", text, &s, "example.toml")
	if err != nil {
		tb.Fatal(err)
	}
	ps := v.Problems()
	if len(ps) != n-n/2+1 {
		tb.Fatalf("%d problems, want %d", len(ps), n-n/2+1)
	}
	if ps[0].Key != "junk" || ps[0].Line != 2 || ps[len(ps)-1].Key != fmt.Sprintf("section.u%d", n-n/2-1) || ps[len(ps)-1].Line != n+3 {
		tb.Fatalf("first %v, last %v", ps[0], ps[len(ps)-1])
	}
}

// BenchmarkDecodeUnknownKeys: decoding time grows linearly with the number
// of unknown keys (10k and 40k: about 40 and 160 ms; 190 ms and 2.6 s
// when the reporting was quadratic).
func BenchmarkDecodeUnknownKeys(b *testing.B) {
	for _, n := range []int{10_000, 40_000} {
		text := []byte(unknownKeysText(n))
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			for b.Loop() {
				decodeUnknown(b, text, n)
			}
		})
	}
}

// TestUnknownKeysScaleLinearly (issue 24, finding 13): a file of 40,000
// unknown keys took 10 s in check-config because every key was compared
// with every key reported before it. All 40,000 are reported, and
// reporting them costs about what one pass over the keys does — naming
// each and putting it in a map, the yardstick, timed in the same process
// so that a slow or busy machine and the race detector weigh on both: the
// fastest of three interleaved runs each, with a bound of 20 times the
// yardstick (linear reporting takes about half of it, quadratic reporting
// took 60 times it).
func TestUnknownKeysScaleLinearly(t *testing.T) {
	if testing.Short() {
		t.Skip("timing")
	}
	const n = 40_000
	decodeUnknown(t, []byte(unknownKeysText(n)), n)

	var s sample
	md, err := toml.Decode(unknownKeysText(n), &s)
	if err != nil {
		t.Fatal(err)
	}
	keys := md.Undecoded()
	report, yardstick := time.Duration(1<<62), time.Duration(1<<62)
	for range 3 {
		start := time.Now()
		seen := map[string]bool{}
		var problems Problems
		for _, k := range keys {
			key := k.String()
			seen[key] = true
			problems = append(problems, Problem{File: "f.toml", Key: key, Msg: "unknown key"})
		}
		yardstick = min(yardstick, time.Since(start))
		if len(seen) != len(keys) || len(problems) != len(keys) {
			t.Fatal("yardstick")
		}

		v := NewChecker("f.toml", nil)
		start = time.Now()
		reportUnknownKeys(v, keys, "example.toml")
		report = min(report, time.Since(start))
		if got := len(v.Problems()); got != n-n/2+1 {
			t.Fatalf("%d problems, want %d", got, n-n/2+1)
		}
	}
	ratio := float64(report) / float64(yardstick)
	t.Logf("reporting %d unknown keys: %v; one pass over them: %v; ratio %.1f", len(keys), report, yardstick, ratio)
	if ratio > 20 {
		t.Errorf("reporting %d unknown keys took %v, %.0f times one pass over them (%v): it is not linear", len(keys), report, ratio, yardstick)
	}
}

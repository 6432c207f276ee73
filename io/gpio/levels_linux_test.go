//go:build linux

package gpio

import (
	"reflect"
	"testing"

	"github.com/warthog618/go-gpiocdev"
)

// TestLevelOptionMapping: the product code lines are plain inputs (no
// edge detection, no event buffer) with the station's polarity and bias.
func TestLevelOptionMapping(t *testing.T) {
	got := levelReqOptions(InputOptions{ActiveLow: true, Bias: BiasPullDown, Edges: EdgeBoth, EventBuffer: 64})
	want := []gpiocdev.LineReqOption{gpiocdev.WithConsumer("inspectd"), gpiocdev.AsInput, gpiocdev.AsActiveLow, gpiocdev.WithPullDown}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("level options %#v, want %#v", got, want)
	}
	got = levelReqOptions(InputOptions{})
	want = []gpiocdev.LineReqOption{gpiocdev.WithConsumer("inspectd"), gpiocdev.AsInput}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("level options %#v, want %#v", got, want)
	}
}

// TestLevelsMissingLine: a code line that does not exist is an error
// naming it, and nothing stays requested (needs a chip).
func TestLevelsMissingLine(t *testing.T) {
	c, err := openChip("gpiochip0")
	if err != nil {
		t.Skip(noChipReason)
	}
	defer c.Close()
	if _, err := c.Levels([]string{"no-such-line-inspectd"}, InputOptions{}); err == nil {
		t.Error("a missing code line was requested")
	}
}

//go:build linux

package gpio

import (
	"errors"
	"os"
	"reflect"
	"testing"
	"time"

	"github.com/inspectd/inspectd/config"
	"github.com/warthog618/go-gpiocdev"
)

const noChipReason = "no GPIO chip on this machine (see ../shared/NOTES.md)"

func TestOpenMissingChip(t *testing.T) {
	if _, err := os.Stat("/dev/gpiochip0"); err == nil {
		t.Skip("/dev/gpiochip0 exists")
	}
	cfg := config.Default().GPIO
	_, err := Open(cfg)
	if err == nil || err.Error() != `gpio.chip "gpiochip0": no such device` || !errors.Is(err, ErrNoChip) {
		t.Fatalf("Open: %v", err)
	}
}

func TestRealChip(t *testing.T) {
	if _, err := os.Stat("/dev/gpiochip0"); err != nil {
		t.Skip(noChipReason)
	}
	c, err := Open(config.Default().GPIO)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Only opening is checked: driving lines of a real board is not safe
	// from a unit test.
}

func TestOutputOptionMapping(t *testing.T) {
	got := outputReqOptions(OutputOptions{ActiveLow: true, Drive: DriveOpenDrain, Initial: true})
	want := []gpiocdev.LineReqOption{gpiocdev.WithConsumer("inspectd"), gpiocdev.AsOutput(1), gpiocdev.AsActiveLow, gpiocdev.AsOpenDrain}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("output options %#v, want %#v", got, want)
	}
	got = outputReqOptions(OutputOptions{})
	want = []gpiocdev.LineReqOption{gpiocdev.WithConsumer("inspectd"), gpiocdev.AsOutput(0), gpiocdev.AsPushPull}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("output options %#v, want %#v", got, want)
	}
}

func TestInputOptionMapping(t *testing.T) {
	got := inputReqOptions(InputOptions{ActiveLow: true, Bias: BiasPullUp, Edges: EdgeFalling, Debounce: 5 * time.Millisecond, EventBuffer: 256}, nil)
	want := []gpiocdev.LineReqOption{gpiocdev.WithConsumer("inspectd"), gpiocdev.AsInput, gpiocdev.AsActiveLow, gpiocdev.WithPullUp,
		gpiocdev.WithFallingEdge, gpiocdev.WithDebounce(5 * time.Millisecond), gpiocdev.WithEventBufferSize(256), gpiocdev.WithMonotonicEventClock}
	got = got[:len(got)-1] // the event handler (a func) is not comparable
	if !reflect.DeepEqual(got, want) {
		t.Errorf("input options %#v, want %#v", got, want)
	}
}

func TestConvertEvent(t *testing.T) {
	e := convertEvent("pp", gpiocdev.LineEvent{Type: gpiocdev.LineEventFallingEdge, Seqno: 4, LineSeqno: 3, Timestamp: 0})
	if e.Rising || e.Seq != 4 || e.LineSeq != 3 || e.Line != "pp" || time.Since(e.Time) > time.Second {
		t.Errorf("edge %+v", e)
	}
}

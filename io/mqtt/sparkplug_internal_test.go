package mqtt

import (
	"testing"

	"github.com/inspectd/inspectd/io/mqtt/sparkplug"
)

// TestSparkplugCommandBoundsMatchJSON keeps the DCMD bounds equal to those
// of the JSON commands.
func TestSparkplugCommandBoundsMatchJSON(t *testing.T) {
	if sparkplug.MaxPartID != maxPartID || sparkplug.MaxCommandPayload != maxPayload {
		t.Errorf("sparkplug bounds part ID %d, payload %d; JSON commands %d, %d",
			sparkplug.MaxPartID, sparkplug.MaxCommandPayload, maxPartID, maxPayload)
	}
}

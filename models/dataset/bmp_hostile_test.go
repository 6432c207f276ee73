package dataset

import (
	"bytes"
	"encoding/binary"
	"runtime"
	"strings"
	"testing"
)

// TestBMPHostileHeaders: a tiny file whose header claims a huge image or
// info header fails with a clear error without allocating what it claims.
func TestBMPHostileHeaders(t *testing.T) {
	header := func(infoSize uint32, w, h int32) []byte {
		b := make([]byte, 54)
		copy(b, "BM")
		le := binary.LittleEndian
		le.PutUint32(b[10:], 54)
		le.PutUint32(b[14:], infoSize)
		le.PutUint32(b[18:], uint32(w))
		le.PutUint32(b[22:], uint32(h))
		le.PutUint16(b[28:], 24)
		return b
	}
	cases := []struct {
		name string
		data []byte
		want string
	}{
		{"claims 32768x32768", header(40, 32768, 32768), "BMP pixel row 0 of 32768: unexpected EOF"},
		{"claims a 1 GiB info header", header(0x40000000, 8, 8), "BMP info header of 1073741824 bytes, expected 40 to 124"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err := decodeBMP(bytes.NewReader(tc.data))
			runtime.ReadMemStats(&after)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
			if grew := after.TotalAlloc - before.TotalAlloc; grew > 16<<20 {
				t.Errorf("decoding %d bytes allocated %d MB", len(tc.data), grew>>20)
			}
		})
	}
}

package relearn

import (
	"context"
	"encoding/json"
	"fmt"
	"image"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/inspectd/inspectd/config"
	"github.com/inspectd/inspectd/inspection"
	"github.com/inspectd/inspectd/io/archive"
	"github.com/inspectd/inspectd/models/dataset"
	"github.com/inspectd/inspectd/models/preprocess"
)

type nopHost struct{}

func (nopHost) ReportEvent(inspection.Event) {}

// part is one archived result of the synthetic archive.
type part struct {
	id      string
	verdict inspection.Verdict
	regions []inspection.Region
	noFrame bool
}

// writeArchive archives parts with package io/archive itself (save =
// "all"), so that the test reads exactly what a station writes.
func writeArchive(t *testing.T, dir string, parts []part) {
	t.Helper()
	a, err := archive.New(archive.Options{Config: config.Archive{Save: archive.SaveAll, Dir: dir, MaxSizeMB: 64, JPEGQuality: 90, HeatmapOverlay: true}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := a.Start(ctx, nopHost{}); err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 12, 7, 21, 0, 0, 0, time.UTC)
	for i, p := range parts {
		r := &inspection.Result{ID: p.id, Station: "line-3", Verdict: p.verdict, Reason: "score", Score: 0.4 + float64(i)/100, Threshold: 0.5,
			VerdictTime: t0.Add(time.Duration(i) * time.Second), Regions: p.regions,
			Model: inspection.Model{Product: "plate", BundleHash: "sha256:abc"}}
		if !p.noFrame {
			img := image.NewRGBA(image.Rect(0, 0, 40, 30))
			for j := range img.Pix {
				img.Pix[j] = uint8(i*20 + j%7)
			}
			hm := &preprocess.Heatmap{Width: 8, Height: 8, Values: make([]float32, 64)}
			for j := range hm.Values {
				hm.Values[j] = float32(j) / 64
			}
			r.Snapshot = &inspection.Snapshot{Frame: img, ROI: image.Rect(10, 5, 40, 30), Heatmap: hm}
		}
		if err := a.Deliver(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if st := a.Stats(); st.Written != uint64(len(parts)) || st.Errors != 0 {
		t.Fatalf("archive wrote %+v, want %d sets", st, len(parts))
	}
}

func labelLine(id, label, defect string, at int) string {
	b, _ := json.Marshal(map[string]string{"time": time.Date(2026, 12, 7, 22, 0, at, 0, time.UTC).Format(time.RFC3339Nano),
		"user": "alice", "result_id": id, "label": label, "defect_type": defect, "previous": "", "previous_defect_type": "",
		"station": "line-3", "product": "plate", "bundle_hash": "sha256:abc", "note": ""})
	return string(b) + "\n"
}

func writeFile(t *testing.T, p, s string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(s), 0o640); err != nil {
		t.Fatal(err)
	}
}

// TestFromArchive builds a dataset from a small archive written by
// io/archive and a label log with a change of mind, an unsure label, a
// label naming a deleted result, one naming a frameless ERROR and a torn
// last line; the output must open as an MVTec category.
func TestFromArchive(t *testing.T) {
	dir := t.TempDir()
	arch := filepath.Join(dir, "archive")
	// Region boxes are in frame pixels: r2's lies at the frame's right
	// edge (beyond the ROI's origin) and overflows it, to be clipped.
	writeArchive(t, arch, []part{
		{id: "line-3-1", verdict: inspection.NG},
		{id: "line-3-2", verdict: inspection.NG, regions: []inspection.Region{{X: 30, Y: 10, Width: 20, Height: 5, Area: 50}}},
		{id: "line-3-3", verdict: inspection.OK},
		{id: "line-3-4", verdict: inspection.OK},
		{id: "line-3-5", verdict: inspection.NG},
		{id: "line-3-6", verdict: inspection.Error, noFrame: true},
		{id: "line-3/7", verdict: inspection.NG}, // sanitised in the file name
		{id: "line-3-8", verdict: inspection.NG, regions: nil},
		{id: "line-3-9", verdict: inspection.NG}, // unlabelled: never sampled
	})
	labels := filepath.Join(arch, "labels.jsonl")
	writeFile(t, labels, labelLine("line-3-1", "defect", "scratch", 1)+ // changed below
		labelLine("line-3-2", "defect", "dent", 2)+
		labelLine("line-3-1", "good", "", 3)+
		labelLine("line-3-5", "unsure", "", 4)+
		labelLine("gone-99", "good", "", 5)+
		labelLine("line-3-6", "defect", "other", 6)+
		labelLine("line-3/7", "good", "", 7)+
		"\n"+ // blank lines are skipped
		labelLine("line-3-8", "defect", "scratch", 8)+
		`{"time":"2026-12-07T22:00:09Z","user":"al`) // torn by a crash

	out := filepath.Join(dir, "data", "plate")
	sum, err := FromArchive(context.Background(), Options{Archive: arch, Out: out, OKSample: 1, Seed: 3,
		Now: func() time.Time { return time.Date(2026, 12, 7, 23, 0, 0, 0, time.UTC) }})
	if err != nil {
		t.Fatal(err)
	}
	if ov, _ := filepath.Glob(filepath.Join(arch, "*", "*.overlay.jpg")); len(ov) != 8 {
		t.Fatalf("the archive wrote %d overlays, want 8 (one per frame)", len(ov))
	}
	if sum.Archived != 9 || sum.Labels != 8 || sum.Labelled != 7 || sum.Good != 2 || sum.OKSampled != 1 || sum.Unsure != 1 ||
		sum.Defects["dent"] != 1 || sum.Defects["scratch"] != 1 || sum.EmptyMasks != 1 {
		t.Errorf("summary %+v", sum)
	}
	if fmt.Sprint(sum.Missing) != "[gone-99]" || fmt.Sprint(sum.NoFrame) != "[line-3-6]" {
		t.Errorf("missing %v, no frame %v; want [gone-99] and [line-3-6]", sum.Missing, sum.NoFrame)
	}
	if len(sum.Warnings) != 1 || !strings.Contains(sum.Warnings[0], "labels.jsonl:10: line ignored: torn last line") {
		t.Errorf("warnings %q, want the torn line 10", sum.Warnings)
	}

	c, err := dataset.OpenCategory(out)
	if err != nil {
		t.Fatal(err)
	}
	var train []string
	for _, s := range c.Train {
		train = append(train, s.Name)
	}
	// line-3-1 (relabelled good), line-3_7-<hash> and one of the two
	// unlabelled OK parts.
	if len(train) != 3 || train[0] != "line-3-1" || !strings.HasPrefix(train[2], "line-3_7-") {
		t.Errorf("train/good %v", train)
	}
	if !c.HasMasks || len(c.Test) != 2 || fmt.Sprint(c.Defects()) != "[dent scratch]" {
		t.Fatalf("test split %+v", c.Test)
	}
	for _, s := range c.Test {
		img, m, err := s.Load()
		if err != nil {
			t.Fatal(err)
		}
		if b := img.Bounds(); b.Dx() != 40 || b.Dy() != 30 {
			t.Errorf("%s is %v, want the whole 40x30 frame", s.Path, b)
		}
		switch s.Name {
		case "line-3-2":
			// Box x 30..50 clipped to 40, y 10..15: 10×5 pixels at frame
			// coordinates (not shifted by the ROI's origin 10,5).
			if m.Count() != 50 || !m.Pix[10*40+30] || m.Pix[10*40+29] || !m.Pix[14*40+39] || m.Pix[15*40+30] {
				t.Errorf("mask of %s: %d pixels, want the 10x5 box at (30,10)", s.Name, m.Count())
			}
		case "line-3-8":
			if m.Count() != 0 {
				t.Errorf("mask of a part without regions has %d pixels, want 0", m.Count())
			}
		}
	}
	// The frame is copied, not the overlay, byte for byte.
	var prov Provenance
	data, err := os.ReadFile(filepath.Join(out, "provenance.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &prov); err != nil {
		t.Fatal(err)
	}
	if prov.Masks != MasksNote || fmt.Sprint(prov.Stations) != "[line-3]" || fmt.Sprint(prov.BundleHashes) != "[sha256:abc]" ||
		len(prov.Images) != 5 || fmt.Sprint(prov.Missing) != "[gone-99]" || fmt.Sprint(prov.Unsure) != "[line-3-5]" {
		t.Errorf("provenance %s", data)
	}
	for _, im := range prov.Images {
		got, err := os.ReadFile(filepath.Join(out, im.File))
		if err != nil {
			t.Fatal(err)
		}
		want, err := os.ReadFile(filepath.Join(arch, im.Archived))
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) || strings.HasSuffix(im.Archived, ".overlay.jpg") {
			t.Errorf("%s is not a copy of the archived frame %s", im.File, im.Archived)
		}
		if im.ResultID == "line-3-1" && (im.Label != "good" || im.LabelTime.Second() != 3 || im.Source != "label") {
			t.Errorf("line-3-1's provenance %+v, want the last label (good at :03)", im)
		}
		if im.Source == "ok_sample" && (im.Verdict != "OK" || im.Label != "") {
			t.Errorf("OK sample %+v", im)
		}
	}
	// No staging directory is left beside the output.
	if ents, _ := os.ReadDir(filepath.Dir(out)); len(ents) != 1 {
		t.Errorf("%d entries beside the output, want only it", len(ents))
	}

	// Same seed, same sample; the output now exists and is refused.
	if _, err := FromArchive(context.Background(), Options{Archive: arch, Out: out}); err == nil || !strings.Contains(err.Error(), "exists and is not empty") {
		t.Errorf("second run over the output: %v", err)
	}
	out2 := filepath.Join(dir, "data2", "plate")
	if _, err := FromArchive(context.Background(), Options{Archive: arch, Out: out2, OKSample: 1, Seed: 3}); err != nil {
		t.Fatal(err)
	}
	// A sample larger than the OK parts takes them all, never an NG one.
	sum3, err := FromArchive(context.Background(), Options{Archive: arch, Out: filepath.Join(dir, "data3", "plate"), OKSample: 10})
	if err != nil || sum3.OKSampled != 2 || len(sum3.Warnings) != 2 || !strings.Contains(sum3.Warnings[1], "asked for 10 unlabelled OK parts, the archive holds 2") {
		t.Errorf("OK sample of 10: %+v (%v)", sum3, err)
	}
	a, _ := os.ReadDir(filepath.Join(out, "train", "good"))
	b, _ := os.ReadDir(filepath.Join(out2, "train", "good"))
	if fmt.Sprint(names(a)) != fmt.Sprint(names(b)) {
		t.Errorf("the same seed drew %v and %v", names(a), names(b))
	}
}

func names(es []os.DirEntry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out
}

// TestFromArchiveRefuses: hostile and broken inputs fail with a message
// naming the file (and line) and what was expected, and leave no output.
func TestFromArchiveRefuses(t *testing.T) {
	good := labelLine("line-3-1", "good", "", 1)
	for _, tc := range []struct {
		name   string
		setup  func(t *testing.T, arch string) // after the archive is written
		labels string
		out    string // relative to the temp dir; default "out"
		want   string
	}{
		{name: "symlinked frame", labels: good, setup: func(t *testing.T, arch string) {
			m, _ := filepath.Glob(filepath.Join(arch, "*", "*_line-3-1.jpg"))
			os.Remove(m[0])
			if err := os.Symlink("/etc/passwd", m[0]); err != nil {
				t.Fatal(err)
			}
		}, want: "_line-3-1.jpg is a symbolic link; the archive never writes one, refusing to follow it"},
		{name: "symlinked sidecar", labels: good, setup: func(t *testing.T, arch string) {
			m, _ := filepath.Glob(filepath.Join(arch, "*", "*_line-3-2.json"))
			os.Rename(m[0], m[0]+".real")
			os.Symlink(m[0]+".real", m[0])
		}, want: "_line-3-2.json is a symbolic link"},
		{name: "symlinked day", labels: good, setup: func(t *testing.T, arch string) {
			os.Symlink(t.TempDir(), filepath.Join(arch, "2026-12-06"))
		}, want: "2026-12-06 is a symbolic link"},
		{name: "bad sidecar", labels: good, setup: func(t *testing.T, arch string) {
			m, _ := filepath.Glob(filepath.Join(arch, "*", "*_line-3-2.json"))
			os.WriteFile(m[0], []byte("{"), 0o644)
		}, want: "_line-3-2.json: unexpected end of JSON input, expected the JSON of an inspection result"},
		{name: "defect type escaping", labels: labelLine("line-3-2", "defect", "../../etc", 2) + good, want: `labels.jsonl: result line-3-2 labelled by alice at 2026-12-07T22:00:02Z: defect_type "../../etc" has a character outside [A-Za-z0-9_-]`},
		{name: "defect type good", labels: labelLine("line-3-2", "defect", "good", 2) + good, want: `defect_type "good" is reserved`},
		{name: "nothing usable", labels: labelLine("gone", "good", "", 1) + labelLine("line-3-2", "unsure", "", 2), want: "nothing to write: 2 label entries for 2 results"},
		{name: "labels missing", want: "labels.jsonl: no such file or directory"},
		{name: "out inside archive", labels: good, out: "archive/ds", want: "lies inside the archive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			arch := filepath.Join(dir, "archive")
			writeArchive(t, arch, []part{{id: "line-3-1", verdict: inspection.NG}, {id: "line-3-2", verdict: inspection.NG}})
			if tc.labels != "" {
				writeFile(t, filepath.Join(arch, "labels.jsonl"), tc.labels)
			}
			if tc.setup != nil {
				tc.setup(t, arch)
			}
			out := filepath.Join(dir, "out")
			if tc.out != "" {
				out = filepath.Join(dir, tc.out)
			}
			_, err := FromArchive(context.Background(), Options{Archive: arch, Out: out})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Errorf("output %s exists after a failure: %v", out, err)
			}
			if m, _ := filepath.Glob(filepath.Join(filepath.Dir(out), ".out.partial-*")); len(m) > 0 {
				t.Errorf("staging left behind: %v", m)
			}
		})
	}
}

// TestFromArchiveProducts: a station with two products archives both in
// one place; a dataset holds one, chosen with Product.
func TestFromArchiveProducts(t *testing.T) {
	dir := t.TempDir()
	arch := filepath.Join(dir, "archive")
	writeArchive(t, arch, []part{{id: "a-1", verdict: inspection.NG}, {id: "b-1", verdict: inspection.NG}, {id: "b-2", verdict: inspection.OK}})
	// writeArchive stamps product "plate"; make b-* another product.
	m, _ := filepath.Glob(filepath.Join(arch, "*", "*_b-*.json"))
	for _, p := range m {
		data, _ := os.ReadFile(p)
		writeFile(t, p, strings.Replace(string(data), `"product": "plate"`, `"product": "bracket"`, 1))
	}
	writeFile(t, filepath.Join(arch, "labels.jsonl"), labelLine("a-1", "good", "", 1)+labelLine("b-1", "good", "", 2))
	_, err := FromArchive(context.Background(), Options{Archive: arch, Out: filepath.Join(dir, "mixed")})
	if err == nil || !strings.Contains(err.Error(), "the results to write are of 2 products (bracket, plate); one dataset holds one product: choose it (--product)") {
		t.Fatalf("mixed products: %v", err)
	}
	sum, err := FromArchive(context.Background(), Options{Archive: arch, Out: filepath.Join(dir, "bracket"), Product: "bracket", OKSample: 5})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Good != 1 || sum.OtherProduct != 1 || sum.OKSampled != 1 || len(sum.Missing) != 0 {
		t.Errorf("summary %+v, want b-1 and the OK b-2, a-1 counted as another product", sum)
	}
}

// TestRegionMaskClips: boxes outside the frame draw nothing; partly
// outside ones are clipped.
func TestRegionMaskClips(t *testing.T) {
	_, n, err := regionMask(10, 10, []inspection.Region{{X: -5, Y: -5, Width: 3, Height: 3}, {X: 8, Y: 8, Width: 5, Height: 5}})
	if err != nil || n != 1 {
		t.Errorf("regions drawn %d (%v), want 1", n, err)
	}
	if _, _, err := regionMask(0, 10, nil); err == nil {
		t.Error("an empty frame gave a mask")
	}
}

// TestFromArchiveSkipsBadLines: lines that are no valid entry (a torn
// line io/labels.Open ended after a crash, hand damage) are left out with
// a warning naming path:line; the rest is used.
func TestFromArchiveSkipsBadLines(t *testing.T) {
	dir := t.TempDir()
	arch := filepath.Join(dir, "archive")
	writeArchive(t, arch, []part{{id: "line-3-1", verdict: inspection.NG}, {id: "line-3-2", verdict: inspection.NG}})
	writeFile(t, filepath.Join(arch, "labels.jsonl"), `{"time":"2026`+"\n"+ // torn, ended by the next Open
		labelLine("line-3-2", "fine", "", 2)+
		labelLine("line-3-2", "defect", "", 3)+
		`{"time":"2026-12-07T22:00:00Z","user":"a","label":"good"}`+"\n"+
		`{"time":"2026-12-07T22:00:00Z","user":"a","result_id":"line-3-2","label":"good"} {}`+"\n"+
		labelLine("line-3-1", "good", "", 6))
	sum, err := FromArchive(context.Background(), Options{Archive: arch, Out: filepath.Join(dir, "out")})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Good != 1 || sum.Labels != 1 || len(sum.Warnings) != 5 {
		t.Fatalf("summary %+v", sum)
	}
	for i, want := range []string{"labels.jsonl:1: line ignored: not a JSON entry", `labels.jsonl:2: line ignored: invalid entry: label "fine" is not known`,
		`labels.jsonl:3: line ignored: invalid entry: label "defect" needs a defect_type`, "labels.jsonl:4: line ignored: invalid entry: result_id is empty",
		"labels.jsonl:5: line ignored: not a JSON entry"} {
		if !strings.Contains(sum.Warnings[i], want) {
			t.Errorf("warning %d %q, want %q", i, sum.Warnings[i], want)
		}
	}
}

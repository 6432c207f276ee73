package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// cgoFreePackages must build with CGO_ENABLED=0: cgo stays at the edge
// (camera, infer, cmd/inspectd); training and evaluation get the native
// runtime passed in through infer/backend.
var cgoFreePackages = []string{
	"github.com/inspectd/inspectd/models/evaluate",
	"github.com/inspectd/inspectd/models/dataset",
	"github.com/inspectd/inspectd/models/train/...",
	"github.com/inspectd/inspectd/daemon",
	"github.com/inspectd/inspectd/inspection",
	"github.com/inspectd/inspectd/io/...",
	"github.com/inspectd/inspectd/infer/backend",
	"github.com/inspectd/inspectd/infer/latency",
}

// TestPackagesBuildWithoutCgo builds cgoFreePackages with CGO_ENABLED=0 in
// both flavours and checks with go list -deps that none of them depends on
// a cgo library, and that the edge runtime (infer) no longer pulls in the
// backbone importers that only `inspectd bench` needs.
func TestPackagesBuildWithoutCgo(t *testing.T) {
	if testing.Short() {
		t.Skip("builds packages")
	}
	cgoLibs := []string{"github.com/yalue/onnxruntime_go", "gocv.io/x/gocv"}
	for _, tags := range []string{"", "workstation"} {
		list := exec.Command("go", append([]string{"list", "-deps", "-tags", tags, "-f", "{{.ImportPath}}"}, cgoFreePackages...)...)
		out, err := list.Output()
		if err != nil {
			t.Fatalf("go list -deps (tags %q): %v", tags, err)
		}
		deps := strings.Fields(string(out))
		if len(deps) < 50 {
			t.Fatalf("go list -deps returned only %d packages; the check would prove nothing", len(deps))
		}
		for _, d := range deps {
			for _, lib := range cgoLibs {
				if d == lib || strings.HasPrefix(d, lib+"/") {
					t.Errorf("tags %q: a cgo-free package depends on %s", tags, d)
				}
			}
		}
		build := exec.Command("go", append([]string{"build", "-tags", tags}, cgoFreePackages...)...)
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			t.Errorf("CGO_ENABLED=0 go build -tags %q: %v\n%s", tags, err, out)
		}
	}
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", "github.com/inspectd/inspectd/infer").Output()
	if err != nil {
		t.Fatalf("go list -deps infer: %v", err)
	}
	for _, d := range strings.Fields(string(out)) {
		for _, heavy := range []string{"github.com/nlpodyssey/gopickle", "github.com/sbinet/npyio", "gonum.org/v1/gonum", "github.com/inspectd/inspectd/models/backbone", "github.com/gomlx"} {
			if strings.HasPrefix(d, heavy) {
				t.Errorf("the edge runtime infer depends on %s (benchmarking code belongs in infer/bench)", d)
			}
		}
	}
}

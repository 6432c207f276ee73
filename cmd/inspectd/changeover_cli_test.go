package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/inspectd/inspectd/models/netdef"
)

// productsConfig is the example configuration with model.bundle replaced
// by [[product]] gear (the example's random bundle) and shaft (a second
// random bundle, seed 2), and returns its path and shaft's bundle.
func productsConfig(t *testing.T) (path, shaft string) {
	t.Helper()
	path = exampleWithBundle(t)
	dir := filepath.Dir(path)
	shaft = filepath.Join(dir, "shaft")
	if _, err := netdef.WriteRandomBundle(shaft, netdef.RandomBundleOptions{Height: 32, Width: 32, D: 4, AlignSize: 16, Seed: 2}); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Replace(string(data), "\nbundle = \"bundle\"\n", "\n", 1)
	text += "\n[[product]]\nname = \"gear\"\ncode = 1\nbundle = \"bundle\"\n\n[[product]]\nname = \"shaft\"\ncode = 2\nbundle = \"shaft\"\n[product.decision]\nthreshold = 0.7\n"
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, shaft
}

// TestCheckConfigVerifiesEveryProductBundle: check-config verifies the
// bundle of every [[product]]; a corrupted one is reported with the
// product's key (product[2].bundle), its line and the product's name.
func TestCheckConfigVerifiesEveryProductBundle(t *testing.T) {
	path, shaft := productsConfig(t)
	code, stdout, stderr := runCLI(t, "check-config", "-c", path)
	if code != 0 || !strings.Contains(stdout, "model bundles of 2 products verified: gear (") {
		t.Fatalf("check-config with two good products: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	f := filepath.Join(shaft, "localize.onnx")
	data, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0xff
	if err := os.WriteFile(f, data, 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr = runCLI(t, "check-config", "-c", path)
	want := fmt.Sprintf(`%s:%d: product[2].bundle: product "shaft": `, path, lineOf(t, path, `bundle = "shaft"`))
	if code != 1 || !strings.Contains(stderr, want) || !strings.Contains(stderr, "localize.onnx") {
		t.Fatalf("check-config with a corrupted product bundle: exit %d\nstdout: %s\nstderr: %s\nwant exit 1 and %q naming localize.onnx", code, stdout, stderr, want)
	}
}

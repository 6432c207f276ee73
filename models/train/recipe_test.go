//go:build workstation

package train

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/inspectd/inspectd/config"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

func TestRecipeExampleMatchesDefaults(t *testing.T) {
	r, err := LoadRecipe("recipe.example.toml")
	if err != nil {
		t.Fatalf("example recipe is invalid:\n%v", err)
	}
	want := DefaultRecipe()
	want.file = "recipe.example.toml"
	if !reflect.DeepEqual(*r, want) {
		t.Errorf("example differs from DefaultRecipe:\n got %+v\nwant %+v", *r, want)
	}
	if d, err := LoadRecipe(""); err != nil || !reflect.DeepEqual(*d, DefaultRecipe()) {
		t.Errorf("LoadRecipe(\"\") = %+v, %v; want the defaults", d, err)
	}
}

func TestInvalidRecipes(t *testing.T) {
	files, _ := filepath.Glob("testdata/invalid/*.toml")
	if len(files) < 5 {
		t.Fatalf("only %d invalid recipes", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			_, err := LoadRecipe(f)
			if err == nil {
				t.Fatal("LoadRecipe succeeded")
			}
			if !errors.Is(err, config.ErrInvalid) {
				t.Errorf("not ErrInvalid: %v", err)
			}
			got := err.Error() + "\n"
			golden := strings.TrimSuffix(f, ".toml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (go test -tags workstation ./models/train -run TestInvalidRecipes -update)", err)
			}
			if got != string(want) {
				t.Errorf("--- got\n%s--- want\n%s", got, want)
			}
		})
	}
}

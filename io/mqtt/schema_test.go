package mqtt_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/inspectd/inspectd/inspection"
)

// TestResultSchemaMatchesStruct keeps docs/schema/result.schema.json in step
// with the JSON tags of inspection.Result: the same properties, and every
// field without omitempty/omitzero required.
func TestResultSchemaMatchesStruct(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "docs", "schema", "result.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	var sch struct {
		Required   []string                   `json:"required"`
		Properties map[string]json.RawMessage `json:"properties"`
	}
	if err := json.Unmarshal(data, &sch); err != nil {
		t.Fatal(err)
	}
	var props, required []string
	rt := reflect.TypeFor[inspection.Result]()
	for i := range rt.NumField() {
		tag := rt.Field(i).Tag.Get("json")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" || name == "" {
			continue
		}
		props = append(props, name)
		if !strings.Contains(opts, "omitempty") && !strings.Contains(opts, "omitzero") {
			required = append(required, name)
		}
	}
	var schemaProps []string
	for k := range sch.Properties {
		schemaProps = append(schemaProps, k)
	}
	slices.Sort(props)
	slices.Sort(schemaProps)
	slices.Sort(required)
	slices.Sort(sch.Required)
	if !slices.Equal(props, schemaProps) {
		t.Errorf("schema properties %v\nstruct fields      %v", schemaProps, props)
	}
	if !slices.Equal(required, sch.Required) {
		t.Errorf("schema required %v\nstruct required  %v", sch.Required, required)
	}
}

package config

import "regexp"

// Station identifies the inspection station; its id appears in every MQTT
// topic and result.
type Station struct {
	// ID is the unique station identifier (required): letters, digits,
	// '-', '_' and '.', at most 64 characters.
	ID string `toml:"id"`
	// Name is a human-readable name shown in reports.
	Name string `toml:"name"`
	// Line names the production line the station belongs to.
	Line string `toml:"line"`
}

var stationIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

func (s *Station) defaults() {}

func (s *Station) validate(v *Checker) {
	if s.ID != "" && !stationIDRE.MatchString(s.ID) {
		v.Errorf("id", "%q is not a valid station id; use 1 to 64 letters, digits, '-', '_' or '.', starting with a letter or digit (it becomes part of MQTT topics)", s.ID)
	}
}

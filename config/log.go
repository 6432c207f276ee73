package config

// Log configures the daemon's structured log on standard error.
type Log struct {
	// Level is "debug", "info", "warn" or "error".
	Level string `toml:"level"`
	// Format is "text" (key=value) or "json".
	Format string `toml:"format"`
}

func (l *Log) defaults() { *l = Log{Level: "info", Format: "text"} }

func (l *Log) validate(v *Checker) {
	v.OneOf("level", l.Level, "debug", "info", "warn", "error")
	v.OneOf("format", l.Format, "text", "json")
}

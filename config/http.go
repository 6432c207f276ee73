package config

// HTTP configures the status server: the status page, the JSON API
// (with the software trigger and the clear-fault command), /healthz and
// Prometheus /metrics (io/web).
type HTTP struct {
	// Enabled turns the server on.
	Enabled bool `toml:"enabled"`
	// Listen is the host:port to listen on.
	Listen string `toml:"listen"`
	// History is the number of recent results kept (without their images)
	// for the status page and /api/results, 1 to 10000.
	History int `toml:"history"`
}

func (h *HTTP) defaults() { *h = HTTP{Enabled: true, Listen: "127.0.0.1:9120", History: 100} }

func (h *HTTP) validate(v *Checker) {
	if h.Enabled {
		v.HostPort("listen", h.Listen)
	}
	v.IntRange("history", h.History, 1, 10_000, "results")
}

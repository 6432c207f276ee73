package config

// HTTP configures the status server: the status page, the JSON API,
// /healthz and Prometheus /metrics (io/web).
type HTTP struct {
	// Enabled turns the server on.
	Enabled bool `toml:"enabled"`
	// Listen is the host:port to listen on.
	Listen string `toml:"listen"`
}

func (h *HTTP) defaults() { *h = HTTP{Enabled: true, Listen: "127.0.0.1:9120"} }

func (h *HTTP) validate(v *Checker) {
	if h.Enabled {
		v.HostPort("listen", h.Listen)
	}
}

// Package systemd holds the systemd unit that runs inspectd as a
// Type=notify service, embedded so that tools and tests can read it.
package systemd

import _ "embed"

// Unit is the text of systemd/inspectd.service.
//
//go:embed inspectd.service
var Unit string

//go:build !linux

package gpio

import "fmt"

func openChip(name string) (Chip, error) {
	return nil, fmt.Errorf("gpio.chip %q: GPIO character devices need Linux; use chip = \"sim\": %w", name, ErrNoChip)
}

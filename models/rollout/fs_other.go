//go:build !unix

package rollout

const (
	noFollow = 0
	nonBlock = 0
)

func isNoSpace(err error) bool { return false }

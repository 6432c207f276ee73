// Package mqtt publishes inspection results, availability and statistics to
// the plant broker and receives commands (reload, threshold, trigger).
// Results pass through a bounded on-disk outbox so that nothing is lost while
// the broker is unreachable.
package mqtt

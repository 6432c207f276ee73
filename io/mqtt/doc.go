// Package mqtt publishes inspection results, events, availability and
// statistics to the plant broker and executes commands (trigger, reload,
// threshold, status, pause, resume, clear_fault, and — on a host that
// implements inspection.ProductSelector / inspection.ModelManager —
// product, model_install, model_activate, model_rollback). docs/mqtt.md is
// the integrator's reference; docs/schema holds a JSON Schema per payload.
//
// Delivery: every result and event goes through a bounded bbolt outbox
// (outbox_dir/outbox.db) before it is published. Deliver encodes the result
// and queues it for the outbox writer, which appends in group commits with
// fsync; one publisher goroutine sends the outbox in order (one message in
// flight, QoS 1 or 2) and deletes records only after PUBACK/PUBCOMP. So
// results survive a broker or network outage and a restart of the daemon
// while the broker is down, and arrive in order, at least once (subscribers
// drop duplicates by result_id). A full outbox drops its oldest messages,
// counted and reported as an outbox_drop event. A corrupt record is
// quarantined with a log line. The database file is verified with plain
// reads before bbolt maps it (verify.go); a damaged one is moved aside and
// replaced, with a critical event and a health problem, never a crash
// loop. When the outbox cannot be written, messages are published
// directly (at most once) or counted as lost, and Deliver returns an error
// for a result it could not keep.
//
// Health: the Client implements inspection.HealthReporter (Problems: a
// damaged outbox, lost results, an unwritable or stalled outbox, a
// suspected client-id takeover) and inspection.FaultClearer (ClearFault:
// clears the latched ones).
//
// paho runs with CleanSession(true) and keeps no store: the outbox, not
// the broker session or paho, holds unacknowledged messages and sends them
// again after a reconnect, so two layers never resend the same message,
// and commands sent while the station was offline are not executed late.
// The client reconnects by itself (supervise), with a fresh paho client per
// attempt: paho's automatic reconnect would keep the message IDs of the
// lost connection's unacknowledged publishes reserved for ever.
//
// Modes: mqtt.mode = "json" (the default) publishes the JSON topics above;
// "sparkplug" makes the client an Eclipse Sparkplug B 3.0 edge node
// (docs/sparkplug.md, package sparkplug): same connection, TLS, auth and
// outbox, but an NDEATH Will with a persisted bdSeq, NBIRTH/DBIRTH after
// every connect, one seq across all N/D messages, results and events as
// NDATA (historical after an outage), the camera as a device, and NCMD/DCMD
// instead of the JSON commands.
//
// Lifecycle: New checks the options and allocates, opening nothing and
// starting no goroutine. Start(ctx, host) opens the outbox (and in
// Sparkplug mode advances the persisted bdSeq), connects and starts the
// goroutines; host (the daemon) executes commands and supplies the figures
// of the stats messages and births. Start fails on configuration mistakes
// (credentials refused, TLS verification, a plain connection to a TLS port,
// an outbox in use by another process), releasing what it acquired, and
// keeps retrying in the background when the broker is merely unreachable.
// Close drains, says goodbye, stops and waits for every goroutine and
// closes the outbox. The Client is a prometheus.Collector of its own
// series.
//
// Code: client.go (API, lifecycle), writer.go (stage → outbox, direct
// publishing when it cannot be written), link.go (connection, supervisor,
// publisher), session.go (the session interface and mode "json"),
// commands.go (JSON commands), models.go (the product and model commands
// shared by both modes: validation, one model command at a time, install
// progress as events), retained.go (the retained-command check),
// sparkplug.go (mode "sparkplug"), outbox.go, verify.go (the outbox file
// check), health.go (Problems, ClearFault), metrics.go.
package mqtt

package daemon

import "github.com/inspectd/inspectd/decision"

// Decider is the decision rule the pipeline applies to every part: the
// one `inspectd eval` applies too (package decision).
type Decider = decision.Decider

// DecisionInput is what Decide needs about one part.
type DecisionInput = decision.Input

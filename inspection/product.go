package inspection

import (
	"context"
	"errors"
	"time"
)

// Product selection sources: who may choose the active product
// (changeover.source). Exactly one is authoritative; the daemon refuses
// the others with ErrProductSource.
const (
	ProductSourceMQTT      = "mqtt"      // the cmd/product command
	ProductSourceSparkplug = "sparkplug" // the DCMD metric Device Control/Product
	ProductSourceHTTP      = "http"      // POST /api/product
	ProductSourcePLC       = "plc"       // a Modbus holding register the PLC writes
	ProductSourceGPIO      = "gpio"      // binary-coded input lines read at each trigger
)

// Reasons a product selection is refused; the daemon wraps them with the
// product, the source and what to do.
var (
	// ErrProductSource: the request came from a source other than
	// changeover.source.
	ErrProductSource = errors.New("not the configured product source")
	// ErrUnknownProduct: no [[product]] has that name or code.
	ErrUnknownProduct = errors.New("unknown product")
)

// ProductSelector chooses the active product: parts triggered after a
// successful call are inspected with that product's bundle and settings;
// parts triggered before keep theirs.
type ProductSelector interface {
	// SelectProduct selects the product named name; source is one of the
	// ProductSource* constants.
	SelectProduct(name, source string) error
	// SelectProductCode selects the product whose [[product]] code is
	// code (the PLC register's value, the GPIO code lines' value).
	SelectProductCode(code int, source string) error
}

// Event kinds of product changeover and model rollout.
const (
	EventProductSwitched = "product_switched" // the active product changed
	EventProductRefused  = "product_refused"  // a selection was refused (unknown product, wrong source)
	EventProductFailed   = "product_failed"   // a product's bundle failed to load or verify at switch time
	EventModelInstall    = "model_install"    // rollout progress and outcome of cmd/model_install
	EventModelActivated  = "model_activated"  // an installed bundle became a product's model
	EventModelRollback   = "model_rollback"   // a product went back to its previous bundle
)

// ProductsStatus is the changeover state: the active product and every
// configured product.
type ProductsStatus struct {
	Active    string `json:"active"`
	Source    string `json:"source"`     // changeover.source ("none": fixed product)
	OnFailure string `json:"on_failure"` // changeover.on_failure
	// Unavailable is set while on_failure = "reject" holds a product that
	// cannot be inspected (every part is rejected), with the reason.
	Unavailable string          `json:"unavailable,omitempty"`
	Products    []ProductStatus `json:"products"`
}

// ProductStatus is one configured product.
type ProductStatus struct {
	Name       string  `json:"name"`
	Code       int     `json:"code,omitempty"`
	BundleHash string  `json:"bundle_hash"`
	BundleDir  string  `json:"bundle_dir"`
	Active     bool    `json:"active"`
	Loaded     bool    `json:"loaded"`    // its engine is built and warm
	MemoryMB   float64 `json:"memory_mb"` // measured when it was loaded (0 if never)
	Counts     Counts  `json:"counts"`
}

// ModelInstall is a cmd/model_install request: a signed bundle archive
// to download, verify, unpack and make available (and active if asked).
type ModelInstall struct {
	URL       string `json:"url"`
	SHA256    string `json:"sha256"`    // hex SHA-256 of the archive
	Signature string `json:"signature"` // base64 ed25519 signature (inspectd sign)
	// Product is the [[product]] the bundle is for; "" means the bundle
	// manifest's product, or the station's only product.
	Product  string `json:"product,omitempty"`
	Activate bool   `json:"activate,omitempty"` // activate once available
	Size     int64  `json:"size,omitempty"`     // expected archive size in bytes, 0 = unknown
}

// ModelProgress is one step of an install, reported as it happens.
type ModelProgress struct {
	Stage  string `json:"stage"` // download, verify, unpack, load, available, activated
	Bytes  int64  `json:"bytes,omitempty"`
	Total  int64  `json:"total,omitempty"`
	Detail string `json:"detail,omitempty"`
}

// ModelOutcome is the result of an install, activation or rollback.
type ModelOutcome struct {
	Product       string        `json:"product"`
	ArchiveSHA256 string        `json:"sha256"`
	BundleHash    string        `json:"bundle_hash"`
	State         string        `json:"state"` // available, active, rolled_back
	Previous      string        `json:"previous_sha256,omitempty"`
	Bytes         int64         `json:"bytes,omitempty"`
	Duration      time.Duration `json:"-"`
	DurationMs    float64       `json:"duration_ms"`
}

// ModelManager installs, activates and rolls back signed bundles
// (cmd/model_install, cmd/model_activate, cmd/model_rollback). On any
// failure the running models are untouched and the error says why.
type ModelManager interface {
	InstallModel(ctx context.Context, req ModelInstall, progress func(ModelProgress)) (ModelOutcome, error)
	// ActivateModel makes the installed archive sha256 the model of
	// product ("" = the archive's product) between two parts.
	ActivateModel(ctx context.Context, product, sha256 string) (ModelOutcome, error)
	// RollbackModel makes product's previous bundle its model again.
	RollbackModel(ctx context.Context, product string) (ModelOutcome, error)
}

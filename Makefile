# inspectd — run `make help` for the targets.
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo 0.0.0-dev)
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null)
LDFLAGS := -X github.com/inspectd/inspectd/buildinfo.Version=$(VERSION) -X github.com/inspectd/inspectd/buildinfo.Commit=$(COMMIT)

.DEFAULT_GOAL := help
.PHONY: help deps build build-workstation test bench bench-torch lint clean demo soak soak-reload hostile quality ablations quality-long

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  %-18s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

deps: ## install apt packages, the ONNX Runtime library and Go modules (idempotent)
	@bash scripts/deps.sh

demo: ## run the daemon on the built-in demo (replayed parts, status page, simulated GPIO); DEMO_PARTS=50
	@DEMO_PARTS=$(or $(DEMO_PARTS),50) bash scripts/demo.sh

soak: ## run the daemon for SOAK_PARTS (10000) parts of a 640x480 replay and check its RSS growth (≤ 5 MB)
	@bash scripts/soak.sh

soak-reload: ## send RELOADS (200) SIGHUP reloads to a running daemon and check its RSS growth (≤ 20 MB)
	@bash scripts/soak_reload.sh

hostile: ## replay issue 24's hostile inputs and faults against a real daemon and broker; one PASS/FAIL line per class (~1 min)
	@bash scripts/hostile.sh

quality: ## train + evaluate the default recipe on the shared sets and RTO copies beside the PyTorch peers; one table (hours; QUALITY_SETS, QUALITY_PEERS)
	@bash scripts/quality.sh

ablations: ## the paper's ablations (global/local centre, DGM, IMM) and the local memory on one set (ABLATION_SET, ~30 min)
	@bash scripts/ablations.sh

quality-long: deps ## the long quality tests (INSPECTD_LONG=1, tens of minutes, real sets in ../shared); prints a table
	INSPECTD_LONG=1 $(GO) test -tags workstation -count=1 -timeout 90m -v -run 'MVTecLong|LongQuality' ./models/train/... 2>&1 | tee quality-long.log | grep -E '^\s*(\||--- |ok|FAIL)'

build: ## build the edge binary into bin/inspectd
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/inspectd ./cmd/inspectd

build-workstation: ## build the workstation binary (training, evaluation) into bin/inspectd-workstation
	$(GO) build -tags workstation -ldflags "$(LDFLAGS)" -o bin/inspectd-workstation ./cmd/inspectd

test: deps lint ## set up this machine, then run lint and every test (what CI runs)
	@bash scripts/test.sh

bench: deps build ## run the Go benchmarks and `inspectd bench` (2 threads, 256x256)
	$(GO) test -run '^$$' -bench . -benchmem ./...
	bin/inspectd bench --threads 2 --size 256

bench-torch: deps build ## time localise in inspectd (ONNX Runtime) and in PyTorch on the same weights; print the ratio
	@bash bench/compare.sh 2 50

lint: ## gofmt check and go vet (edge and workstation builds)
	@out="$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))"; \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags workstation ./...

clean: ## remove build outputs (keeps the cached ONNX Runtime download)
	rm -rf bin
	$(GO) clean -testcache

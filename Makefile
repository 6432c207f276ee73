# inspectd — run `make help` for the targets.
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo 0.0.0-dev)
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null)
LDFLAGS := -X github.com/inspectd/inspectd/buildinfo.Version=$(VERSION) -X github.com/inspectd/inspectd/buildinfo.Commit=$(COMMIT)

.DEFAULT_GOAL := help
.PHONY: help deps build build-workstation test bench bench-torch lint clean demo soak soak-reload hostile quality ablations quality-long fleet-demo

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z0-9-]+:.*## / {printf "  %-18s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

deps: ## install apt packages, the ONNX Runtime library and Go modules (idempotent)
	@bash scripts/deps.sh

demo: ## run the daemon on the built-in demo (replayed parts, status page, simulated GPIO); DEMO_PARTS=50
	@DEMO_PARTS=$(or $(DEMO_PARTS),50) bash scripts/demo.sh

soak: ## run the daemon for SOAK_PARTS (10000) parts of a 640x480 replay and check its RSS growth (≤ 5 MB)
	@bash scripts/soak.sh

soak-reload: ## send RELOADS (200) SIGHUP reloads to a running daemon and check its RSS growth (≤ 20 MB)
	@bash scripts/soak_reload.sh

fleet-demo: build ## 20 stations on one broker: signed rollout to all, 3 corrupt downloads, a mosquitto bridge outage; PASS/FAIL lines (~5 min)
	@bash scripts/fleet-demo.sh

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

# The arm64 edge binary, cross-compiled with Debian's aarch64 gcc against the
# Debian 12 arm64 sysroot that scripts/sysroot-arm64.sh makes (OpenCV and its
# dependencies; no `dpkg --add-architecture` on this machine).
SYSROOT_ARM64 := $(CURDIR)/.deps/sysroot-arm64
ARM64_ENV := CGO_ENABLED=1 GOOS=linux GOARCH=arm64 CC=aarch64-linux-gnu-gcc CXX=aarch64-linux-gnu-g++ \
	PKG_CONFIG_PATH= PKG_CONFIG_SYSROOT_DIR=$(SYSROOT_ARM64) \
	PKG_CONFIG_LIBDIR=$(SYSROOT_ARM64)/usr/lib/aarch64-linux-gnu/pkgconfig:$(SYSROOT_ARM64)/usr/share/pkgconfig \
	CGO_CFLAGS="-O2 -g --sysroot=$(SYSROOT_ARM64)" CGO_CXXFLAGS="-O2 -g --sysroot=$(SYSROOT_ARM64)" \
	CGO_LDFLAGS="--sysroot=$(SYSROOT_ARM64) -Wl,-rpath-link=$(SYSROOT_ARM64)/usr/lib/aarch64-linux-gnu -Wl,-rpath-link=$(SYSROOT_ARM64)/lib/aarch64-linux-gnu"
.PHONY: build-arm64 check-arm64

build-arm64: ## cross-build the arm64 edge binary into bin/linux-arm64/inspectd (first run: ~1 GB Debian arm64 sysroot, a few minutes)
	@bash scripts/sysroot-arm64.sh
	@INSPECTD_ORT_ARCH=arm64 bash scripts/deps.sh
	$(ARM64_ENV) $(GO) build -ldflags "$(LDFLAGS)" -o bin/linux-arm64/inspectd ./cmd/inspectd

check-arm64: build-arm64 build ## run the arm64 binary under qemu (version, check-config, bench, 12 demo parts) and compare with amd64
	@bash scripts/check_arm64.sh

# Debian packages (scripts/package.sh, templates in packaging/). PACKAGE_ARCHES
# picks the architectures: on amd64 both (arm64 cross-built by build-arm64),
# on an arm64 box (a Jetson) its own, from `make build`; PACKAGE_VERSION
# overrides the version derived from git describe.
HOST_DEB_ARCH := $(shell dpkg --print-architecture 2>/dev/null)
PACKAGE_ARCHES ?= $(if $(filter amd64,$(HOST_DEB_ARCH)),amd64 arm64,$(HOST_DEB_ARCH))
PACKAGE_CROSS_ARM64 := $(and $(filter arm64,$(PACKAGE_ARCHES)),$(filter-out arm64,$(HOST_DEB_ARCH)))
.PHONY: package check-package

package: build $(if $(PACKAGE_CROSS_ARM64),build-arm64) ## build dist/inspectd_<version>_<arch>.deb for PACKAGE_ARCHES (on amd64: amd64 arm64) with dpkg-deb; lintian-clean
	@PACKAGE_ARCHES="$(PACKAGE_ARCHES)" bash scripts/package.sh

check-package: build ## install the amd64 .deb in a booted Debian 12 systemd container: start, reload, watchdog, stop, upgrade, purge (~2.5 min; first run ~8 min: 241 MB root, 270 MB of .debs, cached)
	@bash scripts/check_package.sh

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

# segad-edge build, test and demo entry points. README.md names two of them:
#   make demo   - the main job on an embedded default (no camera, broker or network)
#   make test   - every test, with everything it needs installed or started first
# Both run `make setup` first, which is idempotent.

SHELL := /bin/bash
GO ?= go
BIN := bin/segad
# The ONNX Runtime library that scripts/setup.sh extracts from npm (git-ignored).
export SEGAD_ONNXRUNTIME_LIB ?= $(CURDIR)/.deps/onnxruntime/libonnxruntime.so.1
# Real data for tests and benchmarks, never copied into the repository.
export SEGAD_SHARED ?= $(abspath $(CURDIR)/../shared)

.PHONY: all setup build test test-short vet fmt-check bench demo golden soak-drift clean console-screenshots acceptance

all: build

setup:
	@bash scripts/setup.sh

build:
	$(GO) build -o $(BIN) ./cmd/segad

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# The test command named in README.md and run by .ci/run.
test: setup fmt-check vet build
	$(GO) test -count=1 -timeout 20m ./...
	# Mat leak check: every source kind, thousands of frames, Mat count back to zero.
	$(GO) test -count=1 -tags matprofile -run Leak ./capture/
	# Race detector (with checkptr: unsafe pointer rules) on the concurrent and unsafe code.
	$(GO) test -count=1 -race -short ./brf/... ./segad/... ./npy ./metrics ./config ./model ./audit ./logging ./daemon ./mqtt/... ./history ./assurance/drift

test-short:
	$(GO) test -short ./...

# Benchmarks of the hot paths (figures go into README.md as ratios).
bench: setup
	$(GO) test -run '^$$' -bench . -benchmem ./...

# Heavy acceptance measurements on the shared real data (minutes; figures in README.md).
acceptance: setup
	SEGAD_ACCEPTANCE=1 $(GO) test -count=1 -timeout 30m -run 'TestAlignTire(Acceptance|Background)' -v ./fit

# Drift soak: 20,000 steady demo parts, each inspected by the real model,
# through the drift monitor; no alarm may be raised (about 10-20 min on 2 cores).
soak-drift: setup
	SEGAD_SOAK=1 $(GO) test -count=1 -timeout 60m -run TestSoakSteadyLineFullPipeline -v ./assurance/drift

# Regenerates the golden fixtures from the reference tools (numpy/scipy/xgboost).
golden: setup
	bash scripts/golden/generate.sh

# DEMO_ARGS: extra `segad demo` flags, e.g. make demo DEMO_ARGS=--jitter (fixturing).
demo: setup build
	bash scripts/demo.sh $(DEMO_ARGS)

# Screenshots of the console pages for docs/ and README (headless chromium).
console-screenshots: setup
	SEGAD_CONSOLE_SCREENSHOTS=1 $(GO) test -count=1 -run TestConsoleDemoLine ./cmd/segad

clean:
	rm -rf bin

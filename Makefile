# Tidings: `make run` for development, `make test` for every check, `make release` for the binary.
# Every tool is installed here, from the crates, Debian and npm registries only; a second run skips
# what is already installed.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

CARGO_LEPTOS_VERSION := 0.3.11
# 0.22 needs rustc 1.96.1.
TRUNK_VERSION := 0.21.14
# The wasm-bindgen CLI must equal the wasm-bindgen crate in Cargo.lock, so read it from there.
WASM_BINDGEN_VERSION := $(shell awk '/^name = "wasm-bindgen"$$/ { getline; gsub(/[^0-9.]/, "", $$0); print; exit }' Cargo.lock)

CARGO_BIN := $(or $(CARGO_HOME),$(HOME)/.cargo)/bin
export PATH := $(CURDIR)/tools/node_modules/.bin:$(CURDIR)/end2end/node_modules/.bin:$(CARGO_BIN):$(PATH)
# Never let a tool fetch a browser or a binary from outside the registries.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD := 1
# Tools run on this machine only: no LTO and light optimisation halve their install time.
TOOL_BUILD := CARGO_PROFILE_RELEASE_LTO=off CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 CARGO_PROFILE_RELEASE_OPT_LEVEL=1

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PACKAGES := chromium openssl systemd redis-server php-cli php-symfony-mercure php-symfony-http-client

.PHONY: help setup setup-rust setup-cargo-leptos setup-wasm-bindgen setup-trunk setup-npm setup-apt \
        run test lint unit release dist e2e deploy-check bench bench-smoke bench-soak bench-scale bench-tls bench-floor setup-bench clean

help:
	@echo "make run      install what is missing, then serve the console at http://127.0.0.1:8080 (cargo leptos watch)"
	@echo "make test     install what is missing, then run every check"
	@echo "make release  build target/release/tidings, one binary with the console embedded"
	@echo "make dist     build the client-only console with Trunk into dist/"
	@echo "make bench    benchmark against nginx + nchan, then the soak; writes BENCHMARKS.md (not part of make test)"
	@echo "make bench-soak  only the soak: 2,000 hostile connections for 60 s; prints its tables"
	@echo "make bench-scale only the scale scenario, 1,000 to 100,000 streams; replaces its section of BENCHMARKS.md"
	@echo "make bench-floor only the unicast floor against a bare axum handler; prints its tables (throughput, and instructions per publish)"
	@echo "make bench-tls   only the idle streams over HTTPS (HTTP/1.1 and HTTP/2); prints their table"

## ---------------------------------------------------------------- set-up (idempotent)

setup: setup-rust setup-cargo-leptos setup-wasm-bindgen setup-trunk setup-npm setup-apt

setup-rust:
	@rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
	@rustup component list --installed | grep -q '^clippy' || rustup component add clippy
	@rustup component list --installed | grep -q '^rustfmt' || rustup component add rustfmt

# cargo-leptos 0.3.11 needs rustc >= 1.96, newer than stable 1.95: nightly builds it.
# `no_downloads` turns any attempt to fetch a tool into an error instead of a hang.
setup-cargo-leptos:
	@if cargo leptos --version 2>/dev/null | grep -qx "cargo-leptos $(CARGO_LEPTOS_VERSION)"; then exit 0; fi; \
	 rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal; \
	 echo "installing cargo-leptos $(CARGO_LEPTOS_VERSION) (about 8 minutes)"; \
	 $(TOOL_BUILD) cargo +nightly install cargo-leptos --version $(CARGO_LEPTOS_VERSION) --locked --features no_downloads

# Without --locked: the CLI's own lock file wants a webpki-roots version the registry lacks.
setup-wasm-bindgen:
	@if wasm-bindgen --version 2>/dev/null | grep -qx "wasm-bindgen $(WASM_BINDGEN_VERSION)"; then exit 0; fi; \
	 echo "installing wasm-bindgen-cli $(WASM_BINDGEN_VERSION) (about 4 minutes)"; \
	 $(TOOL_BUILD) cargo install wasm-bindgen-cli --version $(WASM_BINDGEN_VERSION) --force

setup-trunk:
	@if trunk --version 2>/dev/null | grep -qx "trunk $(TRUNK_VERSION)"; then exit 0; fi; \
	 echo "installing trunk $(TRUNK_VERSION) (about 9 minutes)"; \
	 $(TOOL_BUILD) cargo install trunk --version $(TRUNK_VERSION) --locked

# wasm-opt comes from npm (binaryen 132): Debian's binaryen makes a wasm that breaks hydration.
setup-npm: tools/node_modules/.installed end2end/node_modules/.installed

tools/node_modules/.installed: tools/package.json tools/package-lock.json
	cd tools && npm ci --no-audit --no-fund
	touch $@

end2end/node_modules/.installed: end2end/package.json end2end/package-lock.json
	cd end2end && npm ci --no-audit --no-fund
	touch $@

setup-apt:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	 if [ -n "$$missing" ]; then \
	   echo "installing Debian packages:$$missing"; \
	   $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	 fi

## ---------------------------------------------------------------- development

run: setup
	cargo leptos watch

# --precompress builds the site before the server, which embeds it (feature `embed`).
release: setup
	cargo leptos build --release --precompress --bin-features embed

# The client-only console (Trunk) in dist/; --offline: every tool is already installed.
dist: setup
	trunk build --release --offline

## ---------------------------------------------------------------- checks

test: setup lint unit release dist e2e deploy-check bench-smoke

lint:
	cargo fmt --all --check
	cargo clippy --locked -p server -p app -p bench --all-targets -- -D warnings
	cargo clippy --locked -p frontend --target wasm32-unknown-unknown -- -D warnings
	cargo clippy --locked -p frontend --no-default-features --features csr --target wasm32-unknown-unknown -- -D warnings

unit:
	cargo test --locked -p app -p server

e2e:
	cd end2end && npx playwright test

# The systemd unit must load: verify it against the binary just built.
deploy-check: release
	@unit=$$(mktemp -d)/tidings.service; \
	 sed 's#/usr/local/bin/tidings#$(CURDIR)/target/release/tidings#' deploy/tidings.service > $$unit; \
	 systemd-analyze verify $$unit && echo "deploy/tidings.service verifies"

## ---------------------------------------------------------------- benchmark (not part of `make test`)

BENCH_APT := nginx libnginx-mod-nchan valgrind

setup-bench:
	@missing=""; for p in $(BENCH_APT); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	 if [ -n "$$missing" ]; then \
	   echo "installing Debian packages:$$missing"; \
	   $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	 fi

# The soak: hostile and broken connections of every kind held against a fresh Tidings.
SOAK := --soak-seconds 60 --soak-connections 2000
# Idle streams over HTTPS: HTTP/1.1 (a TLS connection per stream) and HTTP/2 (100 per connection).
TLS := --tls-http1 5000,10000 --tls-http2 10000

# The scale scenario (issue #14): one hub process up to 19,000 streams, then a cluster of six
# Tidings nodes on one redis-server against nginx + nchan with six workers, up to 100,000.
SCALE := --scale 1000,10000,19000,50000,100000 --scale-reps 3

# Tidings against nginx + nchan, interleaved, three repetitions, then the soak and the scale
# scenario: writes BENCHMARKS.md and the charts.
bench: release setup-bench
	cargo build --locked --release -p bench
	target/release/tidings-bench --subscribers 10000 --reps 3 --targets tidings,cluster,mercure,nchan,baseline $(SOAK) $(SCALE) $(TLS)
	bench/instructions.sh target/release/tidings

# Only the soak (about 100 s), its tables printed; BENCHMARKS.md and the chart are left alone.
bench-soak: release
	cargo build --locked --release -p bench
	target/release/tidings-bench --reps 0 --idle 0 --targets tidings $(SOAK) --out -

# Only the unicast floor (issue #15, about two minutes): Tidings against the bare axum baseline,
# three interleaved runs, their table printed, then the instructions each executes per publish
# (callgrind: a count that the machine's other load does not move); BENCHMARKS.md is left alone.
bench-floor: release setup-bench
	cargo build --locked --release -p bench
	target/release/tidings-bench --reps 3 --idle 0 --targets tidings,baseline --floor-only --out -
	bench/instructions.sh target/release/tidings

# Only the HTTPS idle streams (about a minute), their table printed; BENCHMARKS.md is left alone.
bench-tls: release
	cargo build --locked --release -p bench
	target/release/tidings-bench --reps 0 --idle 0 --targets tidings $(TLS) --out -

# Only the scale scenario (about 15 minutes): its section of BENCHMARKS.md and its chart are
# replaced, the rest is left alone.
bench-scale: release setup-bench
	cargo build --locked --release -p bench
	target/release/tidings-bench --reps 0 --idle 0 $(SCALE)

# A few hundred streams through the load generator, so it cannot rot (part of `make test`);
# the scale scenario in small: three nodes on Redis, two holder processes.
bench-smoke: release
	cargo build --locked --release -p bench
	target/release/tidings-bench --subscribers 300 --idle 300 --reps 1 --targets tidings,mercure,baseline --seconds 1 \
	  --scale 400 --scale-single-max 0 --scale-nodes 3 --scale-holder-streams 200 --scale-hubs tidings --out - > /dev/null

clean:
	cargo clean
	rm -rf dist tools/node_modules end2end/node_modules end2end/test-results

# Two commands set everything up on a fresh machine with a Rust toolchain:
#   make run    build, start backend1 (:9001), backend2 (:9002) and the load balancer (:8080)
#   make test   the whole test suite
.PHONY: run build test lint bench clean static fuzz

CARGO ?= cargo
PORT ?= 8080

build:
	$(CARGO) build --release

run: build
	@echo "backend1 on :9001, backend2 on :9002, load balancer on :$(PORT) — try: curl localhost:$(PORT)  (Ctrl-C stops all three)"
	@bash -c 'stop() { kill $$b1 $$b2 $$lb 2>/dev/null; }; trap "stop; exit 130" INT TERM; trap stop EXIT; \
	  ./target/release/backend1 & b1=$$!; \
	  ./target/release/backend2 & b2=$$!; \
	  ./target/release/load_balancer -p $(PORT) -b 127.0.0.1:9001 -b 127.0.0.1:9002 & lb=$$!; \
	  wait'

# Tests build with the `ci` profile (release optimisation, no fat LTO: the
# test binaries link in seconds); the shipped release build is checked too.
test:
	$(CARGO) build --release
	$(CARGO) test --profile ci --no-fail-fast
	$(CARGO) test --profile ci --features scalar --lib http
	@if [ -x target/static/load_balancer ]; then \
	  $(CARGO) test --profile ci --test static_binary -- --ignored; \
	else \
	  echo "static binary test not run: no target/static/load_balancer (make static)"; \
	fi

# A statically linked load_balancer (musl), the recommended way to deploy:
# target/static/load_balancer runs on any x86_64 Linux, no libc needed.
STATIC_TARGET = x86_64-unknown-linux-musl
static:
	@command -v musl-gcc >/dev/null 2>&1 || { \
	  echo "make static needs the musl C compiler (ring compiles C for the musl target): apt-get install musl-tools" >&2; exit 1; }
	@rustup target list --installed | grep -qx $(STATIC_TARGET) || rustup target add $(STATIC_TARGET)
	$(CARGO) build --release --target $(STATIC_TARGET) --bin load_balancer
	mkdir -p target/static
	cp target/$(STATIC_TARGET)/release/load_balancer target/static/load_balancer
	@# Debug info stays in the build tree; the deployable copy is stripped.
	@if command -v strip >/dev/null 2>&1; then strip target/static/load_balancer; fi
	@ls -l target/static/load_balancer
	@if command -v file >/dev/null 2>&1; then file target/static/load_balancer; fi

# The kqueue loop and the non-Linux branches of sys.rs are compiled only for
# macOS and the BSDs: type-check and lint them there too (no linker needed).
# Without the `tls` feature: ring's C code cannot be cross-compiled here, and
# the tests' certificate generator needs it too, so library and binaries only.
CROSS_TARGETS ?= x86_64-apple-darwin x86_64-unknown-freebsd

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings
	rustup target add $(CROSS_TARGETS) >/dev/null 2>&1 || true
	for t in $(CROSS_TARGETS); do $(CARGO) clippy --target $$t --no-default-features --lib --bins -- -D warnings || exit 1; done

# Coverage-guided fuzzing (cargo fuzz, libFuzzer; tests/fuzz/README.md):
# each target in turn for FUZZ_SECONDS, seeded from tests/conformance/.
# Needs cargo-fuzz (cargo install cargo-fuzz); uses nightly where installed.
# A failing input is kept in tests/fuzz/regressions/, replayed by make test.
FUZZ_SECONDS ?= 120
FUZZ_TARGETS ?= head chunked json config cli dns
fuzz:
	DESYNC_SEARCH_SECONDS=$(FUZZ_SECONDS) $(CARGO) test --profile ci --test desync_search -- --nocapture
	FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_TARGETS="$(FUZZ_TARGETS)" CARGO=$(CARGO) bash tests/fuzz/run.sh

# The parser benchmark needs nothing but cargo, so it runs first and its
# table is there even when bench.sh stops for want of nginx or wrk.
bench:
	$(CARGO) bench --bench parser
	bash bench/bench.sh
	bash bench/balance.sh

clean:
	$(CARGO) clean

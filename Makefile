# pam-totp: build, test and demo entry points. Run `make test` / `make demo` as root on Debian;
# both install missing packages first (scripts/install-test-deps.sh).
CARGO ?= cargo

.PHONY: build test demo clean

build:
	$(CARGO) build --workspace

# Everything CI checks: cargo fmt --check, clippy -D warnings, cargo build --workspace, and
# cargo test --workspace (unit, integration and the end-to-end tests in tests/, which drive
# the built binaries as root through real libpam).
test:
	bash scripts/test.sh

# A narrated end-to-end run of the release build (cargo build --workspace --release):
# enroll, verify, log in through libpam, replay refused.
demo:
	bash scripts/demo.sh

clean:
	$(CARGO) clean

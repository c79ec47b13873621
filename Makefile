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

# Benchmarks (BENCHMARKS.md): the agent under load and pam_totp.so beside
# pam_google_authenticator and pam_oath through real libpam; as root. `bench` runs the full
# sizes (several minutes) and refreshes docs/bench/*.svg; `bench-smoke` runs tiny sizes (CI:
# fails on functional errors, asserts no timing).
.PHONY: bench bench-smoke
bench:
	bash scripts/bench.sh

bench-smoke:
	bash scripts/bench.sh --smoke

# Packages (issue 6). Each builds the release binaries and the generated man pages and
# completions first (packaging/assets.sh), and installs cargo-deb / cargo-generate-rpm from
# crates.io when missing. `make deb` -> target/debian/pam-totp_<version>_amd64.deb,
# `make rpm` -> target/generate-rpm/pam-totp-<version>-1.x86_64.rpm (Fedora paths).
# scripts/package-test.sh installs, exercises and purges the .deb.
.PHONY: deb rpm install

# Where cargo install puts the tools; a non-login shell may not have it on PATH.
CARGO_BIN_PATH = PATH="$${CARGO_HOME:-$$HOME/.cargo}/bin:$$PATH"

deb:
	CARGO="$(CARGO)" bash packaging/assets.sh >/dev/null
	$(CARGO_BIN_PATH); command -v cargo-deb >/dev/null 2>&1 || $(CARGO) install cargo-deb --locked
	$(CARGO_BIN_PATH); $(CARGO) deb -p pam_totp --no-build

rpm:
	CARGO="$(CARGO)" bash packaging/assets.sh >/dev/null
	$(CARGO_BIN_PATH); command -v cargo-generate-rpm >/dev/null 2>&1 || $(CARGO) install cargo-generate-rpm --locked
	$(CARGO_BIN_PATH); $(CARGO) generate-rpm -p pam_totp

# `make install [PREFIX=/usr/local] [DESTDIR=]` for other systems. Binaries, man pages,
# completions, docs and units go below PREFIX (the units' ExecStart is rewritten to SBINDIR).
# libpam only loads modules from its own directory, so PAMDIR defaults to the system's (where
# pam_unix.so is), whatever PREFIX is. The agent reads /etc/pam-totp/agent.toml, so
# SYSCONFDIR defaults to /etc; an existing agent.toml is never overwritten. The
# pam-auth-update profile is installed only with PREFIX=/usr (or PAMCONFIGSDIR=...).
PREFIX ?= /usr/local
DESTDIR ?=
BINDIR ?= $(PREFIX)/bin
SBINDIR ?= $(PREFIX)/sbin
DATADIR ?= $(PREFIX)/share
MANDIR ?= $(DATADIR)/man
DOCDIR ?= $(DATADIR)/doc/pam-totp
UNITDIR ?= $(PREFIX)/lib/systemd/system
SYSCONFDIR ?= /etc
PAMDIR ?= $(shell for d in /usr/lib/$$(uname -m)-linux-gnu/security /lib/$$(uname -m)-linux-gnu/security /usr/lib64/security /lib64/security /usr/lib/security /lib/security; do if [ -e "$$d/pam_unix.so" ]; then echo "$$d"; exit; fi; done; echo /usr/lib/security)
PAMCONFIGSDIR ?= $(if $(filter /usr,$(PREFIX)),/usr/share/pam-configs)

install:
	set -e; \
	assets="$$(CARGO="$(CARGO)" bash packaging/assets.sh)"; \
	install -d "$(DESTDIR)$(BINDIR)" "$(DESTDIR)$(SBINDIR)" "$(DESTDIR)$(PAMDIR)" \
	    "$(DESTDIR)$(UNITDIR)" "$(DESTDIR)$(MANDIR)/man1" "$(DESTDIR)$(MANDIR)/man8" \
	    "$(DESTDIR)$(DATADIR)/bash-completion/completions" \
	    "$(DESTDIR)$(DATADIR)/zsh/site-functions" \
	    "$(DESTDIR)$(DATADIR)/fish/vendor_completions.d" \
	    "$(DESTDIR)$(DOCDIR)/examples/fail2ban/filter.d" \
	    "$(DESTDIR)$(DOCDIR)/examples/fail2ban/jail.d" \
	    "$(DESTDIR)$(DOCDIR)" "$(DESTDIR)$(SYSCONFDIR)/pam-totp"; \
	install -m 0755 "$$assets/bin/pam-totp-agent" "$(DESTDIR)$(SBINDIR)/pam-totp-agent"; \
	install -m 0755 "$$assets/bin/pam-totp" "$(DESTDIR)$(BINDIR)/pam-totp"; \
	install -m 0644 "$$assets/bin/pam_totp.so" "$(DESTDIR)$(PAMDIR)/pam_totp.so"; \
	for unit in pam-totp-agent.socket pam-totp-agent.service pam-totp-metrics.service \
	        pam-totp-metrics.timer; do \
	    sed -e 's|/usr/sbin/pam-totp-agent|$(SBINDIR)/pam-totp-agent|' \
	        -e 's|/usr/bin/pam-totp |$(BINDIR)/pam-totp |' "packaging/systemd/$$unit" \
	        > "$(DESTDIR)$(UNITDIR)/$$unit"; \
	    chmod 0644 "$(DESTDIR)$(UNITDIR)/$$unit"; \
	done; \
	install -m 0644 "$$assets"/man/*.1 "$(DESTDIR)$(MANDIR)/man1/"; \
	install -m 0644 "$$assets"/man/*.8 "$(DESTDIR)$(MANDIR)/man8/"; \
	install -m 0644 "$$assets/completions/bash/pam-totp" "$(DESTDIR)$(DATADIR)/bash-completion/completions/pam-totp"; \
	install -m 0644 "$$assets/completions/zsh/_pam-totp" "$(DESTDIR)$(DATADIR)/zsh/site-functions/_pam-totp"; \
	install -m 0644 "$$assets/completions/fish/pam-totp.fish" "$(DESTDIR)$(DATADIR)/fish/vendor_completions.d/pam-totp.fish"; \
	install -m 0644 README.md SECURITY.md "$(DESTDIR)$(DOCDIR)/"; \
	install -m 0644 packaging/debian/copyright "$(DESTDIR)$(DOCDIR)/copyright"; \
	install -m 0644 packaging/fail2ban/filter.d/pam-totp.conf "$(DESTDIR)$(DOCDIR)/examples/fail2ban/filter.d/"; \
	install -m 0644 packaging/fail2ban/jail.d/pam-totp.conf "$(DESTDIR)$(DOCDIR)/examples/fail2ban/jail.d/"; \
	install -m 0644 packaging/systemd/fleet.conf "$(DESTDIR)$(DOCDIR)/examples/fleet.conf"; \
	if [ -e "$(DESTDIR)$(SYSCONFDIR)/pam-totp/agent.toml" ]; then \
	    echo "install: keeping the existing $(DESTDIR)$(SYSCONFDIR)/pam-totp/agent.toml"; \
	else \
	    install -m 0644 packaging/agent.toml "$(DESTDIR)$(SYSCONFDIR)/pam-totp/agent.toml"; \
	fi; \
	if [ -n "$(PAMCONFIGSDIR)" ]; then \
	    install -D -m 0644 packaging/pam-configs/pam-totp "$(DESTDIR)$(PAMCONFIGSDIR)/pam-totp"; \
	fi; \
	echo "installed pam-totp into $(DESTDIR)$(PREFIX) (module: $(DESTDIR)$(PAMDIR)/pam_totp.so)"

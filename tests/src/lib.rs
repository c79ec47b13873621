//! End-to-end tests of pam-totp; the harness is tests/tests/common/mod.rs, one file per theme
//! beside it. They need root and `scripts/install-test-deps.sh`; `make test` runs them.

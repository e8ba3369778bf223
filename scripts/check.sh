#!/usr/bin/env bash
# The quality gate: formatting, lints on every target and feature, tests, docs.
# Tests that need PostgreSQL or a Kafka broker run through scripts/test-services.sh instead.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --all-targets --all-features -- -D warnings
cargo test
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --all-features

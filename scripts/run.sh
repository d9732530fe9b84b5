#!/usr/bin/env bash
# Run warmline on its embedded defaults on a fresh Debian 12 machine: installs what
# building and running it needs, then `warmline run`, which provisions the whisper model
# into its data directory on first start. Arguments go to `warmline run`.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/deps.sh
. scripts/deps.sh
install_deps run
export GGML_NATIVE="${GGML_NATIVE:-OFF}"
exec cargo run --release --locked -- run "$@"

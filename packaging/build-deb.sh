#!/usr/bin/env bash
# Builds the Debian package with cargo-deb: the binary, the manual page, shell completions and
# the systemd units (user `claw.service`, system `claw@USER.service`).
#   packaging/build-deb.sh                 # release build (what you install)
#   packaging/build-deb.sh --profile dev   # from the dev build already made (CI's check)
# The .deb lands in target/debian/.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=release
if [ "${1:-}" = "--profile" ]; then profile="$2"; fi
dir="target/$([ "$profile" = dev ] && echo debug || echo "$profile")"
if ! command -v cargo-deb >/dev/null 2>&1; then
  echo "==> installing cargo-deb 3.8.0"
  cargo install cargo-deb --locked --version 3.8.0
fi
extra=()
if [ "$profile" = release ]; then
  cargo build --release --locked
else
  extra+=(--no-build)
fi
# What cargo-deb takes from target/<profile>/assets (see [package.metadata.deb] in Cargo.toml).
mkdir -p "$dir/assets"
"$dir/claw" man | gzip -9n > "$dir/assets/claw.1.gz"
"$dir/claw" completions bash > "$dir/assets/claw.bash"
"$dir/claw" completions zsh > "$dir/assets/_claw"
"$dir/claw" completions fish > "$dir/assets/claw.fish"
cargo deb --profile "$profile" --locked "${extra[@]}" --fast -- 2>&1 | tail -n 1

#!/usr/bin/env bash
# Runs every check and test of the project, as CI does. Installs what the tests need when it is
# missing (Debian packages via apt-get; run as root or with sudo available).
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
command -v cc >/dev/null 2>&1 || need_pkgs+=(build-essential)
command -v python3 >/dev/null 2>&1 || need_pkgs+=(python3)
# The vault tests check interop with the real age CLI in both directions; the passphrase tests
# type at its prompts on a pseudo-terminal (python3) and run claw without one (setsid).
# Skill tests: SkillHub round trips go through the git CLI.
command -v git >/dev/null 2>&1 || need_pkgs+=(git)
# The vault tests check interop with the real age CLI in both directions.
command -v age >/dev/null 2>&1 || need_pkgs+=(age)
command -v setsid >/dev/null 2>&1 || need_pkgs+=(util-linux)
# The scheduler's oracle test runs the Python package cronsim from a venv (Debian: python3-venv).
python3 -c 'import ensurepip' >/dev/null 2>&1 || need_pkgs+=(python3-venv)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  echo "==> installing ${need_pkgs[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_pkgs[@]}"
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "error: cargo is not installed (https://rustup.rs)" >&2
  exit 3
fi

# The C2SP CCTV age test vectors, from the npm registry (cctv-age@0.2.0), unpacked to files.
CCTV_DIR="$PWD/target/cctv-age-0.2.0"
if [ ! -f "$CCTV_DIR/.complete" ]; then
  echo "==> fetching the CCTV age test vectors (npm: cctv-age@0.2.0)"
  if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nodejs npm
  fi
  rm -rf "$CCTV_DIR" && mkdir -p "$CCTV_DIR/vectors"
  (cd "$CCTV_DIR" && npm pack --silent cctv-age@0.2.0 >/dev/null && tar xzf cctv-age-0.2.0.tgz \
    && node -e 'const v = require("./package"); const fs = require("fs");
                for (const [k, b] of Object.entries(v)) if (k !== "default") fs.writeFileSync("vectors/" + k, Buffer.from(b));')
  touch "$CCTV_DIR/.complete"
fi
export CLAW_CCTV_DIR="$CCTV_DIR/vectors"

# cronsim (PyPI, pinned) is the oracle for cron semantics (src/scheduler/schedule_tests.rs).
CRONSIM_VENV="$PWD/target/cronsim-venv"
if ! "$CRONSIM_VENV/bin/python3" -c 'import cronsim' >/dev/null 2>&1; then
  echo "==> installing cronsim 2.8 into target/cronsim-venv"
  rm -rf "$CRONSIM_VENV"
  python3 -m venv "$CRONSIM_VENV"
  "$CRONSIM_VENV/bin/pip" install --quiet --disable-pip-version-check cronsim==2.8
fi
export CLAW_CRONSIM_PYTHON="$CRONSIM_VENV/bin/python3"

# aiosmtpd (PyPI, pinned) is the real SMTP server of the email tests (tests/messaging.rs).
SMTPD_VENV="$PWD/target/aiosmtpd-venv"
if ! "$SMTPD_VENV/bin/python3" -c 'import aiosmtpd' >/dev/null 2>&1; then
  echo "==> installing aiosmtpd 1.4.6 into target/aiosmtpd-venv"
  rm -rf "$SMTPD_VENV"
  python3 -m venv "$SMTPD_VENV"
  "$SMTPD_VENV/bin/pip" install --quiet --disable-pip-version-check aiosmtpd==1.4.6
fi
export CLAW_AIOSMTPD_PYTHON="$SMTPD_VENV/bin/python3"

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> cargo clippy"
cargo clippy --all-targets --locked -- -D warnings

echo "==> cargo test"
# The crash test kills claw at random moments; CI runs it for 60 cycles.
export CLAW_CRASH_CYCLES="${CLAW_CRASH_CYCLES:-60}"
cargo test --locked --all-targets

echo "==> cargo doc"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --locked --quiet

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
# The SSH tests start real OpenSSH servers on loopback (tests/ssh.rs) and use ssh-keygen.
[ -x /usr/sbin/sshd ] || need_pkgs+=(openssh-server)
command -v ssh-keygen >/dev/null 2>&1 || need_pkgs+=(openssh-client)
command -v pgrep >/dev/null 2>&1 || need_pkgs+=(procps)
# The ssh tests' `sudo:` runs through the real sudo (an account with a sudoers rule, made by
# tests/ssh.rs as root).
[ -x /usr/bin/sudo ] || need_pkgs+=(sudo)
# The browser tests drive Debian's Chromium (tests/browser.rs).
[ -x /usr/bin/chromium ] || need_pkgs+=(chromium)
# The scheduler's oracle test runs the Python package cronsim from a venv (Debian: python3-venv).
python3 -c 'import ensurepip' >/dev/null 2>&1 || need_pkgs+=(python3-venv)
# Scale-out (tests/scale_out.rs, store::tests::postgres): a real PostgreSQL on 127.0.0.1:5432 that
# the user postgres reaches without a password (CLAW_TEST_PG names another); psql in the tests.
# The restart test starts a server of its own (initdb and pg_ctl of /usr/lib/postgresql/*/bin,
# as the user postgres when run as root) on a free port, so it never restarts the shared one.
command -v psql >/dev/null 2>&1 || need_pkgs+=(postgresql postgresql-client)
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

# The dashboard's browser tests (tests/dashboard.rs, scripts/dashboard-e2e.cjs): Debian's chromium,
# driven by playwright-core 1.57.0 from npm, installed under target/playwright.
if ! command -v chromium >/dev/null 2>&1; then
  echo "==> installing chromium (Debian) for the dashboard's browser tests"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium
fi
PLAYWRIGHT_DIR="$PWD/target/playwright"
if [ ! -f "$PLAYWRIGHT_DIR/.complete-1.57.0" ]; then
  echo "==> installing playwright-core 1.57.0 into target/playwright"
  mkdir -p "$PLAYWRIGHT_DIR"
  [ -f "$PLAYWRIGHT_DIR/package.json" ] || echo '{"private": true}' > "$PLAYWRIGHT_DIR/package.json"
  (cd "$PLAYWRIGHT_DIR" && npm install --silent --no-audit --no-fund playwright-core@1.57.0)
  touch "$PLAYWRIGHT_DIR/.complete-1.57.0"
fi

# Telegram's Bot API emulated by telegram-test-api 4.2.1 from npm (tests/telegram.rs,
# scripts/telegram-emulator.cjs), installed under target/telegram-test-api.
TG_EMU_DIR="$PWD/target/telegram-test-api"
if [ ! -f "$TG_EMU_DIR/.complete-4.2.1" ]; then
  echo "==> installing telegram-test-api 4.2.1 into target/telegram-test-api"
  mkdir -p "$TG_EMU_DIR"
  [ -f "$TG_EMU_DIR/package.json" ] || echo '{"private": true}' > "$TG_EMU_DIR/package.json"
  (cd "$TG_EMU_DIR" && npm install --silent --no-audit --no-fund telegram-test-api@4.2.1)
  touch "$TG_EMU_DIR/.complete-4.2.1"
fi

# The dashboard's API against its OpenAPI description (tests/dashboard.rs): schemathesis 3.39.16
# (with the hypothesis it works with) from PyPI, in target/schemathesis-venv.
ST_VENV="$PWD/target/schemathesis-venv"
if [ ! -x "$ST_VENV/bin/st" ] || ! "$ST_VENV/bin/st" --version 2>/dev/null | grep -q 3.39.16; then
  echo "==> installing schemathesis 3.39.16 into target/schemathesis-venv"
  python3 -m venv "$ST_VENV"
  "$ST_VENV/bin/pip" install -q "schemathesis==3.39.16" "hypothesis==6.122.0"
fi

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

# mcp (PyPI, pinned; the seed's `mcp<2`) is the official MCP client of tests/mcp.rs.
MCP_VENV="$PWD/target/mcp-venv"
if ! "$MCP_VENV/bin/python3" -c 'import mcp' >/dev/null 2>&1; then
  echo "==> installing mcp 1.30.0 into target/mcp-venv"
  rm -rf "$MCP_VENV"
  python3 -m venv "$MCP_VENV"
  "$MCP_VENV/bin/pip" install --quiet --disable-pip-version-check mcp==1.30.0
fi

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> cargo clippy"
cargo clippy --all-targets --locked -- -D warnings

echo "==> cargo test"
# The crash test kills claw at random moments; CI runs it for 60 cycles.
export CLAW_CRASH_CYCLES="${CLAW_CRASH_CYCLES:-60}"
# The scale-out schedule tests (tests/scale_out.rs: two daemons, the scheduler killed) run their
# per-second schedules this many seconds; CI: 60.
export CLAW_SCALE_OUT_SECS="${CLAW_SCALE_OUT_SECS:-60}"
# One build: clippy checks (no code generation), then the test build in the dev profile, which
# `cargo doc` does not redo (it only documents claw against the dependencies clippy checked).
mkdir -p target
status=0
cargo test --locked --all-targets 2>&1 | tee target/test-output.txt || status=$?
if [ "$status" -eq 0 ]; then
  # (tests/scale_out.rs is on PostgreSQL in the run above already: each test makes its own
  # database, or its own server for the restart test.)
  echo "==> the crash and approval suites on PostgreSQL"
  CLAW_TEST_STORE=postgres cargo test --locked --test integration -- crash:: approval:: \
    2>&1 | tee -a target/test-output.txt || status=$?
fi

if [ "$status" -eq 0 ]; then
  echo "==> cargo doc"
  RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --locked --quiet || status=$?
fi

# The Debian package (cargo-deb), from the build above: built, installed, and used.
if [ "$status" -eq 0 ]; then
  echo "==> Debian package"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  packaging/build-deb.sh --profile dev || status=$?
  deb="$(ls -t target/debian/claw_*.deb 2>/dev/null | head -n 1)"
  if [ "$status" -eq 0 ] && [ -n "$deb" ] && $SUDO dpkg -i "$deb" >/dev/null; then
    pkg_home="$(mktemp -d)"
    mkdir -p "$pkg_home/root/workflows"
    printf 'steps:\n  - name: hi\n    command: echo installed claw works\n' > "$pkg_home/root/workflows/hi.yaml"
    if /usr/bin/claw --version \
      && CLAW_HOME="$pkg_home/home" CLAW_ROOT="$pkg_home/root" /usr/bin/claw workflow run hi \
      && test -s /usr/share/man/man1/claw.1.gz \
      && test -s /usr/share/bash-completion/completions/claw \
      && test -s /usr/lib/systemd/user/claw.service \
      && test -s /usr/lib/systemd/system/claw@.service; then
      echo "==> the installed package works"
    else
      echo "error: the installed package does not work" >&2
      status=1
    fi
    rm -rf "$pkg_home"
    $SUDO dpkg -r claw >/dev/null || true
  else
    echo "error: the Debian package could not be built or installed" >&2
    status=1
  fi
fi

# One summary line over every test binary.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed;?$/) p += $(i-1); if ($(i) ~ /^failed;?$/) f += $(i-1); if ($(i) ~ /^ignored;?$/) g += $(i-1) } }
     END { printf "==> %d passed, %d failed, %d ignored (%d s)\n", p, f, g, '"$SECONDS"' }' target/test-output.txt
exit "$status"

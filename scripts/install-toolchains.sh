#!/usr/bin/env bash
# Install the compilers and interpreters the multiple-<lang> evaluation tasks run (MultiPL-E
# style HumanEval translations). Idempotent: installs only what is missing, so a second run
# changes nothing. Needs root (or sudo) for apt-get; TypeScript comes from npm.
#
#   scripts/install-toolchains.sh          # install what is missing
#   scripts/install-toolchains.sh --check  # only say which languages are ready
#
# Rust is not a Debian package here on purpose: Debian's rustc is old; use rustup
# (https://rustup.rs) or `apt-get install rustc` if that is good enough for you.
set -euo pipefail

# binary -> Debian package that provides it
declare -A PACKAGES=(
  [node]=nodejs
  [npm]=npm
  [g++]=g++
  [javac]=openjdk-17-jdk-headless
  [go]=golang-go
  [ruby]=ruby
  [php]=php-cli
  [lua5.4]=lua5.4
  [perl]=perl
  [bash]=bash
)

missing_packages() {
  local binary
  for binary in "${!PACKAGES[@]}"; do
    command -v "$binary" >/dev/null 2>&1 || echo "${PACKAGES[$binary]}"
  done | sort -u
}

if [[ "${1:-}" == "--check" ]]; then
  missing=$(missing_packages)
  command -v tsc >/dev/null 2>&1 || missing+=" typescript(npm)"
  command -v rustc >/dev/null 2>&1 || missing+=" rustc(rustup)"
  if [[ -z "${missing// /}" ]]; then echo "all toolchains ready"; exit 0; fi
  echo "missing: $missing"
  exit 1
fi

SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi

mapfile -t packages < <(missing_packages)
if ((${#packages[@]})); then
  echo "apt-get install: ${packages[*]}"
  $SUDO apt-get update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends "${packages[@]}"
else
  echo "Debian toolchains already installed"
fi

if ! command -v tsc >/dev/null 2>&1; then
  echo "npm install -g typescript"
  $SUDO npm install -g typescript
else
  echo "typescript already installed: $(tsc --version)"
fi

command -v rustc >/dev/null 2>&1 || echo "note: rustc not found; install it with rustup"
echo "done"

#!/usr/bin/env bash
# Install what the multiple-<lang> evaluation tasks need to run MultiPL-E's rows as MultiPL-E's
# evaluators run them (codekiln/evaluate/multiple/runners.py): the compilers and interpreters
# (g++, javac/java, go, node, tsc, lua, php, ruby, perl, bash) and the libraries the rows'
# tests use: javatuples (Java's Pair), luaunit (Lua), Test::Deep (Perl), test-unit (Ruby).
# Idempotent: installs only what is missing, so a second run changes nothing. Needs root (or
# sudo) for apt-get; TypeScript comes from npm.
#
#   scripts/install-toolchains.sh          # install what is missing
#   scripts/install-toolchains.sh --check  # only say what is missing
#
# Rust is not a Debian package here on purpose: Debian's rustc is old; use rustup
# (https://rustup.rs) or `apt-get install rustc` if that is good enough for you. MultiPL-E
# compiles with plain `rustc` (edition 2015, no optimisation), whatever the version.
set -euo pipefail

# Debian package -> the check that says it is there (a binary, or the library loading).
declare -A CHECKS=(
  [nodejs]="command -v node"
  [npm]="command -v npm"
  [g++]="command -v g++"
  [openjdk-17-jdk-headless]="command -v javac && command -v java"
  [libjavatuples-java]="test -f /usr/share/java/javatuples.jar"
  [golang-go]="command -v go"
  [ruby]="command -v ruby"
  [ruby-test-unit]="ruby -e \"require 'test/unit'; Test::Unit::AutoRunner.need_auto_run = false\""
  [php-cli]="command -v php"
  [lua5.4]="command -v lua"
  [lua-unit]="lua -e \"require('luaunit')\""
  [perl]="command -v perl"
  [libtest-deep-perl]="perl -MTest::Deep -e 1"
  [bash]="command -v bash"
)

missing_packages() {
  local package
  for package in "${!CHECKS[@]}"; do
    bash -c "${CHECKS[$package]}" >/dev/null 2>&1 || echo "$package"
  done | sort -u
}

if [[ "${1:-}" == "--check" ]]; then
  missing=$(missing_packages | tr '\n' ' ')
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

# MultiPL-E runs `lua`; Debian's lua5.4 provides it through the lua-interpreter alternative.
if ! command -v lua >/dev/null 2>&1 && command -v lua5.4 >/dev/null 2>&1; then
  $SUDO update-alternatives --install /usr/bin/lua lua-interpreter "$(command -v lua5.4)" 130
fi

if ! command -v tsc >/dev/null 2>&1; then
  echo "npm install -g typescript"
  $SUDO npm install -g typescript
else
  echo "typescript already installed: $(tsc --version)"
fi

command -v rustc >/dev/null 2>&1 || echo "note: rustc not found; install it with rustup"
echo "done"

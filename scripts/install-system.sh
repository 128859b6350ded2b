#!/usr/bin/env bash
# Best-effort system packages for the whole test suite and the main job: bubblewrap (the
# evaluation sandbox's namespaces), Chromium (the leaderboard's browser test), Neovim (the
# language server's editor test) and the multiple-<lang> toolchains. Without them the sandbox
# falls back to rlimits (with a warning) and the tests that need a missing program skip, so a
# failure here never stops the build: it says what is missing and exits 0.
#
#   scripts/install-system.sh                 # everything
#   scripts/install-system.sh --sandbox-only  # bubblewrap alone (what the main job needs)
set -uo pipefail
only_sandbox=false
[[ "${1:-}" == "--sandbox-only" ]] && only_sandbox=true

have() { command -v "$1" >/dev/null 2>&1; }

SUDO=""
if [[ $(id -u) -ne 0 ]]; then
  if have sudo && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
    echo "install-system: not root and no password-less sudo: skipping system packages"
    exit 0
  fi
fi
if ! have apt-get; then
  echo "install-system: no apt-get: install bubblewrap, chromium and neovim by hand"
  exit 0
fi

wanted=()
have bwrap || wanted+=(bubblewrap)
if ! $only_sandbox; then
  have chromium || have chromium-browser || wanted+=(chromium)
  have nvim || wanted+=(neovim)
fi
if ((${#wanted[@]})); then
  echo "install-system: apt-get install ${wanted[*]}"
  $SUDO apt-get update -qq >/dev/null 2>&1
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    "${wanted[@]}" >/dev/null 2>&1 || echo "install-system: could not install ${wanted[*]}"
fi
$only_sandbox && exit 0
"$(dirname "$0")/install-toolchains.sh" >/dev/null 2>&1 ||
  echo "install-system: some toolchains are missing: $("$(dirname "$0")/install-toolchains.sh" --check)"
exit 0

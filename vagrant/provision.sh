#!/usr/bin/env bash
# Installs the toolchain and test dependencies, then runs the test suite
# (`make test`, the privileged tests included when run as root).
#
# usage: provision.sh [--dry-run] [--no-test] [SRC_DIR]
#
# Plain shell: vagrant runs it in the VM, CI runs it on its own machine.
# --dry-run prints what it would install and run, and changes nothing.
# Steps whose tools are already present are skipped.
set -euo pipefail

dry=0
test=1
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) dry=1; shift ;;
    --no-test) test=0; shift ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) break ;;
  esac
done
src=${1:-$(cd "$(dirname "$0")/.." && pwd)}

run() {
  if [ "$dry" = 1 ]; then
    echo "+ $*"
  else
    "$@"
  fi
}

if [ "$(id -u)" -ne 0 ] && [ "$dry" = 0 ]; then
  echo "provision: run as root (it installs packages and runs privileged tests)" >&2
  exit 1
fi

# 1. System packages the build and the tests use.
# podman, skopeo, buildah and the Go containers-storage CLI are the real
# clients the shared-store tests run against our store (and ours against
# theirs); Go and upstream's tar-split sources build the reference
# tar-split disassembler the tar-split tests compare with.
packages=(build-essential pkg-config ca-certificates curl git make python3
          xz-utils bzip2 zstd gzip debootstrap xfsprogs e2fsprogs util-linux tar
          podman skopeo buildah containers-storage
          golang-go golang-github-vbatts-tar-split-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "provision: installing ${missing[*]}"
  run apt-get update -qq
  run env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
else
  echo "provision: system packages present"
fi

# 2. The Rust toolchain (rustup) and cargo-nextest.
export PATH="$HOME/.cargo/bin:$PATH"
if ! command -v cargo >/dev/null 2>&1; then
  echo "provision: installing the Rust toolchain with rustup"
  if [ "$dry" = 1 ]; then
    echo "+ curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal -c rustfmt,clippy"
  else
    curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal -c rustfmt,clippy
  fi
else
  echo "provision: $(cargo --version)"
fi
if ! command -v cargo-nextest >/dev/null 2>&1; then
  echo "provision: installing cargo-nextest"
  run cargo install --locked cargo-nextest
fi

# 3. The suite.
if [ "$test" = 1 ]; then
  echo "provision: running the test suite in $src"
  run make -C "$src" test
fi
echo "provision: done"

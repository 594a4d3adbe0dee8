#!/usr/bin/env bash
# Builds the Debian image dataset the dataset tests and `make bench` use.
#
# usage: scripts/make-dataset.sh [OUTDIR]     (default: target/dataset)
#
# Needs root (debootstrap, chroot) and Debian's mirrors ($DEBIAN_MIRROR,
# default http://deb.debian.org/debian); about 10 minutes and 3 GB.
# For bookworm and trixie, each a debootstrap minbase, OUTDIR/tars/ gets:
#   <suite>-base.tar            the base layer (apt's caches and lists removed)
#   <suite>-<pkg>.diff.tar      the layer that installs <pkg> on the base
#   <suite>-<pkg>.full.tar      the same image squashed into one layer
#   <suite>-slim.diff.tar       the layer that empties /usr/share/doc and
#                               /usr/share/man (whiteouts)
# with <pkg> python3 or curl (installed with --no-install-recommends, plus
# ca-certificates). The root filesystems stay in OUTDIR/trees/. Layers are
# written by scripts/layer_tar.py, the squashed images by `tar -c`; each
# base + diff is checked to equal its squashed image (or its tree, for
# slim), metadata included, before the tar gets its final name.
# What exists is kept: a second run finishes what the first did not.
# Exits 0 with the dataset ready; otherwise non-zero, saying why.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/../target/dataset}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
suites=(bookworm trixie)
packages=(python3 curl)

say() { echo "make-dataset: $*" >&2; }

# Removes what an earlier, interrupted run left at $1, never crossing
# into a filesystem mounted below it (a chroot's /proc).
remove_partial() {
  umount "$1/proc" 2>/dev/null || true
  rm -rf --one-file-system "$1"
}

expected_tars() {
  local s p
  for s in "${suites[@]}"; do
    echo "$s-base.tar"
    for p in "${packages[@]}"; do echo "$s-$p.diff.tar" "$s-$p.full.tar"; done
    echo "$s-slim.diff.tar"
  done
}

missing=()
for t in $(expected_tars); do
  [ -f "$out/tars/$t" ] || missing+=("$t")
done
if [ ${#missing[@]} -eq 0 ]; then
  say "$out/tars is ready"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  say "building it needs root (debootstrap and chroot); the dataset tests skip without it"
  exit 1
fi
for tool in debootstrap python3 tar chroot; do
  if ! command -v "$tool" >/dev/null; then
    say "installing debootstrap and python3"
    export DEBIAN_FRONTEND=noninteractive
    if ! { apt-get update -qq && apt-get install -y -qq debootstrap python3 tar; } >/dev/null; then
      say "could not install debootstrap and python3 with apt-get"
      exit 1
    fi
    break
  fi
done
if ! python3 - "$mirror/dists/bookworm/Release" <<'EOF'
import sys, urllib.request
try:
    urllib.request.urlopen(sys.argv[1], timeout=20).read(1)
except Exception as e:
    sys.exit(f"make-dataset: {sys.argv[1]}: {e}")
EOF
then
  say "cannot reach Debian's mirror $mirror (set DEBIAN_MIRROR to another); the dataset tests skip without it"
  exit 1
fi

mkdir -p "$out/trees" "$out/tars"
trees=$(cd "$out/trees" && pwd)
tars=$(cd "$out/tars" && pwd)

# A chroot's /proc, unmounted however the script ends.
proc_mount=
cleanup() {
  if [ -n "$proc_mount" ]; then umount "$proc_mount" || true; fi
}
trap cleanup EXIT

for suite in "${suites[@]}"; do
  base="$trees/$suite-base"
  if [ ! -d "$base" ]; then
    say "debootstrap $suite (log: $trees/$suite.log)"
    remove_partial "$base.tmp"
    if ! debootstrap --variant=minbase "$suite" "$base.tmp" "$mirror" >"$trees/$suite.log" 2>&1; then
      say "debootstrap $suite failed; the end of $trees/$suite.log:"
      tail -n 5 "$trees/$suite.log" >&2
      exit 1
    fi
    rm -rf "$base.tmp"/var/cache/apt/archives/*.deb "$base.tmp"/var/lib/apt/lists/*
    mv "$base.tmp" "$base"
  fi
  for pkg in "${packages[@]}"; do
    tree="$trees/$suite-$pkg"
    [ -d "$tree" ] && continue
    say "$suite: installing $pkg (log: $trees/$suite-$pkg.log)"
    remove_partial "$tree.tmp"
    cp -a "$base" "$tree.tmp"
    mount --bind /proc "$tree.tmp/proc"
    proc_mount="$tree.tmp/proc"
    if ! chroot "$tree.tmp" sh -c "apt-get update -qq &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $pkg ca-certificates &&
        apt-get clean && rm -rf /var/lib/apt/lists/*" >"$trees/$suite-$pkg.log" 2>&1; then
      say "installing $pkg on $suite failed; the end of $trees/$suite-$pkg.log:"
      tail -n 5 "$trees/$suite-$pkg.log" >&2
      exit 1
    fi
    umount "$proc_mount"
    proc_mount=
    mv "$tree.tmp" "$tree"
  done
  slim="$trees/$suite-slim"
  if [ ! -d "$slim" ]; then
    remove_partial "$slim.tmp"
    cp -a "$base" "$slim.tmp"
    rm -rf "$slim.tmp"/usr/share/doc/* "$slim.tmp"/usr/share/man/*
    mv "$slim.tmp" "$slim"
  fi
done

# Each tar is written beside its final name and renamed once checked.
layer() { # OLD|- NEW NAME
  [ -f "$tars/$3" ] && return 0
  python3 "$here/layer_tar.py" diff "$1" "$2" "$tars/$3.part"
}
for suite in "${suites[@]}"; do
  base="$trees/$suite-base"
  if [ ! -f "$tars/$suite-base.tar" ]; then
    layer - "$base" "$suite-base.tar"
    python3 "$here/layer_tar.py" check "$base" "$tars/$suite-base.tar.part"
    mv "$tars/$suite-base.tar.part" "$tars/$suite-base.tar"
  fi
  for pkg in "${packages[@]}"; do
    img="$suite-$pkg"
    [ -f "$tars/$img.diff.tar" ] && [ -f "$tars/$img.full.tar" ] && continue
    rm -f "$tars/$img.diff.tar" "$tars/$img.full.tar"
    layer "$base" "$trees/$img" "$img.diff.tar"
    tar -C "$trees/$img" --sort=name -cf "$tars/$img.full.tar.part" .
    python3 "$here/layer_tar.py" check "$tars/$img.full.tar.part" \
      "$tars/$suite-base.tar" "$tars/$img.diff.tar.part"
    mv "$tars/$img.full.tar.part" "$tars/$img.full.tar"
    mv "$tars/$img.diff.tar.part" "$tars/$img.diff.tar"
  done
  if [ ! -f "$tars/$suite-slim.diff.tar" ]; then
    layer "$base" "$trees/$suite-slim" "$suite-slim.diff.tar"
    python3 "$here/layer_tar.py" check "$trees/$suite-slim" \
      "$tars/$suite-base.tar" "$tars/$suite-slim.diff.tar.part"
    mv "$tars/$suite-slim.diff.tar.part" "$tars/$suite-slim.diff.tar"
  fi
done
say "$tars is ready:"
ls -l "$tars" >&2

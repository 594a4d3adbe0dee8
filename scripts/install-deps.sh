#!/usr/bin/env bash
# Installs the system tools the test suite and the dataset builder use,
# when they are missing. Needs root (apt-get); elsewhere it only reports.
set -euo pipefail
need=()
command -v xz >/dev/null || need+=(xz-utils)
command -v bzip2 >/dev/null || need+=(bzip2)
command -v zstd >/dev/null || need+=(zstd)
command -v gzip >/dev/null || need+=(gzip)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v python3 >/dev/null || need+=(python3)
# The real clients of the shared-store tests (tests/it/clients.rs); the Go
# CLI has our binary's name, so it is looked for where Debian puts it.
command -v podman >/dev/null || need+=(podman)
command -v skopeo >/dev/null || need+=(skopeo)
command -v buildah >/dev/null || need+=(buildah)
[ -x /usr/bin/containers-storage ] || need+=(containers-storage)
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing ${need[*]}; install them (needs root), tests that need them skip" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null; }; then
  echo "install-deps: could not install ${need[*]} with apt-get (no network?); tests that need them skip" >&2
fi

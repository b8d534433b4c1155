#!/usr/bin/env bash
# Makes localhost/bookworm-python:local, a minimal Debian bookworm with python3 and venv, from Debian's
# packages (no image registry needed). A copy of ../shared/containers/make-base-image.sh. Takes about a minute; skips the work if the image exists.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/podman-env.sh"
image=localhost/bookworm-python:local
if podman image exists "$image"; then echo "$image exists"; exit 0; fi
root=$(mktemp -d "${CTR_DIR:-/tmp/ctr}/rootfs.XXXX")
# the machine's own Debian mirror, as apt is configured here
mirror=$(cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
  | grep -oE 'https?://[^ ]+/debian/?( |$)' | head -n 1 | tr -d ' ' || true)
[ -n "$mirror" ] || { echo "no Debian mirror found in apt's sources" >&2; exit 1; }
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$root" "$mirror" >/dev/null
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
tar -C "$root" -c . | podman import --change "CMD [\"/bin/bash\"]" - "$image" >/dev/null 2>&1
rm -rf "$root"
echo "$image made"

#!/usr/bin/env bash
# The inner `sh -c` scripts are single-quoted on purpose: they expand their own arguments.
# shellcheck disable=SC2016
# Build the image's root filesystem without a Docker engine, and run commands in it as the
# container would (infra/README.md, "Testing the image without Docker").
#
#   infra/rootfs.sh build DIR          the root of infra/Dockerfile, into DIR (root only)
#   infra/rootfs.sh run DIR CAPS CMD...  CMD in DIR with exactly the capabilities CAPS
#
# build: debootstrap (minbase) of the Debian release the Dockerfile's base image is, then
# the Dockerfile's own RUN instructions, read from it, in a chroot: those before the
# project's source is copied (apt packages, the virtualenv, the hashed lock), then, with the
# source copied to /app as the Dockerfile's COPY lines do, those after (the project). The
# base part is kept and reused while its RUN lines and the lock are unchanged (a stamp file
# records their hash); the project is installed again on every build. PIP_CERT and
# PIP_INDEX_URL of the caller are passed on (a proxy with its own certificate authority);
# DEBIAN_MIRROR overrides the Debian mirror.
#
# run: a private mount and PID namespace in which DIR is its own mount point (as a
# container's root is), with the host's /dev, a fresh /proc and a tmpfs /tmp (DIR/data is
# /data); pivot_root into it; then `setpriv` sets the bounding set to CAPS (comma-separated
# names as in `setpriv --list-caps`, e.g. sys_admin,net_admin; empty for none) and empties
# the inheritable and ambient sets, as Docker and containerd do for a container's root,
# with no_new_privs (compose's no-new-privileges). RUN_UID=N runs CMD as uid N
# (Kubernetes' runAsUser); READ_ONLY=1 mounts the root read-only (readOnlyRootFilesystem).
# The network is the host's, so a server started here answers on the host's 127.0.0.1.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(dirname "$HERE")"
SUITE=bookworm
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
VENV=/opt/vibe
PATH_INSIDE="$VENV/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

die() {
  echo "rootfs.sh: $*" >&2
  exit 2
}

# The Dockerfile's RUN instructions, continuation lines joined, one per line: "base" for
# those before the project's source is copied in, "project" for those after.
dockerfile_runs() {
  python3 - "$HERE/Dockerfile" "$1" <<'PY'
import sys

text = open(sys.argv[1]).read().replace("\\\n", " ")
project, runs = False, []
for line in text.splitlines():
    if line.startswith("COPY pyproject.toml"):
        project = True
    if line.startswith("RUN ") and project == (sys.argv[2] == "project"):
        runs.append(" ".join(line[4:].split()))
print("\n".join(runs))
PY
}

# Run a shell script inside DIR as full root (for building), in a private namespace, in
# the Dockerfile's WORKDIR; its output goes to DIR.log, shown when it fails.
inside() {
  local root="$1" script="$2"
  env -i PATH="$PATH_INSIDE" HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive \
    PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1 \
    ${PIP_INDEX_URL:+PIP_INDEX_URL="$PIP_INDEX_URL"} \
    ${PIP_CERT:+PIP_CERT=/etc/vibe-build-ca.pem} \
    unshare --mount --propagation private --pid --fork --kill-child \
    sh -ec 'mount --rbind /dev "$1/dev"; mount -t proc proc "$1/proc"; exec chroot "$1" sh -ec "cd /app; $2"' \
    sh "$root" "$script" >"$root.log" 2>&1 || {
    tail -n 40 "$root.log" >&2
    die "a Dockerfile step failed in $root (log: $root.log)"
  }
}

build() {
  local root="$1" base project stamp_value tmp
  [ "$(id -u)" = 0 ] || die "build needs root (debootstrap, chroot)"
  command -v debootstrap >/dev/null || die "debootstrap is not installed (apt-get install debootstrap)"
  base="$(dockerfile_runs base)"
  project="$(dockerfile_runs project)"
  [ -n "$base" ] && [ -n "$project" ] || die "no RUN instructions found in $HERE/Dockerfile"
  stamp_value="$( (echo "$SUITE"; echo "$base"; cat "$HERE/requirements.lock") | sha256sum | cut -d' ' -f1)"
  if [ "$(cat "$root/.vibe-base" 2>/dev/null)" != "$stamp_value" ]; then
    tmp="$root.new"
    rm -rf "$tmp"
    debootstrap --variant=minbase "$SUITE" "$tmp" "$MIRROR" >/dev/null
    cp /etc/resolv.conf "$tmp/etc/resolv.conf"
    if [ -n "${PIP_CERT:-}" ]; then cp "$PIP_CERT" "$tmp/etc/vibe-build-ca.pem"; fi
    mkdir -p "$tmp/app/infra" "$tmp/data"
    cp "$HERE/requirements.lock" "$tmp/app/infra/requirements.lock"
    inside "$tmp" "$base"
    echo "$stamp_value" >"$tmp/.vibe-base"
    rm -rf "$root"
    mv "$tmp" "$root"
    mv "$tmp.log" "$root.log"
  fi
  rm -rf "$root/app/bot" "$root/app/build"
  cp "$REPO/pyproject.toml" "$REPO/README.md" "$root/app/"
  cp -r "$REPO/bot" "$root/app/bot"
  find "$root/app/bot" -name __pycache__ -prune -exec rm -rf {} +
  inside "$root" "$project"
}

run() {
  local root="$1" caps="$2" set="-all"
  shift 2
  [ -x "$root$VENV/bin/vibe" ] || die "$root is not a built root (infra/rootfs.sh build $root)"
  [ "$#" -gt 0 ] || die "no command given"
  local name
  for name in ${caps//,/ }; do set="$set,+$name"; done
  exec env -i PATH="$PATH_INSIDE" HOME=/root LANG=C.UTF-8 VIBE_DATA_DIR=/data \
    unshare --mount --propagation private --pid --fork --kill-child \
    sh -ec '
      root="$1" set="$2" uid="$3" ro="$4"; shift 4
      mount --bind "$root" "$root"
      if [ "$ro" = 1 ]; then mount -o remount,bind,ro "$root"; fi
      mount --rbind /dev "$root/dev"
      mount -t proc proc "$root/proc"
      mount -t tmpfs -o mode=1777 tmpfs "$root/tmp"
      user=""
      if [ -n "$uid" ]; then user="--reuid=$uid --regid=$uid --clear-groups"; fi
      # A container root is entered with pivot_root, not chroot (the kernel refuses new
      # user namespaces to a chrooted process): the same here, then the old root goes.
      cd "$root"
      pivot_root . .
      umount -l .
      cd /
      # shellcheck disable=SC2086 # $user is a list of options
      exec setpriv $user --bounding-set="$set" --inh-caps=-all \
        --ambient-caps=-all --no-new-privs -- "$@"' \
    sh "$root" "$set" "${RUN_UID:-}" "${READ_ONLY:-}" "$@"
}

case "${1:-}" in
  build)
    [ "$#" = 2 ] || die "usage: infra/rootfs.sh build DIR"
    build "$2"
    ;;
  run)
    [ "$#" -ge 4 ] || die "usage: infra/rootfs.sh run DIR CAPS CMD..."
    shift
    run "$@"
    ;;
  *) die "usage: infra/rootfs.sh build DIR | run DIR CAPS CMD..." ;;
esac

#!/usr/bin/env bash
# Refuse to release when the git tag (vX.Y.Z) is not pyproject's version with a v in front:
# the image tag, the package version and the manifests' pinned tag must agree.
#   infra/check-release-tag.sh v0.1.0
set -euo pipefail
cd "$(dirname "$0")/.."
tag="${1:?usage: infra/check-release-tag.sh vX.Y.Z}"
version="$(python3 -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')"
if [ "$tag" != "v$version" ]; then
  echo "::error::tag $tag does not match pyproject.toml's version $version (expected v$version)" >&2
  exit 1
fi
echo "tag $tag matches pyproject.toml's version $version"

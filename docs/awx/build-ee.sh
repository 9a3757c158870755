#!/usr/bin/env bash
# Build the execution environment image: the collection tarball, then ansible-builder.
#   bash docs/awx/build-ee.sh [TAG]       (needs podman or docker, and the base image's registry)
# CONTEXT_ONLY=1 writes the build context (docs/awx/context) without building an image.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top=$(cd "$here/../.." && pwd)
tag=${1:-vmmigration-ee:latest}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
ansible-galaxy collection build "$top" --output-path "$out" --force >/dev/null
cp "$out"/vmmigration-libvirt-*.tar.gz "$here/vmmigration-libvirt.tar.gz"
cd "$here"
if [ "${CONTEXT_ONLY:-0}" = 1 ]; then
    exec ansible-builder create -f execution-environment.yml --context "${CONTEXT_DIR:-$here/context}"
fi
exec ansible-builder build -f execution-environment.yml --context "$here/context" -t "$tag"

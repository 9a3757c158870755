#!/usr/bin/env bash
# ansible-lint with the production profile over the collection's roles and playbooks.
set -euo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PATH="$top/.venv/bin:$PATH"
cd "$top"
# Let ansible-lint resolve this collection's own modules: a collections path holding this checkout.
colls=$(mktemp -d /tmp/vmm-lint.XXXXXX)
trap 'rm -rf "$colls"' EXIT
mkdir -p "$colls/ansible_collections/vmmigration"
ln -s "$top" "$colls/ansible_collections/vmmigration/libvirt"
export ANSIBLE_COLLECTIONS_PATH="$colls"
# A home of its own: a copy of this collection that molecule's preparation installed in ~/.ansible/collections
# (on a machine that ran the suite before) must not stand in for this checkout.
mkdir -p "$colls/home"
export HOME="$colls/home"
NO_COLOR=1 ansible-lint --profile production --strict --offline --nocolor "$@"

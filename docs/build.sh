#!/usr/bin/env bash
# The module and role reference, generated from the modules' own DOCUMENTATION / EXAMPLES / RETURN and
# the roles' argument specs (antsibull-docs), never written twice; the scenario guides in
# docs/docsite/rst come along. Lints the collection's documentation first (references, markup, RST).
#   bash docs/build.sh [DEST]      (default docs/build; RST for the Ansible docsite layout)
set -euo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dest=$(realpath -m "${1:-$top/docs/build}")
export PATH="$top/.venv/bin:$PATH"
coll=$(mktemp -d)
trap 'rm -rf "$coll"' EXIT
mkdir -p "$coll/ansible_collections/vmmigration"
ln -s "$top" "$coll/ansible_collections/vmmigration/libvirt"
export ANSIBLE_COLLECTIONS_PATH="$coll"
cd "$coll/ansible_collections/vmmigration/libvirt"
antsibull-docs lint-collection-docs --plugin-docs .
rm -rf "$dest"
mkdir -p "$dest"
antsibull-docs collection --use-current --dest-dir "$dest" --output-format ansible-docsite vmmigration.libvirt >/dev/null
# every module and every role has its page
missing=0
for m in "$top"/plugins/modules/*.py; do
    n=$(basename "$m" .py)
    [ -s "$dest/collections/vmmigration/libvirt/${n}_module.rst" ] || { echo "no page for module $n"; missing=1; }
done
for r in "$top"/roles/*/; do
    n=$(basename "$r")
    [ -s "$dest/collections/vmmigration/libvirt/${n}_role.rst" ] || { echo "no page for role $n"; missing=1; }
done
[ "$missing" = 0 ]
echo "reference written to $dest/collections/vmmigration/libvirt/"

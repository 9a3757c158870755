#!/usr/bin/env bash
# ansible-test sanity on the collection, placed under an ansible_collections/ tree (a copy of the
# files git tracks or would track, so the lab's caches and the venv stay out).
# SANITY_VENV: the virtual environment whose ansible-test runs (default: the main .venv; tests/matrix.sh
# passes one per ansible-core release).
set -euo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PATH="${SANITY_VENV:-$top/.venv}/bin:$PATH"
work=$(mktemp -d /tmp/vmm-sanity.XXXXXX)
trap 'rm -rf "$work"' EXIT
dest="$work/ansible_collections/vmmigration/libvirt"
mkdir -p "$dest"
(cd "$top" && git ls-files -z --cached --others --exclude-standard \
    | while IFS= read -r -d '' f; do if [ -e "$f" ]; then printf '%s\0' "$f"; fi; done \
    | tar --null -T - -cf -) | tar -xf - -C "$dest"
# ansible-test wants a git-less tree or its own repository: give it its own.
cd "$dest"
git init -q && git add -A && git -c user.email=ci@lab -c user.name=ci commit -qm sanity
python "$top/tests/ansible_test_pip_bootstrap.py" 2>&1 | grep -v "^WARNING: Location" || true
ansible-test sanity --requirements --python 3.11 --color no "$@"

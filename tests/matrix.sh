#!/usr/bin/env bash
# ansible-test sanity and the unit tests on every ansible-core release the collection claims
# (meta/runtime.yml: requires_ansible >= 2.16). The main venv (.venv, tests/lab/setup.sh) covers 2.19;
# this covers the older ones, each in a small venv under .venv-matrix/<version> built from
# tests/matrix/requirements-<version>.txt and rebuilt only when that file, the Python or the
# installed libvirt changes.
#
#   bash tests/matrix.sh               # 2.16 2.17 2.18
#   bash tests/matrix.sh 2.19 2.16     # the versions named (any with a requirements file)
#
# Exits non-zero on any failure (a pytest run that collects no test, exit 5, included), after a
# one-line summary per version.
set -uo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$top" || exit 1
py=${PYTHON:-python3}
versions=("$@")
[ ${#versions[@]} -gt 0 ] || versions=(2.16 2.17 2.18)

# Unit tests that need what only the main venv has: ansible-builder and antsibull-docs (the execution
# environment context and the generated docs). Everything under tests/unit/plugins runs everywhere.
deselect=(--ignore tests/unit/test_awx_and_docs.py)

quiet_pip() { { "$@" 2>&1; } | { grep -v "^WARNING: Location" || true; }; return "${PIPESTATUS[0]}"; }

libvirt_v=$(pkg-config --modversion libvirt 2>/dev/null || echo none)
py_v=$("$py" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')

# libvirt-python is built from its sdist against the installed headers once, shared by every venv.
wheels="$top/.venv-matrix/wheels/libvirt-$libvirt_v-py$py_v"
lvp=$(grep -hE '^libvirt-python==' "$top"/tests/matrix/requirements-*.txt | sort -u)
if [ "$(echo "$lvp" | wc -l)" != 1 ]; then
    echo "tests/matrix/requirements-*.txt disagree on libvirt-python: $lvp" >&2
    exit 1
fi

build_venv() {  # VERSION: make .venv-matrix/VERSION unless its key (pins, Python, libvirt) is unchanged
    local v=$1 req="$top/tests/matrix/requirements-$1.txt" venv="$top/.venv-matrix/$1" key
    key=$( { cat "$req"; echo "python $py_v libvirt $libvirt_v"; } | sha256sum | cut -c1-16)
    if [ -x "$venv/bin/ansible-test" ] && [ "$(cat "$venv/.key" 2>/dev/null)" = "$key" ]; then
        return 0
    fi
    echo "building $venv (key $key)"
    if ! ls "$wheels"/libvirt_python-*.whl >/dev/null 2>&1; then
        mkdir -p "$wheels"
        quiet_pip "$py" -m pip wheel -q --no-deps --no-cache-dir -w "$wheels" "$lvp" || return 1
    fi
    rm -rf "$venv"
    "$py" -m venv "$venv" || return 1
    quiet_pip "$venv/bin/pip" install -q --find-links "$wheels" -r "$req" || return 1
    echo "$key" > "$venv/.key"
}

summary=()
failed=0
for v in "${versions[@]}"; do
    req="$top/tests/matrix/requirements-$v.txt"
    venv="$top/.venv-matrix/$v"
    t0=$(date +%s)
    if [ ! -f "$req" ]; then
        summary+=("ansible-core $v: no $req")
        failed=1
        continue
    fi
    echo "=== ansible-core $v"
    if ! build_venv "$v"; then
        summary+=("ansible-core $v: FAILED to build $venv")
        failed=1
        continue
    fi
    core=$("$venv/bin/python" -c 'from ansible.release import __version__; print(__version__)')
    if SANITY_VENV="$venv" bash tests/sanity.sh; then
        sanity=ok
    else
        sanity=FAILED
        failed=1
    fi
    out=$(mktemp)
    "$venv/bin/python" -m pytest -q -p no:cacheprovider "${deselect[@]}" tests/unit 2>&1 | tee "$out"
    rc=${PIPESTATUS[0]}
    counts=$(grep -E '^[0-9]+ (passed|failed|error)|^(=+ )?[0-9]+ (passed|failed)|no tests ran' "$out" | tail -1 \
             | sed -E 's/^=+ //; s/ in [0-9.]+s.*//; s/ =+$//')
    rm -f "$out"
    if [ "$rc" = 0 ]; then
        unit="unit $counts"
    else
        unit="unit FAILED (pytest exit $rc${counts:+: $counts})"
        failed=1
    fi
    summary+=("ansible-core $core: sanity $sanity, $unit ($(( $(date +%s) - t0 )) s)")
done

echo
printf '%s\n' "${summary[@]}"
exit "$failed"

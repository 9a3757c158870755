#!/usr/bin/env bash
# The collection against the older ansible-core releases it claims (meta/runtime.yml: requires_ansible
# >= 2.16): the unit tests and the version-sensitive part of ansible-test sanity on 2.16, 2.17 and 2.18.
# The main venv (.venv, tests/lab/setup.sh) covers 2.19 with the full sanity run (tests/sanity.sh).
#
#   bash tests/matrix.sh               # 2.16 2.17 2.18, in parallel
#   bash tests/matrix.sh 2.19 2.16     # the versions named (any with a tests/matrix/requirements-*.txt)
#
# Sanity tests run on each older version (MATRIX_SANITY overrides the list), on Python 3.11 only:
#   validate-modules    each module's DOCUMENTATION/EXAMPLES/RETURN and argument_spec against that
#                       release's doc and argspec schemas, the module imported with its module_utils
#   ansible-doc         that release's ansible-doc loads every plugin's docs (doc fragments included)
#   import              modules import with that release's ansible.module_utils alone, plugins with
#                       that release's ansible (a helper that appeared in a later release fails here)
#   runtime-metadata    meta/runtime.yml against that release's schema (routing, action_groups, versions)
#   action-plugin-docs  every action plugin has a module documenting it, by that release's rules
#   compile             everything byte-compiles on the controller Python (3.11)
# These are the ones whose verdict depends on the ansible-core release. Left to the 2.19 full run
# (tests/sanity.sh): the linters (pylint, pep8, yamllint, shellcheck, changelog, pslint) and the
# code-smell checks (line-endings, shebang, symlinks, empty-init, no-assert, ...), which read our files
# the same whatever release runs them and would cost a virtual environment per linter and version;
# and the checks only 2.16 has (future-import-/metaclass-boilerplate, no-basestring, no-dict-iter*,
# no-unicode-literals, no-main-display): Python 2-era patterns, in a collection that is Python 3 only
# (tests/config.yml) and whose Python 3 breakage of that kind pylint reports in the 2.19 run.
#
# Cost. From scratch (fresh clone, no ansible-test cache) nearly all the time is virtual environments:
# one per version here (ansible-core, pytest, scapy, libvirt-python), and five per version that
# ansible-test makes for the tests above (import needs two). So:
#   - the versions run in parallel (2 cores), each logging to .venv-matrix/logs/<version>.log, which is
#     printed, each line prefixed with the version, once all are done; then one summary line per version
#     with its wall time split into venv / sanity / unit;
#   - each version's ansible-test keeps its environments under its own HOME,
#     ~/.cache/vmmigration-matrix/<version> (a short path: ansible-test's venv shebangs must stay under
#     127 characters), so that parallel runs never build the same one at once (2.16 and 2.17 would:
#     some of their requirements are the same); pip's download cache stays the shared one;
#   - libvirt-python, built from its sdist against the installed libvirt (the unit tests need the real
#     binding), is built once in the background while the versions run sanity, and installed into each
#     venv just before its unit tests;
#   - the matrix venvs are made without pip and filled by this Python's pip without byte-compiling
#     (see vpip below); tests/ansible_test_pip_bootstrap.py bootstraps pip into ansible-test's
#     environments from an unpacked wheel, without byte-compiling pip and setuptools either.
# Measured from scratch on the 2-core machine while a lab kept it busy: 115 s and 179 s wall (the
# matrix got 1.6 and 1.1 cores), 190-200 s of CPU, so about 100-110 s on two idle cores; warm (venvs
# and ansible-test caches kept) about 35 s. Before: about 9.5 minutes from scratch, versions one after
# another, every sanity test.
# A venv is rebuilt only when its requirements file, the Python or the installed libvirt changes.
#
# Exits non-zero on any failure (a pytest run that collects no test, exit 5, included), after a
# one-line summary per version. No sanity ignore file is used.
set -uo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$top" || exit 1
py=${PYTHON:-python3}
versions=("$@")
[ ${#versions[@]} -gt 0 ] || versions=(2.16 2.17 2.18)
read -r -a sanity_tests <<< "${MATRIX_SANITY:-validate-modules ansible-doc import runtime-metadata action-plugin-docs compile}"
sanity_args=()
for t in "${sanity_tests[@]}"; do sanity_args+=(--test "$t"); done

# Unit tests that need what only the main venv has: ansible-builder and antsibull-docs (the execution
# environment context and the generated docs). Everything under tests/unit/plugins runs everywhere.
# (the fault-injection sweep drives the engines on a fake libvirt: nothing in it depends on the ansible-core
# release, and it runs in the main unit stage on 2.19)
deselect=(--ignore tests/unit/test_awx_and_docs.py --ignore tests/unit/plugins/module_utils/test_faults.py)

quiet_pip() { { "$@" 2>&1; } | { grep -v "^WARNING: Location" || true; }; return "${PIPESTATUS[0]}"; }

libvirt_v=$(pkg-config --modversion libvirt 2>/dev/null || echo none)
py_v=$("$py" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')
export PIP_CACHE_DIR=${PIP_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/pip}  # shared, whatever HOME says
test_homes=${XDG_CACHE_HOME:-$HOME/.cache}/vmmigration-matrix
logs="$top/.venv-matrix/logs"
mkdir -p "$logs" || exit 1

# libvirt-python: one wheel built from the sdist against the installed headers, shared by every venv.
wheels="$top/.venv-matrix/wheels/libvirt-$libvirt_v-py$py_v"
lvp=$(grep -hE '^libvirt-python==' "$top"/tests/matrix/requirements-*.txt | sort -u)
if [ "$(echo "$lvp" | wc -l)" != 1 ]; then
    echo "tests/matrix/requirements-*.txt disagree on libvirt-python: $lvp" >&2
    exit 1
fi
have_wheel() { ls "$wheels"/libvirt_python-*.whl >/dev/null 2>&1; }
build_wheel() {  # into a temporary directory, then moved in: a wheel present is a whole one
    local tmp="$wheels.tmp.$$" rc
    rm -rf "$tmp" && mkdir -p "$tmp" "$wheels" || return 1
    quiet_pip "$py" -m pip wheel -q --no-deps --no-cache-dir -w "$tmp" "$lvp"
    rc=$?
    [ "$rc" = 0 ] && mv "$tmp"/libvirt_python-*.whl "$wheels"/
    rm -rf "$tmp"
    return "$rc"
}
wait_wheel() {  # until the background build ends; true if the wheel is there
    while ! have_wheel && [ -n "${wheel_pid:-}" ] && kill -0 "$wheel_pid" 2>/dev/null; do sleep 1; done
    have_wheel
}

# The matrix venvs have no pip of their own (nothing in them needs one, and ensurepip's copy cost
# seconds per venv to byte-compile): this Python's pip (>= 22.3) installs into them. Their packages
# are not byte-compiled at install either (--no-compile): a run compiles only what it imports, which
# from scratch is cheaper than compiling all of ansible-core, scapy and pygments; a warm rerun pays
# about a second per version for it where PYTHONDONTWRITEBYTECODE is set.
vpip() { local venv=$1; shift; quiet_pip "$py" -m pip --python "$venv/bin/python" "$@"; }

venv_key() {
    { cat "$top/tests/matrix/requirements-$1.txt"; echo "python $py_v libvirt $libvirt_v"; } | sha256sum | cut -c1-16
}
venv_current() { [ -x "$top/.venv-matrix/$1/bin/ansible-test" ] && [ "$(cat "$top/.venv-matrix/$1/.key" 2>/dev/null)" = "$(venv_key "$1")" ]; }

run_version() {  # VERSION: everything for one version; its summary line goes to $logs/VERSION.summary
    local v=$1 req="$top/tests/matrix/requirements-$1.txt" venv="$top/.venv-matrix/$1" t0 core sanity unit
    local out rc counts built=0 t_venv t_sanity
    t0=$(date +%s)
    # summary TEXT [TIMES]: the version's line, with its wall time (and TIMES: where it went)
    summary() { echo "ansible-core ${core:-$v}: $1 ($(( $(date +%s) - t0 )) s${2:+: $2})" > "$logs/$v.summary"; }
    if ! venv_current "$v"; then
        # everything but libvirt-python now (sanity does not need it); the binding before the unit tests
        echo "building $venv (key $(venv_key "$v"))"
        rm -rf "$venv" "${test_homes:?}/$v"
        if ! "$py" -m venv --without-pip "$venv" \
           || ! grep -v '^libvirt-python==' "$req" > "$venv/requirements.txt" \
           || ! vpip "$venv" install -q --no-compile -r "$venv/requirements.txt"; then
            summary "FAILED to build $venv"
            return 1
        fi
        built=1
    fi
    t_venv=$(date +%s)
    core=$("$venv/bin/python" -c 'from ansible.release import __version__; print(__version__)')
    mkdir -p "$test_homes/$v"
    if HOME="$test_homes/$v" SANITY_VENV="$venv" bash tests/sanity.sh "${sanity_args[@]}"; then
        sanity="sanity ok (${sanity_tests[*]})"
    else
        sanity="sanity FAILED"
    fi
    t_sanity=$(date +%s)
    if [ "$built" = 1 ]; then
        if ! wait_wheel || ! vpip "$venv" install -q --no-compile --no-index --find-links "$wheels" "$lvp"; then
            summary "$sanity, unit not run: libvirt-python could not be built or installed (see $logs/wheel.log)"
            return 1
        fi
        venv_key "$v" > "$venv/.key"
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
    fi
    summary "$sanity, $unit" "venv $(( t_venv - t0 )) s, sanity $(( t_sanity - t_venv )) s, unit $(( $(date +%s) - t_sanity )) s"
    [ "$rc" = 0 ] && [ "$sanity" != "sanity FAILED" ]
}

t_start=$(date +%s)
# the wheel build starts first if any venv needs it, and overlaps the versions' sanity runs
for v in "${versions[@]}"; do
    if [ -f "tests/matrix/requirements-$v.txt" ] && ! venv_current "$v" && ! have_wheel; then
        echo "building the libvirt-python wheel ($lvp, libvirt $libvirt_v) in the background"
        build_wheel > "$logs/wheel.log" 2>&1 &
        wheel_pid=$!
        break
    fi
done

declare -A pids
for v in "${versions[@]}"; do
    rm -f "$logs/$v.summary" "$logs/$v.log"
    if [ ! -f "tests/matrix/requirements-$v.txt" ]; then
        echo "ansible-core $v: no tests/matrix/requirements-$v.txt" > "$logs/$v.summary"
        continue
    fi
    echo "ansible-core $v: started, log in $logs/$v.log"
    run_version "$v" > "$logs/$v.log" 2>&1 &
    pids[$v]=$!
done

failed=0
for v in "${versions[@]}"; do
    if [ -n "${pids[$v]:-}" ]; then
        wait "${pids[$v]}" || failed=1
        echo
        echo "=== ansible-core $v ($logs/$v.log)"
        # pip's download progress is left out; everything else as it came
        grep -vE '^ *(━|Downloading |Collecting |Using cached )' "$logs/$v.log" | sed "s/^/[$v] /"
    else
        failed=1
    fi
done
[ -z "${wheel_pid:-}" ] || wait "$wheel_pid" || { failed=1; sed 's/^/[wheel] /' "$logs/wheel.log"; }

echo
for v in "${versions[@]}"; do cat "$logs/$v.summary" 2>/dev/null || echo "ansible-core $v: no summary (crashed)"; done
echo "matrix: $(( $(date +%s) - t_start )) s"
exit "$failed"

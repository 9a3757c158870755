"""One lab for the whole lab-test session: up before the first lab test, down after the last.

The last lab test (test_zz_down.py) takes it down itself and checks nothing is left; the session
finalizer's own down is then a no-op, and still runs if a test in between failed.

A lab test that fails may leave the guests it defined wherever the failure left them: those would change what
the next tests see (a drain finds an extra VM, a plan names it). After a failed test, the guests it defined are
removed from every host, so one failure is reported once, not again by every test after it.
"""
import json
import os
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vmmlab as L  # noqa: E402  pylint: disable=wrong-import-position

FIGURES = {}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    del call
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        item.vmmlab_failed = True


@pytest.fixture(autouse=True)
def _remove_a_failed_tests_guests(request):
    before = set((L.load_state() or {}).get("guests") or {})
    yield
    if not getattr(request.node, "vmmlab_failed", False):
        return
    left = sorted(set((L.load_state() or {}).get("guests") or {}) - before)
    for name in left:
        L.remove_guest(name)
    if left:
        print("\n(the failed test's guests removed from the lab: %s)" % ", ".join(left))


@pytest.fixture(scope="session")
def figures():
    return FIGURES


@pytest.fixture(scope="session")
def lab():
    assert not L.load_state(), "a lab is already up: run 'tests/lab/lab down' first"
    t0 = time.monotonic()
    st = L.up(3)
    FIGURES["lab_up_s"] = round(time.monotonic() - t0, 2)
    yield st
    L.down(quiet=True)
    assert L.leftovers() == []
    print("\nLAB FIGURES " + json.dumps(FIGURES, sort_keys=True))

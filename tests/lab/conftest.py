"""One lab for the whole lab-test session: up before the first lab test, down after the last.

The last lab test (test_zz_down.py) takes it down itself and checks nothing is left; the session
finalizer's own down is then a no-op, and still runs if a test in between failed.
"""
import json
import os
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vmmlab as L  # noqa: E402  pylint: disable=wrong-import-position

FIGURES = {}


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

"""The reports fit the screen they are read on: in chromium at 1280 px, a rolling maintenance report whose table
holds a failed attempt's long reason (and a long unbroken path) and a drain's timeline with a long title have no
horizontal scrollbar. No lab needed: the pages are made by the code that makes them in a run."""
import importlib.util
import os

import browser

# the collection importable as ansible_collections.vmmigration.libvirt, as the unit tests make it (their conftest,
# loaded under another name: this directory has its own)
_SPEC = importlib.util.spec_from_file_location(
    "unit_conftest", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "unit", "conftest.py"))
_SPEC.loader.exec_module(importlib.util.module_from_spec(_SPEC))
from ansible_collections.vmmigration.libvirt.plugins.module_utils.orchestration import report as REPORT  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.vmmigration.libvirt.plugins.module_utils.orchestration import rolling as ROLLING  # noqa: E402  pylint: disable=wrong-import-position

REASON = ("h2: maintenance failed - the user's tasks ended with: Task failed: Module failed: non-zero return code "
          "from 'apt-get -y dist-upgrade' on h2: E: Sub-process /usr/bin/dpkg returned an error code (1); " * 3)
PATH = "/var/tmp/vmmigration-reports/rolling/" + "hypervisors-20261204T150000Z" * 6 + "/report.txt"


def page(tmp_path, name, html):
    path = tmp_path / (name + ".html")
    path.write_text(html)
    return str(path)


def test_a_rolling_report_with_long_reasons_fits_1280_px(tmp_path):
    lines = ["host  phase        state   attempts  reason", "h2    maintenance  failed  2         " + REASON,
             "report: " + PATH]
    html = ROLLING.timeline_html([], "rolling maintenance hypervisors-20261204T150000Z", lines)
    assert browser.overflow_px(page(tmp_path, "rolling", html)) == 0
    # (the measure itself: the same page without the report's style runs off the edge)
    bare = html.replace(REPORT.PAGE_STYLE, "")
    assert browser.overflow_px(page(tmp_path, "rolling-bare", bare)) > 100


def test_a_drains_timeline_fits_1280_px(tmp_path):
    results = [{"name": "vm-%02d" % i, "method": "live", "start_s": i, "total_time_s": 3.0, "state": "migrated",
                "destination": "h2"} for i in range(12)]
    # (underscores: no place a browser would break the line by itself)
    html = REPORT.timeline_html(results, "drain of h1 - " + PATH.replace("/", "_").replace("-", "_"))
    assert browser.overflow_px(page(tmp_path, "drain", html)) == 0
    assert browser.overflow_px(page(tmp_path, "drain-bare", html.replace(REPORT.PAGE_STYLE, ""))) > 100

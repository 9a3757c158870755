"""The cluster_facts module's read as the rolling maintenance calls it: one run per host brings the host's records of
the runs and its calibration with its facts, and a record that does not read fails the read before any marker is
written (libvirt is not opened)."""
import contextlib
import os

import pytest

from ansible_collections.vmmigration.libvirt.plugins.modules import cluster_facts as CF
from ansible_collections.vmmigration.libvirt.plugins.module_utils.orchestration import run_record as R

from module_args import run_main  # noqa: E402  pylint: disable=wrong-import-order


@pytest.fixture
def host(monkeypatch):
    """The module with a stand-in for libvirt: what it read ('reads') and whether it was opened ('opened')."""
    seen = {"reads": 0, "opened": 0}

    @contextlib.contextmanager
    def session(module):  # pylint: disable=unused-argument
        seen["opened"] += 1
        yield {"qemu:///system": object()}

    def read(client):  # pylint: disable=unused-argument
        seen["reads"] += 1
        return {"version": 1, "host": {"name": "h1"}, "domains": [], "cpu_questions": {},
                "markers": {"/var/lib/libvirt/images": {"name": "vmm-probe-1.marker", "size": 4096}}}
    monkeypatch.setattr(CF, "libvirt_session", session)
    monkeypatch.setattr(CF, "require_libvirt", lambda module: None)
    monkeypatch.setattr(CF, "start_event_loop", lambda: None)
    monkeypatch.setattr(CF, "read", read)
    monkeypatch.setattr(CF, "connection_transport", lambda uri: "remote")
    return seen


def call(**args):
    """Run the module; its JSON result (exit or fail), and what it warned."""
    return run_main(CF.main, dict(args, uri="qemu:///system"))


def test_the_read_brings_the_hosts_records_and_calibration(host, tmp_path):
    d = str(tmp_path / "state")
    R.save(d, R.new_record("hv", "hv-1", "h1", ["h1", "h2"], 100.0))
    R.save_json(R.calibration_path(d), {"version": 1, "samples": 2})
    out = call(phase="read", state_dir=d)
    assert not out.get("failed") and host["reads"] == 1
    assert [r["run_id"] for r in out["records"]] == ["hv-1"] and out["calibration"] == {"version": 1, "samples": 2}
    assert out["markers"] and out["host"] == {"name": "h1"}


def test_without_a_state_dir_no_records_are_returned(host):
    out = call(phase="read")
    assert host["reads"] == 1 and "records" not in out and "calibration" not in out


def test_a_record_that_does_not_read_fails_before_libvirt_is_opened(host, tmp_path):
    d = str(tmp_path / "state")
    R.save(d, R.new_record("hv", "hv-1", "h1", ["h1"], 100.0))
    bad = os.path.join(R.runs_dir(d), "hv-2.json")
    with open(bad, "w") as f:
        f.write("{not json")
    out = call(phase="read", state_dir=d)
    assert out["failed"] and bad in out["msg"] and "corrupt" in out["msg"]
    # no marker written: libvirt was never opened, nothing read
    assert host == {"reads": 0, "opened": 0}


def test_a_calibration_that_does_not_read_is_set_aside_with_a_warning(host, tmp_path):
    d = str(tmp_path / "state")
    os.makedirs(d)
    with open(R.calibration_path(d), "w") as f:
        f.write("[]")
    out = call(phase="read", state_dir=d)
    assert out["calibration"] == {} and out["records"] == [] and host["reads"] == 1
    assert len(out["warned"]) == 1 and "not a calibration" in out["warned"][0]

"""The rolling_record module as a job calls it on a hypervisor: start is idempotent, an update applies its steps in
order and writes the record owner-only, check mode writes nothing, abandon closes a run, bad input fails cleanly."""
import os

from ansible_collections.vmmigration.libvirt.plugins.modules import rolling_record as RR

from module_args import run_main  # noqa: E402  pylint: disable=wrong-import-order


def call(**args):
    """Run the module; its JSON result (exit or fail)."""
    return run_main(RR.main, args)


def test_a_run_recorded_updated_and_read_back(tmp_path):
    d = str(tmp_path / "state")
    base = dict(state_dir=d, group="hv", run_id="hv-1")
    first = call(op="start", host="h1", hosts=["h1", "h2"], at=100.0, **base)
    assert first["changed"] and first["record"]["state"] == "planned"
    assert oct(os.stat(first["path"]).st_mode & 0o777) == "0o600"
    # a second start (a resumed job) leaves the record as it is
    again = call(op="start", host="h1", hosts=["h1"], at=200.0, **base)
    assert not again["changed"] and again["record"] == first["record"]
    up = call(op="update", at=110.0, begin={"predicted": {"total_s": 9}},
              marks=[{"phase": "drain", "mark": "start"}], **base)
    assert up["record"]["state"] == "drain" and up["record"]["phases"]["drain"] == {"start": 110.0, "end": None}
    up = call(op="update", at=120.0, moves={"kind": "drained", "started_at": 111.0,
                                            "results": [{"name": "vm1", "destination": "h2", "state": "migrated"}]},
              marks=[{"phase": "drain", "mark": "end"}, {"phase": "maintenance", "mark": "start", "at": 121.0}],
              calibrate={"report": {"results": [], "wall_s": 5}}, **base)
    rec = up["record"]
    assert rec["state"] == "maintenance" and rec["drained"][0]["drain_started_at"] == 111.0
    assert rec["phases"]["drain"]["end"] == 120.0 and rec["phases"]["maintenance"]["start"] == 121.0
    failed = call(op="update", at=130.0, error="boom", **base)
    assert failed["record"]["state"] == "failed" and failed["record"]["failed_phase"] == "maintenance"
    read = call(state_dir=d)
    assert [r["state"] for r in read["records"]] == ["failed"] and read["calibration"]["version"] == 1
    # a drain's and a return's samples keep their phase (one not known - say a newer name - is kept as none)
    moved = {"plan": {"moves": [{"name": "vm1", "memory_mib": 96}]}, "wall_s": 3.0,
             "results": [{"name": "vm1", "state": "migrated", "method": "live", "start_s": 0.1, "end_s": 2.9,
                          "total_time_s": 2.8}]}
    for phase in ("return", "resume"):
        call(op="update", at=140.0, calibrate={"report": moved, "role_wall_s": 6.5, "drains_alongside": 1,
                                               "phase": phase}, **base)
    drains = call(state_dir=d)["calibration"]["drains"]
    assert [(x["phase"], x["drains_alongside"], x["role_wall_s"]) for x in drains] == [("return", 1, 6.5), (None, 1, 6.5)]


def test_check_mode_writes_nothing_and_abandon_closes_the_run(tmp_path):
    d = str(tmp_path / "state")
    base = dict(state_dir=d, group="hv", run_id="hv-1")
    planned = call(op="start", host="h1", at=1.0, _ansible_check_mode=True, **base)
    assert planned["changed"] and not os.path.exists(planned["path"])
    call(op="start", host="h1", at=1.0, **base)
    gone = call(op="abandon", at=2.0, **base)
    assert gone["changed"] and gone["record"]["state"] == "abandoned" and gone["record"]["abandoned_in"] == "planned"
    assert not call(op="abandon", at=3.0, **base)["changed"]


def test_bad_input_fails_cleanly_before_writing(tmp_path):
    d = str(tmp_path / "state")
    bad_id = call(op="start", host="h1", state_dir=d, group="hv", run_id="a b")
    assert bad_id["failed"] and "letters, digits" in bad_id["msg"] and not os.path.exists(d)
    missing = call(op="update", state_dir=d, group="hv", run_id="nope", marks=[{"phase": "drain", "mark": "start"}])
    assert missing["failed"] and "has no record of run nope" in missing["msg"]
    call(op="start", host="h1", state_dir=d, group="hv", run_id="r1")
    other = call(op="update", state_dir=d, group="other", run_id="r1", done=True)
    assert other["failed"] and "records run r1 of group hv, not of other" in other["msg"]
    wrong = call(op="update", state_dir=d, group="hv", run_id="r1", marks=[{"phase": "reboot", "mark": "start"}])
    assert wrong["failed"] and "no phase mark reboot:start" in wrong["msg"]

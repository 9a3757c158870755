"""The evacuate module's end: a run with failed VMs fails, naming each VM with what it ended as and its error -
also when nothing runs on the source any more - unless allow_failed_vms; VMs left on the source fail it unless
allow_incomplete, which never lets a failure pass; each VM is named once."""
import contextlib
import copy
import json

import pytest

from ansible.module_utils import basic
from ansible_collections.vmmigration.libvirt.plugins.modules import evacuate as EV
from ansible_collections.vmmigration.libvirt.plugins.module_utils.engines import live as M

from module_args import patch_module_args  # noqa: E402  pylint: disable=wrong-import-order


def line(name, state="migrated", error=None):
    return {"name": name, "state": state, "error": error, "answering": None}


SHUT_DOWN = line("a", "stopped_on_source", "cannot start a on h2: boom; the source could not restart it")
NO_CLEANUP = line("b", "migrated", "moved to h2; source cleanup failed: cannot undefine b")
ROLLED_BACK = line("c", "rolled_back", "migration failed: link down")
EVACUATED = {"state": "evacuated", "changed": True, "results": [SHUT_DOWN, NO_CLEANUP, line("d")], "left": [],
             "moved": ["d"], "failed_vms": ["a", "b"], "still_running_on_source": [], "verified": True}
INCOMPLETE = {"state": "incomplete", "changed": True, "results": [ROLLED_BACK, NO_CLEANUP, line("d")],
              "left": [{"name": "e", "action": "skip", "reason": "can only move cold"}], "moved": ["d"],
              "failed_vms": ["c", "b"], "still_running_on_source": ["c", "e"], "verified": True}
RETURNED = {"state": "returned_home", "changed": True, "results": [line("d"), ROLLED_BACK], "left": [], "failed_vms": ["c"],
            "still_running_on_source": ["d"], "verified": True}


def p(**kw):
    return dict(dict(allow_incomplete=False, allow_failed_vms=False, return_home=False), **kw)


def test_an_evacuated_drain_with_failed_vms_fails_naming_each_and_its_error():
    fail, warn = EV.end_messages(EVACUATED, p())
    assert warn == [] and fail == [
        "the drain ended in state evacuated, but 2 VM(s) failed - a (stopped_on_source: cannot start a on h2: boom; "
        "the source could not restart it); b (migrated: moved to h2; source cleanup failed: cannot undefine b)"]
    # allowed: the same, as a warning
    fail, warn = EV.end_messages(EVACUATED, p(allow_failed_vms=True))
    assert fail == [] and len(warn) == 1 and "2 VM(s) failed (allow_failed_vms) - a (stopped_on_source:" in warn[0]
    # allow_incomplete is not about failures
    assert EV.end_messages(EVACUATED, p(allow_incomplete=True))[0] == EV.end_messages(EVACUATED, p())[0]


def test_a_clean_drain_neither_fails_nor_warns():
    clean = dict(EVACUATED, results=[line("d")], failed_vms=[])
    assert EV.end_messages(clean, p()) == ([], [])
    assert EV.end_messages({"state": "planned", "results": None}, p()) == ([], [])


def test_an_incomplete_drain_names_each_failed_vm_once():
    # both refused: the VM still on the source is named (with its error) by the incomplete part only
    fail, warn = EV.end_messages(INCOMPLETE, p())
    assert warn == [] and len(fail) == 2
    assert fail[0].startswith("the drain is incomplete: 2 VM(s) still run on the source - c (failed: migration failed: "
                              "link down); e (skip: can only move cold)")
    assert fail[1] == ("besides those still on the source, 1 VM(s) failed - b (migrated: moved to h2; source cleanup "
                       "failed: cannot undefine b)")
    # both allowed: two warnings, c named once
    fail, warn = EV.end_messages(INCOMPLETE, p(allow_incomplete=True, allow_failed_vms=True))
    assert fail == [] and "(allow_incomplete)" in warn[0] and "c (" not in warn[1] and "b (migrated" in warn[1]
    # the failures refused, the VMs left allowed: every failed VM is named in the failure
    fail, warn = EV.end_messages(INCOMPLETE, p(allow_incomplete=True))
    assert "(allow_incomplete)" in warn[0] and len(warn) == 1
    assert fail == ["the drain ended in state incomplete, but 2 VM(s) failed - c (rolled_back: migration failed: "
                    "link down); b (migrated: moved to h2; source cleanup failed: cannot undefine b)"]
    # the VMs left refused, the failures allowed: what the failure names is not warned about again
    fail, warn = EV.end_messages(INCOMPLETE, p(allow_failed_vms=True))
    assert fail[0].startswith("the drain is incomplete:") and len(fail) == 1
    assert warn == ["besides those still on the source, 1 VM(s) failed (allow_failed_vms) - b (migrated: moved to h2; "
                    "source cleanup failed: cannot undefine b)"]


def test_a_return_with_vms_that_failed_to_come_back_fails():
    fail, warn = EV.end_messages(RETURNED, p(return_home=True))
    assert warn == [] and fail == ["the return home ended in state returned_home, but 1 VM(s) failed - c (rolled_back: "
                                   "migration failed: link down)"]
    assert EV.end_messages(RETURNED, p(return_home=True, allow_failed_vms=True))[0] == []


class _Client:
    def host_uuid(self):
        return "uuid-h1"


class _Cache:
    def get(self, uri):
        return _Client()


def run_module(monkeypatch, capsys, result, **args):
    """evacuate's main() with a drain that returns RESULT: (exit code, the module's JSON)."""
    monkeypatch.setattr(EV, "require_libvirt", lambda module: None)
    monkeypatch.setattr(EV, "start_event_loop", lambda: None)

    @contextlib.contextmanager
    def session(module, errors=()):
        yield _Cache()

    class Evacuation:
        def __init__(self, *a, **kw):
            pass

        def run(self, check_mode=False):
            return copy.deepcopy(result)
    monkeypatch.setattr(EV, "libvirt_session", session)
    monkeypatch.setattr(EV, "Evacuation", Evacuation)
    with patch_module_args(dict(dict(destinations=[{"name": "h2", "uri": "qemu+tls://h2/system"}]), **args)):
        with pytest.raises(SystemExit) as done:
            EV.main()
    return done.value.code, json.loads(capsys.readouterr().out)


def test_the_module_fails_unless_allow_failed_vms(monkeypatch, capsys):
    code, out = run_module(monkeypatch, capsys, EVACUATED)
    assert code == 1 and out["failed"] and out["state"] == "evacuated" and out["failed_vms"] == ["a", "b"]
    assert out["msg"].startswith("the drain ended in state evacuated, but 2 VM(s) failed - a (stopped_on_source: ")
    warned = []
    # (recorded here: how a warning reaches the result depends on the ansible-core release and on what ran before)
    monkeypatch.setattr(basic.AnsibleModule, "warn", lambda self, warning: warned.append(warning))
    code, out = run_module(monkeypatch, capsys, EVACUATED, allow_failed_vms=True)
    assert code == 0 and not out.get("failed") and out["failed_vms"] == ["a", "b"]
    assert [w for w in warned if "2 VM(s) failed (allow_failed_vms) - a (stopped_on_source:" in w]
    # both refused: one message, its parts apart
    code, out = run_module(monkeypatch, capsys, INCOMPLETE)
    assert code == 1 and out["msg"].startswith("the drain is incomplete: 2 VM(s) still run on the source - c (")
    assert " | besides those still on the source, 1 VM(s) failed - b (migrated: " in out["msg"]


def test_a_drain_whose_journal_could_not_be_written_fails_whatever_is_allowed(monkeypatch, capsys):
    """A later return of the VMs reads the journal: a drain that could not write it all never ends green, not
    even with allow_failed_vms and allow_incomplete."""
    result = dict(EVACUATED, failed_vms=[], results=[dict(r, error=None) for r in EVACUATED["results"]],
                  journal_errors=["cannot write the journal /var/lib/j (end of a): No space left on device"])
    code, out = run_module(monkeypatch, capsys, result, allow_failed_vms=True, allow_incomplete=True)
    assert code == 1 and out["failed"] and "its journal is incomplete" in out["msg"]
    assert "No space left on device" in out["msg"] and out["journal_errors"] == result["journal_errors"]
    code, out = run_module(monkeypatch, capsys, dict(result, journal_errors=[]))
    assert code == 0 and not out.get("failed")


def test_make_dirs_makes_the_missing_directories_owner_only_and_names_what_it_cannot(tmp_path):
    import os
    import stat
    journal = tmp_path / "state" / "h1" / "evacuate.journal"
    status = tmp_path / "run" / "evacuate.status.json"
    assert M.make_dirs({"journal": str(journal), "status_file": str(status)}, ("journal", "status_file")) == []
    for d in (journal.parent, status.parent):
        assert d.is_dir() and stat.S_IMODE(os.stat(str(d)).st_mode) == 0o700
    # (already there: nothing to do; not given: nothing to do)
    assert M.make_dirs({"journal": str(journal), "status_file": None}, ("journal", "status_file")) == []
    blocker = tmp_path / "file"
    blocker.write_text("")
    problems = M.make_dirs({"journal": str(blocker / "sub" / "j")}, ("journal",))
    assert len(problems) == 1 and problems[0].startswith("journal %s: cannot make its directory %s: " % (
        blocker / "sub" / "j", blocker / "sub"))

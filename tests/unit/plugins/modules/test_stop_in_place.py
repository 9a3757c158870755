"""The stop_in_place module end to end against libvirt's own test driver (test:///default: a real libvirt, a
persistent running domain 'test'; its state lives while a connection to it is open - the test holds one): it stops
and starts for real, a second run changes nothing, check mode changes nothing, and a bad input or a refusal fails
with a message - never a traceback - before anything changes."""
import json

import pytest

from ansible_collections.vmmigration.libvirt.plugins.modules import stop_in_place as SIP

from module_args import patch_module_args  # noqa: E402  pylint: disable=wrong-import-order

libvirt = pytest.importorskip("libvirt")


def run(capsys, check=False, **args):
    args = dict(dict(uri="test:///default", domains=["test"]), **args)
    if check:
        args["_ansible_check_mode"] = True
    with patch_module_args(args):
        with pytest.raises(SystemExit) as done:
            SIP.main()
    return done.value.code, json.loads(capsys.readouterr().out)


@pytest.fixture(autouse=True)
def held():
    """One connection held open for the whole test: the test driver keeps its state (what each module run did)."""
    conn = libvirt.open("test:///default")
    HELD.append(conn)
    yield conn
    HELD.remove(conn)
    conn.close()


HELD = []


def state():
    return HELD[0].lookupByName("test").isActive()


def test_stop_then_start_for_real_and_again_changes_nothing(capsys):
    assert state() == 1
    code, out = run(capsys, state="stopped", check=True)
    assert code == 0 and out["changed"] and out["results"][0]["state"] == "would_stop" and state() == 1
    code, out = run(capsys, state="stopped", shutdown_timeout_s=10)
    assert code == 0 and out["changed"] and out["results"][0]["state"] == "stopped" and state() == 0
    assert out["results"][0]["how"] == "clean"
    code, out = run(capsys, state="stopped")
    assert code == 0 and not out["changed"] and out["results"][0]["state"] == "already_stopped"
    code, out = run(capsys, state="running", check=True)
    assert code == 0 and out["changed"] and state() == 0
    code, out = run(capsys, state="running")
    assert code == 0 and out["changed"] and out["results"][0]["state"] == "started" and state() == 1
    code, out = run(capsys, state="running")
    assert code == 0 and not out["changed"] and out["results"][0]["state"] == "already_running"


@pytest.mark.parametrize("args, msg", [
    (dict(domains=["test", "nosuch"], state="stopped"), "nothing was stopped: nosuch is not defined on test:///default"),
    (dict(state="running", verify_addresses_by_vm={"test": "198.18.0.9"}),
     "verify_addresses_by_vm: a list of addresses per VM (not for test); nothing was changed"),
    (dict(state="stopped", shutdown_timeout_s=0), "shutdown_timeout_s must be more than 0 (got 0.0); nothing was changed"),
    (dict(state="paused"), "value of state must be one of: stopped, running, got: paused"),
])
def test_bad_input_fails_before_anything_changes(capsys, args, msg):
    code, out = run(capsys, **args)
    assert code == 1 and out["failed"] and msg in out["msg"] and "Traceback" not in out["msg"]
    assert state() == 1

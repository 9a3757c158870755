"""The per-VM pipeline (move -> announce -> verify), one code path for the migrate modules and the drain:
verification runs only once the VM runs on the destination, what it finds is reported (never raised, never
undoing the move), and the drain and the report carry it per VM."""
import re

import pytest

import fakevirt as F
from test_faults import checks_pass, live_opts, new_world, no_network, run_drain  # noqa: F401  pylint: disable=unused-import
from ansible_collections.vmmigration.libvirt.plugins.module_utils.engines import advertise as A
from ansible_collections.vmmigration.libvirt.plugins.module_utils.engines import drain as E
from ansible_collections.vmmigration.libvirt.plugins.module_utils.engines import drain_plan as PLAN
from ansible_collections.vmmigration.libvirt.plugins.module_utils.engines import pipeline as P
from ansible_collections.vmmigration.libvirt.plugins.module_utils.orchestration import report as R
from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver.connection import LibvirtClientError

ADDR = {'vm1': ['198.51.100.11', '2001:db8::11'], 'vm2': ['198.51.100.12']}


def probe_of(w, silent=()):
    """A fake ICMP probe: an address answers only while its VM runs on a host other than h1 (the source);
    SILENT ones never do. Records each call with where the VM ran then."""
    calls = []
    owner = dict((a, n) for n, addrs in ADDR.items() for a in addrs)

    def probe(addresses, timeout_s):
        names = set(owner[a] for a in addresses)
        calls.append((sorted(addresses), timeout_s, dict((n, w.running(n)) for n in names)))
        return dict((a, 0.25 if a not in silent and w.running(owner[a]) in (['h2'], ['h3']) else None)
                    for a in addresses)
    return probe, calls


def test_nothing_after_a_move_that_did_not_happen():
    for state in ('rolled_back', 'already_there', 'planned', 'postcopy_failed'):
        r = {'state': state}
        assert P.finish(None, 'vm1', r, announce_self=True, addresses=['198.51.100.1'],
                        probe=lambda *a: pytest.fail('probed after %s' % state)) == {'state': state}


def test_announce_failure_is_reported_not_raised(monkeypatch):
    class Dst:
        def __init__(self, dom):
            self.dom = dom

        def lookup(self, name):  # pylint: disable=unused-argument
            return self.dom

    assert P.finish(Dst(None), 'vm1', {'state': 'migrated'}, announce_self=True)['announced'] == \
        'not found on the destination'

    def refuse(dom):
        raise A.AdvertiseError('QEMU announce-self failed: no monitor')
    monkeypatch.setattr(A, 'announce_self', refuse)
    r = P.finish(Dst(object()), 'vm1', {'state': 'migrated'}, announce_self=True)
    assert r['announced'] == 'QEMU announce-self failed: no monitor' and r['state'] == 'migrated'

    class Lost:
        def lookup(self, name):
            raise LibvirtClientError('lookupByName failed (domain %s on qemu+tls://h2/system): connection lost' % name)
    assert P.finish(Lost(), 'vm1', {'state': 'migrated'}, announce_self=True)['announced'] == (
        'QEMU announce-self not sent: lookupByName failed (domain vm1 on qemu+tls://h2/system): connection lost')
    monkeypatch.setattr(A, 'announce_self', lambda dom: None)
    assert P.finish(Dst(object()), 'vm1', {'state': 'migrated_after_recovery'}, announce_self=True)['announced'] is True


def test_verify_reports_who_answered_and_when():
    r = P.finish(None, 'vm1', {'state': 'migrated', 'running_on_destination_at': 1000.0},
                 addresses=['198.51.100.1', '198.51.100.2'], verify_timeout_s=3,
                 probe=lambda a, t: {'198.51.100.1': 0.5, '198.51.100.2': None})
    assert r['answering']['all_answered'] is False and r['answering']['since_move_s'] is None
    assert P.silent_message(dict(r, domain='vm1')) == 'vm1 moved (state migrated), but 198.51.100.2 did not answer'
    r = P.verify(['198.51.100.1'], 3, probe=lambda a, t: {'198.51.100.1': 0.5}, moved_at=1000.0, now=lambda: 1001.0)
    assert r == {'addresses': {'198.51.100.1': 0.5}, 'all_answered': True, 'since_move_s': 1.5, 'error': None}

    def no_root(a, t):
        raise A.AdvertiseError('ICMP probes need root (CAP_NET_RAW): run the task with become: true')
    r = P.verify(['198.51.100.1'], 3, probe=no_root)
    assert not r['all_answered'] and 'need root' in r['error']
    assert 'need root' in P.silent_message({'domain': 'vm1', 'state': 'migrated', 'answering': r})


def test_bad_verify_options_are_refused():
    assert P.verify_problems({'verify_addresses': ['198.51.100.1', 'vm1.example'], 'verify_timeout_s': 0}) == [
        'not an IP address: vm1.example', 'verify_timeout_s must be greater than 0']
    assert P.verify_problems({'verify_addresses': [], 'verify_timeout_s': 10}) == []


def test_the_migrate_module_path_verifies_after_the_guest_runs_on_the_destination():
    w = new_world()
    probe, calls = probe_of(w)
    r = P.move_vm(F.FakeClient(w, F.uri('h1')), F.FakeClient(w, F.uri('h2')), 'vm1', 'live', live_opts(),
                  clock=w.clock, sleep=w.clock.sleep, addresses=ADDR['vm1'], verify_timeout_s=7, probe=probe)
    assert r['state'] == 'migrated' and r['answering']['all_answered'] is True
    assert calls == [(sorted(ADDR['vm1']), 7, {'vm1': ['h2']})]
    assert P.silent_message(r) is None


def test_the_drain_runs_the_same_pipeline_per_vm(tmp_path, monkeypatch):
    monkeypatch.setattr(PLAN, 'check_domains', checks_pass('shared'))
    w = new_world(('vm1', 'vm2'))
    probe, calls = probe_of(w, silent=('198.51.100.12',))
    real_init = E.Evacuation.__init__

    def init(self, *a, **kw):
        kw['probe'] = probe
        real_init(self, *a, **kw)
        self.p.update(verify_addresses_by_vm=ADDR, verify_timeout_s=4)
    monkeypatch.setattr(E.Evacuation, '__init__', init)
    result, err, _ev = run_drain(w, tmp_path)
    assert err is None and sorted(result['moved']) == ['vm1', 'vm2']
    # each VM probed once, after it ran on its destination (never while still on the source)
    assert sorted(c[0] for c in calls) == [sorted(ADDR['vm1']), ADDR['vm2']]
    assert all(t == 4 and all(h in (['h2'], ['h3']) for h in where.values()) for _a, t, where in calls)
    by = dict((r['name'], r) for r in result['results'])
    assert by['vm1']['answering']['all_answered'] is True
    assert by['vm2']['answering']['addresses'] == {'198.51.100.12': None}
    table = R.table(result['results'], result['left'])
    assert table[0].split()[-1] == 'ANSWERED'
    rows = dict((line.split()[0], line) for line in table[1:3])
    assert re.search(r'  \d+\.\d s$', rows['vm1']) and rows['vm2'].endswith('  silent'), rows
    assert 'vm2 moved, but 198.51.100.12 did not answer' in table
    assert any(line.startswith('vm2 ') and line.rstrip().endswith('silent') for line in table)


def test_a_vm_being_verified_holds_no_migration_slot(tmp_path, monkeypatch):
    """One move at a time (max_total=1): vm2's migration starts once vm1 runs on its destination, while vm1's
    addresses are still being verified (no link used), and the drain ends only after that verification."""
    import threading  # pylint: disable=import-outside-toplevel
    import time  # pylint: disable=import-outside-toplevel
    monkeypatch.setattr(PLAN, 'check_domains', checks_pass('shared'))
    w = new_world(('vm1', 'vm2'))
    seen, drain, polls = {}, {}, []
    vm2_moved = threading.Event()

    def until(what, limit_s=5.0):
        """Wait (real time) up to LIMIT_S for WHAT() to hold; whether it did."""
        deadline = time.monotonic() + limit_s
        while not what() and time.monotonic() < deadline:
            time.sleep(0.005)
        return bool(what())

    def probe(addresses, timeout_s):
        if addresses == ADDR['vm1']:
            seen['vm2 when vm1 is verified'] = w.running('vm2')
            # verification takes a while: vm2 moves meanwhile, and once its move is over entirely, the drain
            # still polls (waits for this verification) rather than ending
            seen['vm2 moved meanwhile'] = vm2_moved.wait(5) and until(lambda: 'vm2' not in drain['ev'].running)
            n = len(polls)
            seen['the drain waits for it'] = until(lambda: len(polls) >= n + 3)
        else:
            vm2_moved.set()
        return dict((a, 0.25) for a in addresses)
    real_init = E.Evacuation.__init__

    def init(self, *a, **kw):
        kw['probe'] = probe
        real_init(self, *a, **kw)
        self.p.update(verify_addresses_by_vm=ADDR, verify_timeout_s=4, max_total=1, domains=['vm1', 'vm2'])
        drain['ev'] = self
        write = self.files.write_status
        self.files.write_status = lambda status: polls.append(status.get('state')) or write(status)
    monkeypatch.setattr(E.Evacuation, '__init__', init)
    result, err, ev = run_drain(w, tmp_path)
    assert err is None and result['state'] == 'evacuated', (err, result.get('state'))
    by = dict((r['name'], r) for r in result['results'])
    first, second = sorted(by, key=lambda n: by[n]['start_s'])
    assert first == 'vm1', by
    # vm1's verification began before vm2 moved (one migration at a time), and vm2 moved before it ended
    assert seen == {'vm2 when vm1 is verified': ['h1'], 'vm2 moved meanwhile': True, 'the drain waits for it': True}
    assert by['vm2']['start_s'] <= by['vm1']['end_s'], by
    assert by['vm1']['answering']['all_answered'] and by['vm2']['answering']['all_answered']
    assert not ev.running and not ev.finishing


def test_without_addresses_the_report_has_no_answered_column():
    lines = R.table([{'name': 'vm1', 'destination': 'h2', 'method': 'live', 'state': 'migrated'}], [])
    assert 'ANSWERED' not in lines[0]


def test_one_headroom_per_drain_its_plan_and_every_moves_own_memory_check(tmp_path, monkeypatch):
    from ansible_collections.vmmigration.libvirt.plugins.module_utils.engines import live as M
    monkeypatch.setattr(PLAN, 'check_domains', checks_pass('shared'))
    reserved = []
    engine_check = checks_pass('shared')

    def check(src, dst, names, **kw):
        reserved.append(kw.get('reserve_mib'))
        return engine_check(src, dst, names, **kw)
    monkeypatch.setattr(M, 'check_domains', check)
    real_init = E.Evacuation.__init__

    def init(self, *a, **kw):
        real_init(self, *a, **kw)
        self.p.update(headroom_mib=300)
    monkeypatch.setattr(E.Evacuation, '__init__', init)
    w = new_world(('vm1', 'vm2'))
    result, err, _ev = run_drain(w, tmp_path)
    assert err is None and sorted(result['moved']) == ['vm1', 'vm2']
    # (the engine's own check of each move keeps the drain's headroom, not the migrate module's default)
    assert reserved and set(reserved) == {300}, reserved


def test_the_drains_options_are_typed_as_the_modules_type_theirs():
    from ansible_collections.vmmigration.libvirt.plugins.module_utils.engines import live as M
    typed, errors = M.typed_options(M.migration_argspec(), {'max_downtime_ms': '200', 'tuning': {'dead_link_s': '3'}})
    assert errors == [] and typed['max_downtime_ms'] == 200 and set(typed) == {'max_downtime_ms', 'tuning'}
    assert typed['tuning']['dead_link_s'] == 3.0 and typed['tuning']['stall_iterations'] == 2
    _typed, errors = M.typed_options(M.migration_argspec(), {'tuning': {'dead_link_s': 'soon'}, 'tls': 'off'})
    assert any('dead_link_s' in e and 'float' in e for e in errors), errors
    assert any('tls' in e and 'auto, required, disabled' in e for e in errors), errors

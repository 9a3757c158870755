"""The never-two, never-none invariants at every libvirt call of the live engine, the cold engine (a disk, and
UEFI NVRAM with TPM state) and the drain (live moves, an approved plan, a cold move, the shutdown policy, and
the return journey of return_home=true).

Each scenario runs once on the fake libvirt (fakevirt) to learn its call sites (a site is a place in our
code, not a method name); then once per occurrence of every site with each fault kind that means something
there (fakevirt.modes_for): a failure before the effect, a dropped connection (for good, or coming back),
a hang that libvirt's keepalive ends, the effect applied and its reply lost, a destination that crashes on
arrival, a corrupted copy - and, for the calls only a failure reaches (rollback, recovery), once more with
a second failure there (counted only when both fired). After every run the model is read:
  * the VM is never running on two hosts (a post-copy split is the one exception: paused on both, and
    reported as such), and never lost: defined somewhere, with its own disk (and NVRAM and TPM state);
  * with a single failure it runs on exactly one host - the one the result says - or the result says why
    not and what to check before starting either side;
  * it never starts from a disk that does not hold its own bytes (fakevirt.World.violations);
  * a source definition goes only while another host runs the guest (a snapshot taken at the undefine),
    a source disk only while another host holds a good copy;
  * a post-copy is resumed, never aborted or destroyed;
  * what the engine reports (state, error, journal) is what happened, through one error type;
  * no wait outlived its bound (the fake clock).
The test prints its coverage (sites x occurrences x fault kinds) and fails if any libvirt method the engines
call (read from their source) was never made to fail.
"""
import ast
import os
import threading
import time

import pytest

import fakevirt as F
from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver import connection as C
from ansible_collections.vmmigration.libvirt.plugins.module_utils.engines import cold as CM
from ansible_collections.vmmigration.libvirt.plugins.module_utils.engines import cold_commit as CM_COMMIT
from ansible_collections.vmmigration.libvirt.plugins.module_utils.engines import cold_copy as CM_COPY
from ansible_collections.vmmigration.libvirt.plugins.module_utils.engines import cold_move as CM_MOVE
from ansible_collections.vmmigration.libvirt.plugins.module_utils.engines import drain as E
from ansible_collections.vmmigration.libvirt.plugins.module_utils.engines import drain_files as FILES
from ansible_collections.vmmigration.libvirt.plugins.module_utils.engines import drain_plan as PLAN
from ansible_collections.vmmigration.libvirt.plugins.module_utils.engines import live as M
from ansible_collections.vmmigration.libvirt.plugins.module_utils.engines import live_postcopy as LP
from ansible_collections.vmmigration.libvirt.plugins.module_utils.engines import check_run as CHECK_RUN
from ansible_collections.vmmigration.libvirt.plugins.module_utils.engines import live_commit as LC
from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver.connection import LibvirtClientError
from ansible_collections.vmmigration.libvirt.plugins.module_utils.decide import strategy as S
from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver.wait import FakeClock

IMAGES = '/var/lib/libvirt/images'
DISK = IMAGES + '/vm1.qcow2'
COVERED = {}          # scenario -> (runs, sites, occurrences, kinds)
UNKNOWN_SAID = 'do not start it on either host'


class Clock(FakeClock):
    """Fake time that moves on a little at every look (work takes time) and lets the fake migration
    threads run at every sleep."""

    def __call__(self):
        self.now += 0.01
        return self.now

    def sleep(self, seconds):
        if threading.active_count() > 1:
            # (alone, there is nobody to let run: the sweep's single-threaded runs do not really sleep)
            time.sleep(0.0005)
        FakeClock.sleep(self, seconds)


def checks_pass(storage_verdict):
    def check_domains(src, dst, names, **_kw):  # pylint: disable=unused-argument
        dst.host_uuid()
        return {'destination': {'hostname': 'dest', 'uuid': 'u', 'memory_free': 8192 * F.MIB,
                                'memory_total': 16384 * F.MIB},
                'domains': [{'name': n, 'checks': [], 'memory_mib': 512, 'active': True, 'recommended': 'live',
                             'storage': {'vda': {'verdict': storage_verdict}}} for n in names]}
    return check_domains


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    monkeypatch.setattr(LP, 'reachable', lambda address, timeout=3.0: True)
    # (the fake hosts are no TCP peers: a host that is down refuses new connections in the model itself)
    monkeypatch.setattr(C, 'reachable', lambda address, timeout=3.0: True)
    monkeypatch.setattr(M, 'check_domains', checks_pass('shared'))
    monkeypatch.setattr(CM, 'check_domains', checks_pass('local'))


def new_world(names=('vm1',), running=True, shared=True):
    """Hosts h1-h3 with a pool over the images directory (one NFS share for all of them when SHARED);
    NAMES defined on h1, each with its disk there."""
    w = F.World(Clock())
    if shared:
        w.shared_dirs.add(IMAGES)
    for h in w.hosts.values():
        h.pools['images'] = IMAGES
    for i, name in enumerate(names):
        uuid = '11111111-2222-3333-4444-5555555555%02d' % i
        disk = '%s/%s.qcow2' % (IMAGES, name)
        w.hosts['h1'].doms[name] = F.Dom(name, uuid, F.domain_xml(name, uuid, disk),
                                         state=F.RUNNING if running else F.SHUTOFF)
        w.hosts['h1'].files[disk] = w.truth[disk] = os.urandom(3000) + b'\0' * 5000 + os.urandom(1000)
    w.initially_running = running
    return w


def local_world(names=('vm1',), running=True):
    return new_world(names, running, shared=False)


# -- the scenarios ---------------------------------------------------------------------------------

def live_opts(**kw):
    o = M.option_defaults(M.migration_argspec())
    # (a known link speed: the dirty rate is sampled before the move, and those calls fail in turn too)
    o.update(uri=F.uri('h1'), dest_uri=F.uri('h2'), domain='vm1', poll_interval_s=0.001, expected_bandwidth_mibps=100)
    o.update(kw)
    return o


def run_live(w, **kw):
    engine = M.LiveMigration(F.FakeClient(w, F.uri('h1')), F.FakeClient(w, F.uri('h2')), 'vm1', live_opts(**kw),
                             clock=w.clock, sleep=w.clock.sleep)
    try:
        return engine.run(), None, engine
    except LibvirtClientError as e:
        return getattr(e, 'result', None) or {}, e, engine


def run_cold(w, tmp_path, **kw):
    o = M.option_defaults(CM.COLD_ARGSPEC)
    o.update(uri=F.uri('h1'), dest_uri=F.uri('h2'), domain='vm1', work_dir=str(tmp_path), **kw)
    engine = CM.ColdMigration(F.FakeClient(w, F.uri('h1')), F.FakeClient(w, F.uri('h2')), 'vm1', o,
                              clock=w.clock, sleep=w.clock.sleep)
    try:
        return engine.run(), None, engine
    except LibvirtClientError as e:
        return getattr(e, 'result', None) or {}, e, engine


def run_drain(w, tmp_path, plan=None, policy='skip', timeout_s=3600, names=None, rollback=False, cold=None,
              max_outbound=2, stop_on_failure=False):
    p = {'uri': F.uri('h1'), 'destinations': [{'name': 'h2', 'uri': F.uri('h2')}, {'name': 'h3', 'uri': F.uri('h3')}],
         'domains': list(names) if names else None, 'headroom_mib': 0, 'anti_affinity': {}, 'pinned': {},
         'rate_mibps': 1000, 'max_outbound': max_outbound, 'max_inbound': 1, 'max_total': 4, 'non_live_policy': policy,
         'per_vm_timeout_s': 600, 'timeout_s': timeout_s, 'stop_on_failure': stop_on_failure, 'announce': False, 'journal': str(tmp_path / 'journal'),
         'status_file': str(tmp_path / 'status'), 'source_name': 'h1', 'return_home': rollback,
         'return_uri': F.uri('h1') if rollback else None,
         'migrate_options': {'tuning': {'poll_interval_s': 0.001, 'dirty_rate_sample_s': 0}}, 'cold_options': cold or {},
         'plan': plan}
    ev = E.Evacuation(F.FakeCache(w), p, lambda: F.FakeCache(w), clock=w.clock, sleep=w.clock.sleep)
    ev._source_security = None  # pylint: disable=protected-access
    try:
        return ev.run(), None, ev
    except LibvirtClientError as e:
        return getattr(e, 'result', None) or {}, e, ev


# -- the invariants, read from the model -----------------------------------------------------------

def model_invariants(w, names, label, src='h1'):
    """What the world itself says, whatever the engine reported."""
    assert not w.violations, '%s: %s' % (label, '; '.join(w.violations))
    for what, host, name, after in w.events:
        if what == 'undefine' and (src is None or host == src) and name in names and host not in after:
            # the source definition went: another host must hold the guest (running, if it ran)
            want = (F.RUNNING,) if w.initially_running else (F.RUNNING, F.PAUSED, F.SHUTOFF)
            assert any(st in want for h, st in after.items() if h != src), \
                '%s: the source definition of %s went while %s' % (label, name, after or 'no host had it')
        if what == 'delete_volume' and (src is None or host == src) and name in w.truth:
            assert any(ok for h, ok in after.items() if h != host), \
                '%s: the source disk %s went while no other host held a good copy (%s)' % (label, name, after)


def unknown_and_said(err, result):
    """The engine could not read the world back: it changed nothing more, and says what to check."""
    return err is not None and (result or {}).get('state') == 'unknown' and UNKNOWN_SAID in err.msg


def unreachable_and_said(w, err, where):
    """The one case a single failure may leave the guest not running: it was paused to finish and the
    destination dropped right after the job ended - paused there, and the error says so and what to do."""
    return (err is not None and 'h2' in w.dropped and where.get('h2') == F.PAUSED
            and 'cannot be reached' in err.msg and 'virsh resume vm1' in err.msg)


def crashed_and_said(w, err, result):
    """The destination's QEMU died as the guest arrived: nothing runs it; the source definition is kept and
    the error says so."""
    return (err is not None and any(e[0] == 'crashed' for e in w.events)
            and (result or {}).get('state') == 'destination_not_running' and 'vm1' in w.hosts['h1'].doms)


def live_invariants(w, result, err, engine, single, label):
    where = w.where('vm1')
    running = w.running('vm1')
    state = (result or {}).get('state')
    assert where, '%s: the VM is defined nowhere' % label
    model_invariants(w, ('vm1',), label)
    split = state in ('postcopy_failed', 'postcopy_running')
    if split:
        assert err is not None and 'do not destroy either side' in err.msg, label
        assert all(st in (F.PAUSED, F.RUNNING) for st in where.values()) and len(running) <= 1, (label, where)
    else:
        assert len(running) <= 1, '%s: running on %s' % (label, running)
    if single and not split and not unreachable_and_said(w, err, where) and not unknown_and_said(err, result) \
            and not crashed_and_said(w, err, result):
        assert len(running) == 1, '%s: running on %s (%s) - %s: %s' % (
            label, running, where, state, err and err.msg)
    if err is not None:
        assert isinstance(err, LibvirtClientError) and err.msg, label
    if state in ('migrated', 'migrated_after_recovery'):
        assert running == ['h2'], (label, where)
    if state == 'rolled_back':
        assert running == ['h1'], (label, where)
    if state == 'rolled_back_unconfirmed':
        # the source runs the guest again; the destination could not be read and may run it too: said
        assert 'h1' in running and 'before anything else' in err.msg and result['changed'], (label, where, err.msg)
    if state and state.startswith('source_') or state == 'destination_not_running':
        # a failure that says the guest is not on the destination: it is not running there
        assert 'h2' not in running, '%s: %s, but it runs on h2' % (label, state)
    if state == 'unknown':
        # nothing was resumed or started by the engine after it lost sight of the guest: at most the one
        # copy that libvirt itself started runs, and the operator is told to check before starting either
        assert UNKNOWN_SAID in err.msg and 'h1' not in running, (label, where, err.msg)
    if running == ['h1'] and err is None:
        pytest.fail('%s: the VM stayed on the source and nothing says why' % label)
    if err is not None and running == ['h2'] and state == 'migrated':
        assert err.msg.startswith('moved vm1'), (label, err.msg)


def source_lost_and_said(w, err, where):
    """The one case a single failure may leave a cold-moved guest stopped: the source went away after the
    guest was shut down for its move and before the copy was complete - it stays shut off on the source with
    its disk, and the error says to start it."""
    return (err is not None and 'h1' in w.dropped and where == {'h1': F.SHUTOFF} and DISK in w.hosts['h1'].files
            and 'virsh start vm1' in err.msg)


def cold_invariants(w, result, err, engine, single, label):
    where = w.where('vm1')
    running = w.running('vm1')
    state = (result or {}).get('state')
    assert where, '%s: the VM is defined nowhere' % label
    assert len(running) <= 1, '%s: running on %s' % (label, running)
    model_invariants(w, ('vm1',), label)
    # never lost: wherever it is defined, its own disk is there (and its NVRAM and TPM state, where it has them)
    assert any(all(w.hosts[h].files.get(path) == data for path, data in w.truth.items()) for h in where), \
        (label, where, w.events)
    if single and not source_lost_and_said(w, err, where) and not unknown_and_said(err, result):
        assert len(running) == 1, '%s: running on %s (%s) - %s: %s' % (
            label, running, where, state, err and err.msg)
    if err is not None:
        assert isinstance(err, LibvirtClientError) and err.msg, label
    if state == 'migrated':
        assert running == ['h2'] and w.hosts['h2'].files.get(DISK) == w.truth[DISK], (label, where)
    if state == 'rolled_back':
        assert running == ['h1'], (label, where)
    if state == 'stopped_on_source':
        # "could not be started there again: start it" - and it does not run anywhere (unless the error says the
        # source cannot be read to tell)
        assert 'h1' in where and (running == [] or 'cannot be read now' in err.msg), (label, where, err and err.msg)
    if state == 'unknown':
        # nothing was resumed or started by the engine after it lost sight of the guest: at most the one
        # copy that libvirt itself started runs, and the operator is told to check before starting either
        assert UNKNOWN_SAID in err.msg and 'h1' not in running, (label, where, err.msg)


def drain_invariants(w, result, err, ev, single, label, names=('vm1', 'vm2')):
    journal = FILES.read_journal(ev.p['journal'])
    back = bool(ev.p.get('return_home'))
    ends = dict((e['vm'], e['result']) for e in journal if e.get('event') == 'end' and bool(e.get('return_home')) == back)
    starts = [e['vm'] for e in journal if e.get('event') == 'start' and bool(e.get('return_home')) == back]
    stopped = dict((e['vm'], e['result']) for e in journal if e.get('event') == 'shutdown')
    away = dict((e['vm'], e['result'].get('destination')) for e in journal if e.get('event') == 'end'
                and not e.get('return_home'))
    ended = [e for e in journal if e.get('event') == 'end' and bool(e.get('return_home')) == back]
    # the drain never returns while a move runs: every move it started has ended in the journal
    assert sorted(starts) == sorted(e['vm'] for e in ended), '%s: started %s, ended %s' % (
        label, starts, [e['vm'] for e in ended])
    # a move tried again elsewhere (an alternate) is one whose failed try changed nothing: the guest still ran on
    # the source alone - the try's end says so, and the try after it starts from the source
    for i, e in enumerate(journal):
        if e.get('event') == 'reroute':
            tried = [x for x in journal[:i] if x.get('event') == 'end' and x['vm'] == e['vm']][-1]['result']
            assert tried['error'] and tried['state'] in ('failed', 'rolled_back'), (label, e, tried)
            assert not back and e['to'] != e['from'], (label, e)
    model_invariants(w, names, label, src=None if back else 'h1')
    for name in names:
        where, running = w.where(name), w.running(name)
        assert where, '%s: %s is defined nowhere' % (label, name)
        assert len(running) <= 1, '%s: %s runs on %s' % (label, name, running)
        end = ends.get(name)
        crashed = any(e[0] == 'crashed' and e[2] == name for e in w.events)
        if name in stopped:
            # the shutdown policy: stopped on this host (defined there with its disk), or still running here
            # when the drain says the shutdown failed - never running anywhere else
            assert 'h1' in where and running in ([], ['h1']), (label, name, where)
            if not stopped[name].startswith('shutdown failed'):
                assert running == [], '%s: %s said %r but runs on %s' % (label, name, stopped[name], running)
            continue
        # a cold move whose source went away after the guest was shut down: stopped there, and said so
        stranded = (end and end['state'] == 'stopped_on_source' and 'h1' in w.dropped and where == {'h1': F.SHUTOFF}
                    and 'virsh start %s' % name in (end.get('error') or ''))
        if single and not stranded and not (end and (end['state'] == 'unknown' or crashed and end['state'] == 'destination_not_running')):
            assert len(running) == 1, '%s: %s runs on %s (%s)' % (label, name, running, end)
        if back and end and end['state'] in FILES.OK_STATES and not end.get('error'):
            assert running == ['h1'], '%s: %s came back, it said (%s), but runs on %s' % (label, name, end, running)
        if end and end['state'] == 'migrated' and not end.get('error'):
            assert running == [end['destination']], (label, name, end, where)
        if end and end['state'] == 'rolled_back':
            # (a move back that is rolled back leaves the guest where the drain had taken it)
            origin = away[name] if back else 'h1'
            assert running == [origin], (label, name, end, where)
    if err is None and result['state'] == 'unverified':
        assert 'cannot list the domains' in result['unverified_because'], label
        told = set(r['name'] for r in result['results']) | set(x['name'] for x in result['left'])
        assert told == set(names), (label, told)
    elif err is None and back:
        came = sorted(r['name'] for r in result['results'] if not r['error'])
        assert result['state'] == ('returned_home' if came else 'nothing_moved'), (label, result['state'])
        assert all(w.running(n) == ['h1'] for n in came), (label, came)
    elif err is None:
        # (a paused QEMU still holds the guest on the host: the host is not drained)
        still = sorted(n for n in names if w.where(n).get('h1') in (F.RUNNING, F.PAUSED))
        assert result['still_running_on_source'] == still, (label, result['still_running_on_source'], still)
        assert result['state'] == ('evacuated' if not still else 'incomplete'), label
    else:
        assert isinstance(err, LibvirtClientError) and err.msg, label
        # nothing ran: a failure before the drain started changes nothing
        assert not ends, label


# -- the loop over every call ---------------------------------------------------------------------------

def points(log, first_only=False):
    """Each (host, site, n) of a clean run: every occurrence of every site (FIRST_ONLY: the first)."""
    by = {}
    for host, site, n in log:
        by.setdefault((host, site), []).append(n)
    out = []
    for (host, site), ns in sorted(by.items()):
        out += [(host, site, n) for n in sorted(set(ns[:1] if first_only else ns))]
    return out


def sweep(name, make, run, check, tmp_path, first_only=False, bound=None, clean_ok=None):
    clean = make()
    result, err, engine = run(clean)
    if clean_ok is None:
        assert err is None, '%s: the clean run failed: %s' % (name, err.msg)
    else:
        assert clean_ok(result, err), '%s: the clean run ended %s: %s' % (name, result.get('state'), err)
    check(clean, result, err, engine, True, '%s clean' % name)
    runs, sites, occurrences, kinds, unfired = 0, set(), 0, set(), 0
    for point in points(clean.log, first_only):
        occurrences += 1
        sites.add(point[:2])
        for mode in F.modes_for(point[1]):
            w = make()
            w.fault = point + (mode,)
            t0 = w.clock()
            result, err, engine = run(w)
            label = '%s: %s %s#%d %s' % (name, point[0], point[1], point[2], mode)
            check(w, result, err, engine, True, label)
            if mode in ('flap', 'lost'):
                # the host answers again within the read-back's time: where the guest is is known, not 'unknown'
                assert (result or {}).get('state') != 'unknown', '%s: unknown although the host came back: %s' % (
                    label, err and err.msg)
            if bound is not None:
                assert w.clock() - t0 <= bound, '%s: waited %.0f s (bound %d s)' % (label, w.clock() - t0, bound)
            runs += 1
            kinds.add(mode)
            # the calls only this failure reaches (rollback, recovery): fail each of them too
            extra = [x for x in points(w.log, True) if (x[0], x[1]) not in set((h, s) for h, s, _n in clean.log)]
            for second in extra:
                w2 = make()
                w2.faults = [point + (mode,), second + ('error',)]
                result, err, engine = run(w2)
                check(w2, result, err, engine, False, '%s, then %s %s#%d' % ((label,) + second))
                if len(w2.fired or []) < 2:
                    unfired += 1
                    continue
                runs += 1
                sites.add(second[:2])
    COVERED[name] = (runs, sites, occurrences, kinds, unfired)
    return set(s.split('@')[0].split(':')[0].split('.')[-1] for _h, s in sites)


def _attributes(tree):
    """Names called as attributes in TREE, and attributes passed without a call (client.call(what, conn.listAllDomains, 0)),
    except the typed driver's functions (driver.X(...)), listed apart."""
    called, through = set(), set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute):
            if isinstance(n.func.value, ast.Name) and n.func.value.id == 'driver':
                through.add(n.func.attr)
            else:
                called.add(n.func.attr)
            called |= set(a.attr for a in n.args if isinstance(a, ast.Attribute)
                          and not (isinstance(a.value, ast.Name) and a.value.id == 'driver'))
            through |= set(a.attr for a in n.args if isinstance(a, ast.Attribute)
                           and isinstance(a.value, ast.Name) and a.value.id == 'driver')
    return called, through


def engine_methods(module):
    """The libvirt methods a module of ours calls on the driver's objects (every name called as an
    attribute that the binding's connection, domain, pool, volume or stream classes define), directly or
    through a function of the typed driver (whose own calls of the binding are read from its source)."""
    import libvirt
    from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver import typed as D
    api = set()
    for cls in (libvirt.virConnect, libvirt.virDomain, libvirt.virStoragePool, libvirt.virStorageVol,
                libvirt.virStream):
        api |= set(n for n in dir(cls) if not n.startswith('_'))
    functions = dict((f.name, f) for f in ast.parse(open(D.__file__).read()).body if isinstance(f, ast.FunctionDef))

    def binding_calls(fn, seen):
        called, through = _attributes(functions[fn])
        inner = set(n.func.id for n in ast.walk(functions[fn]) if isinstance(n, ast.Call)
                    and isinstance(n.func, ast.Name) and n.func.id in functions and n.func.id not in seen)
        for f in through | inner:
            called |= binding_calls(f, seen | {fn})
        return called & api
    called, through = _attributes(ast.parse(open(module.__file__).read()))
    for fn in through & set(functions):
        called |= binding_calls(fn, set())
    return called & api


# Calls an engine makes that these scenarios cannot reach, and why (each is lab-tested).
NOT_REACHED = {
    'domainEventRegisterAny': "only with libvirt's event loop running (the modules start it; it is optional: "
                              "completed_stats falls back to jobStats)",
    'abortJobFlags': 'interrupting a post-copy whose link died: the lab cuts the link (test_faults)',
    'storagePoolLookupByName': 'a volume disk or dest_pool (lab: test_cold)',
    'listAllVolumes': 'TPM state: swept by test_cold_move_of_nvram_and_tpm_at_every_failure_point (lab: the TPM tests)',
    'name': 'not a call to libvirt (the binding keeps the name)',
    'path': "a disk of type volume: its pool's path (lab: test_cold)",
    # names the binding has too, but the engines call on their own objects, not on libvirt's
    'reset': 'LibvirtClient.reset (a new connection)',
    'rename': 'os.rename of the status file',
    'shutdown': 'the drain policy\'s shutdown: swept by test_drain_cold_moves_and_shutdown_policy_at_every_failure_point',
    'close': 'closing connections',
    'refresh': 'a storage pool the host already had over the directory (lab)',
}


def test_live_engine_at_every_failure_point(tmp_path):
    sites = sweep('live pre-copy (p2p)', new_world, run_live, live_invariants, tmp_path, bound=400)
    sites |= sweep('live, through both connections', new_world, lambda w: run_live(w, p2p=False), live_invariants,
                   tmp_path, bound=400)

    def busy():
        w = new_world()
        w.polls_to_finish = None        # never converges: the engine must pause it to finish
        w.job_step_s = 20.0
        return w
    sites |= sweep('live, paused to finish', busy, lambda w: run_live(w, final_action='pause', completion='precopy'),
                   live_invariants, tmp_path, first_only=True, bound=900)
    sites |= sweep('live, aborted when it cannot converge', busy,
                   lambda w: run_live(w, final_action='abort', completion='precopy'),
                   live_invariants, tmp_path, first_only=True, bound=900,
                   clean_ok=lambda r, e: r.get('state') == 'rolled_back' and 'aborted by the engine' in e.msg)

    def postcopy():
        w = busy()
        return w
    sites |= sweep('live, hybrid with post-copy', postcopy,
                   lambda w: run_live(w, allow_postcopy=True, completion='hybrid'), live_invariants, tmp_path,
                   first_only=True, bound=900)
    _print_coverage('live')
    missing = engine_methods(M) - sites - set(NOT_REACHED)
    assert not missing, 'libvirt calls of the live engine never made to fail: %s' % sorted(missing)


def method(site):
    return site.split('@', 1)[0]


def site_of(w, name):
    """The one call site of the libvirt method NAME in W's log."""
    found = sorted(set(s for _h, s, _n in w.log if method(s) == name))
    assert len(found) == 1, (name, found)
    return found[0]


def test_post_copy_split_is_resumed_never_destroyed():
    """A failure after the switch to post-copy splits the guest: the engine resumes it (never aborts); when
    every resume fails it says so and leaves both halves."""
    w = new_world()
    w.polls_to_finish = None
    w.job_step_s = 20.0
    run_live(w, allow_postcopy=True, completion='hybrid')
    split = site_of(w, 'migrateToURI3:postcopy')
    call = site_of(w, 'migrateToURI3')
    w = new_world()
    w.polls_to_finish = None
    w.job_step_s = 20.0
    w.fault = ('h1', split, 1, 'error')
    result, err, _engine = run_live(w, allow_postcopy=True, completion='hybrid')
    assert err is None and result['state'] == 'migrated_after_recovery' and w.running('vm1') == ['h2']
    w = new_world()
    w.polls_to_finish = None
    w.job_step_s = 20.0
    w.faults = [('h1', split, 1, 'error')] + [('h1', call, n, 'error') for n in range(2, 12)]
    result, err, _engine = run_live(w, allow_postcopy=True, completion='hybrid', postcopy_recovery_attempts=3)
    assert result['state'] == 'postcopy_failed' and 'do not destroy either side' in err.msg
    assert w.where('vm1') == {'h1': F.PAUSED, 'h2': F.PAUSED} and not any(e[0] == 'destroy' for e in w.events) and not w.violations


def test_cold_engine_at_every_failure_point(tmp_path):
    sites = sweep('cold, running guest with a local disk', local_world, lambda w: run_cold(w, tmp_path),
                  cold_invariants, tmp_path, bound=400)

    def deaf():
        w = local_world()
        w.ignore_shutdown = True                  # powered off after shutdown_timeout_s (force)
        del w.hosts['h2'].pools['images']         # the destination has no pool over the directory yet
        return w
    sites |= sweep('cold, forced off, to a host without a pool', deaf,
                   lambda w: run_cold(w, tmp_path, force=True, shutdown_timeout_s=10), cold_invariants, tmp_path,
                   first_only=True, bound=400)
    _print_coverage('cold')
    cold = engine_methods(CM) | engine_methods(CM_COPY) | engine_methods(CM_COMMIT) | engine_methods(CM_MOVE)
    missing = cold - sites - set(NOT_REACHED)
    assert not missing, 'libvirt calls of the cold engine never made to fail: %s' % sorted(missing)


def test_prechecks_at_every_failure_point(tmp_path, monkeypatch):
    """The checks a move makes before it changes anything (host facts, the guest's facts, the CPU comparison,
    the marker probe of its storage), unstubbed: a failure there changes nothing and says why."""
    from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver import facts as FACTS
    from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver import storage_proof as STORAGE
    monkeypatch.setattr(M, 'check_domains', CHECK_RUN.check_domains)
    monkeypatch.setattr(CM, 'check_domains', CHECK_RUN.check_domains)
    w = new_world()
    result, err, _engine = run_live(w)
    assert err is None and result['state'] == 'migrated' and result['storage']['shared'] == ['vda'], err
    w = local_world()
    result, err, _engine = run_cold(w, tmp_path)
    assert err is None and result['state'] == 'migrated' and [f['kind'] for f in result['copied']] == ['disk'], err

    def custom_cpu():
        w = new_world()
        d = w.hosts['h1'].doms['vm1']
        d.xml = d.xml.replace('<devices>', "<cpu mode='custom' match='exact'><model>Skylake-Client-IBRS</model></cpu>"
                              "<devices>")
        return w
    sites = sweep('prechecks, live (a custom CPU, a shared disk proven by a marker)', custom_cpu, run_live,
                  live_invariants, tmp_path, first_only=True, bound=400)
    sites |= sweep('prechecks, cold (local disk)', local_world, lambda w: run_cold(w, tmp_path), cold_invariants,
                   tmp_path, first_only=True, bound=400)
    _print_coverage('prechecks')
    called = engine_methods(CHECK_RUN) | engine_methods(FACTS) | engine_methods(STORAGE)
    missing = called - sites - set(NOT_REACHED)
    assert not missing, 'libvirt calls of the prechecks never made to fail: %s' % sorted(missing)


NVRAM = '/var/lib/libvirt/qemu/nvram/vm1_VARS.fd'


def firmware_world():
    """vm1 boots UEFI (its NVRAM file on h1) and has an emulated TPM 2.0 with state (on h1): a cold move
    copies both with its disk, and the guest must never start from a copy that is not its own."""
    w = local_world()
    d = w.hosts['h1'].doms['vm1']
    d.xml = d.xml.replace("hvm</type>", "hvm</type><loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE.fd"
                          "</loader><nvram>%s</nvram>" % NVRAM).replace(
        "</devices>", "<tpm model='tpm-crb'><backend type='emulator' version='2.0'/></tpm></devices>")
    tpm = '%s/%s/tpm2/tpm2-00.permall' % (F.SWTPM, d.uuid)
    for path, data in ((NVRAM, os.urandom(2048)), (tpm, os.urandom(1024))):
        w.hosts['h1'].files[path] = w.truth[path] = data
    return w


def test_cold_move_of_nvram_and_tpm_at_every_failure_point(tmp_path):
    w = firmware_world()
    result, err, _engine = run_cold(w, tmp_path)
    assert err is None and result['state'] == 'migrated', err
    assert sorted(f['kind'] for f in result['copied']) == ['disk', 'nvram', 'tpm'] and all(f['verified'] for f in result['copied'])
    assert all(w.hosts['h2'].files.get(p) == data for p, data in w.truth.items())
    # the source's copies go once the destination runs the guest from verified copies
    assert not any(p in w.hosts['h1'].files for p in w.truth)
    sites = sweep('cold, UEFI NVRAM and TPM state', firmware_world, lambda w: run_cold(w, tmp_path), cold_invariants,
                  tmp_path, first_only=True, bound=400)
    _print_coverage('cold, UEFI')
    assert {'listAllVolumes', 'undefineFlags'} <= sites, sorted(sites)


def test_drain_at_every_failure_point(tmp_path, monkeypatch):
    monkeypatch.setattr(PLAN, 'check_domains', checks_pass('shared'))
    counter = {'n': 0}

    def run(w):
        counter['n'] += 1
        d = tmp_path / str(counter['n'])
        d.mkdir()
        # (one outbound slot: vm2 is checked and planned ahead while vm1 migrates, and waits for the slot)
        return run_drain(w, d, max_outbound=1)
    sites = sweep('drain of two VMs', lambda: new_world(('vm1', 'vm2')), run, drain_invariants, tmp_path,
                  first_only=True, bound=800)
    # the same drain running an approved plan (made on the unchanged hosts): revalidated, no checks again
    w = new_world(('vm1', 'vm2'))
    plan = PLAN.plan_evacuation(F.FakeCache(w), {'uri': F.uri('h1'), 'destinations': [
        {'name': 'h2', 'uri': F.uri('h2')}, {'name': 'h3', 'uri': F.uri('h3')}], 'domains': None, 'headroom_mib': 0,
        'anti_affinity': {}, 'pinned': {}, 'rate_mibps': 1000, 'max_outbound': 2, 'max_inbound': 1, 'max_total': 4})
    assert [m['storage'] for m in plan['moves']] == [{'vda': 'shared'}] * 2

    def run_approved(w):
        counter['n'] += 1
        d = tmp_path / str(counter['n'])
        d.mkdir()
        return run_drain(w, d, plan=plan)
    sites |= sweep('drain of two VMs, approved plan', lambda: new_world(('vm1', 'vm2')), run_approved,
                   drain_invariants, tmp_path, first_only=True, bound=800)
    _print_coverage('drain')
    missing = engine_methods(E) - sites - set(NOT_REACHED)
    assert not missing, 'libvirt calls of the drain never made to fail: %s' % sorted(missing)


def checks_one_cold(storage_verdict='shared'):
    """vm2 cannot move live (a check fails for live moves only): only a cold move takes it."""
    live = checks_pass(storage_verdict)

    def check_domains(src, dst, names, **kw):
        report = live(src, dst, names, **kw)
        for r in report['domains']:
            if r['name'] == 'vm2':
                r['checks'] = [{'check': 'blockers', 'status': 'fail', 'blocks': 'live',
                                'reason': 'a host device is passed through'}]
        return report
    return check_domains


def test_drain_cold_moves_and_shutdown_policy_at_every_failure_point(tmp_path, monkeypatch):
    """The drain's other moves: a VM only a cold move takes, moved cold (non_live_policy=cold) or shut down on
    the host (non_live_policy=shutdown), beside a live move."""
    monkeypatch.setattr(PLAN, 'check_domains', checks_one_cold())
    monkeypatch.setattr(CM, 'check_domains', checks_pass('shared'))
    counter = {'n': 0}

    def runner(policy, cold=None):
        def run(w):
            counter['n'] += 1
            d = tmp_path / ('%s%d' % (policy, counter['n']))
            d.mkdir()
            return run_drain(w, d, policy=policy, cold=cold)
        return run
    w = new_world(('vm1', 'vm2'))
    result, err, _ev = runner('cold')(w)
    assert err is None and result['state'] == 'evacuated', err
    assert sorted((r['name'], r['method']) for r in result['results']) == [('vm1', 'live'), ('vm2', 'cold')]
    w = new_world(('vm1', 'vm2'))
    result, err, _ev = runner('shutdown')(w)
    assert err is None and [(x['name'], x['action'], x['result']) for x in result['left']] == [
        ('vm2', 'shutdown', 'shut down')] and w.where('vm2') == {'h1': F.SHUTOFF}
    sites = sweep('drain, one VM cold', lambda: new_world(('vm1', 'vm2')), runner('cold'), drain_invariants, tmp_path,
                  first_only=True, bound=800)

    # the one shutdown policy: a guest deaf to ACPI is said so and left running, unless cold_options.force
    w = new_world(('vm1', 'vm2'))
    w.ignore_shutdown = True
    result, err, _ev = runner('shutdown')(w)
    assert err is None and [(x['name'], x['result']) for x in result['left']] == [
        ('vm2', 'shutdown failed: did not shut down within 120 s (cold_options.force=true powers it off); it still runs '
                'here')] and w.where('vm2') == {'h1': F.RUNNING} and result['still_running_on_source'] == ['vm2']
    assert len([x for x in w.log if x[1].startswith('shutdown@')]) >= 20   # pressed every 5 s, not once

    def deaf():
        w = new_world(('vm1', 'vm2'))
        w.ignore_shutdown = True            # powered off after the shutdown timeout (cold_options.force)
        return w
    # (a 10 s timeout, not the default 120 s: the same presses, timeout and power-off, in a twelfth of the fake clock's
    # polls - each of which really sleeps - for each of the sweep's runs)
    sites |= sweep('drain, one VM shut down', deaf, runner('shutdown', {'force': True, 'shutdown_timeout_s': 10}),
                   drain_invariants, tmp_path,
                   first_only=True, bound=800)
    _print_coverage('drain, one')
    assert {'shutdown', 'destroy', 'create'} <= sites, sorted(sites)


def test_the_return_journey_at_every_failure_point(tmp_path, monkeypatch):
    """return_home=true: the VMs a drain moved come back from where its journal says they went."""
    monkeypatch.setattr(PLAN, 'check_domains', checks_pass('shared'))
    counter = {'n': 0}

    def drained():
        counter['n'] += 1
        d = tmp_path / ('back%d' % counter['n'])
        d.mkdir()
        w = new_world(('vm1', 'vm2'))
        result, err, _ev = run_drain(w, d)
        assert err is None and result['state'] == 'evacuated', err
        w.drain_dir = d
        # the way back is what is swept: the counts of calls start again
        w.log, w.counts = [], {}
        return w

    def back(w):
        return run_drain(w, w.drain_dir, rollback=True)
    w = drained()
    away = dict((n, w.running(n)) for n in ('vm1', 'vm2'))
    result, err, _ev = back(w)
    assert err is None and result['state'] == 'returned_home' and sorted(away) == ['vm1', 'vm2']
    assert all(h != ['h1'] for h in away.values()) and all(w.running(n) == ['h1'] for n in away)
    sweep('drain, the return journey', drained, back, drain_invariants, tmp_path, first_only=True, bound=800)
    _print_coverage('drain, the return')


# The failure runs each part of the sweep made when its coverage was last counted (the live, cold and precheck sweeps
# are deterministic; a drain's threads make its second faults vary a little, hence 95 %). A sweep that covers less -
# a call site no longer seen as the collection's, a path no longer reached - fails: coverage never shrinks silently.
FLOOR = {'live': 1093, 'cold': 2224, 'prechecks': 1936, 'cold, UEFI': 1089, 'drain': 1851, 'drain, one': 1616,
         'drain, the return': 406}


def _print_coverage(prefix):
    """Print what the sweep of PREFIX covered, and hold it to its FLOOR."""
    total = 0
    for name, (runs, sites, occurrences, kinds, unfired) in sorted(COVERED.items()):
        if name.startswith(prefix):
            total += runs
            print('\nfault injection: %s - %d call sites x %d occurrences x %d fault kinds (%s): %d failure runs'
                  '%s' % (name, len(sites), occurrences, len(kinds), ','.join(sorted(kinds)), runs,
                          ' (%d second faults that never fired, not counted)' % unfired if unfired else ''))
    print('fault injection (%s): %d failure runs in all' % (prefix, total))
    assert total >= FLOOR[prefix], 'the %s sweep covers less than it did: %d failure runs, was %d' % (
        prefix, total, FLOOR[prefix])


def test_the_dirty_rate_is_sampled_only_when_it_can_decide_something():
    """Link speed unknown: no second spent sampling before the move (it would decide nothing); the result
    reports the dirty rate the migration measured. Link speed known: sampled while the checks run."""
    w = new_world()
    result, err, _engine = run_live(w, expected_bandwidth_mibps=None)
    assert err is None and result['state'] == 'migrated'
    assert not any(method(site) in ('startDirtyRateCalc', 'domainListGetStats') for _h, site, _n in w.log)
    assert result['plan']['dirty_rate_mibps'] is None and result['dirty_rate_mibps'] == 3.0   # 768 pages/s x 4 KiB
    assert result['plan']['strategy'] == 'precopy'
    w = new_world()
    result, err, _engine = run_live(w)
    assert err is None and result['plan']['dirty_rate_mibps'] == 4.0 and result['dirty_rate_mibps'] == 4.0
    assert [method(site) for _h, site, _n in w.log].count('startDirtyRateCalc') == 1


def test_a_move_prepared_ahead_changes_nothing_before_its_slot():
    """A drain lets a live move check, sample and plan before a migration slot is free: the engine's gate
    (on_ready) comes after all of that and before anything changes; refused, the guest runs on the source as it
    did, nothing is on the destination, and the move says nothing was changed."""
    seen = []

    def gate(w, answer):
        def on_ready():
            seen.append([method(site) for _h, site, _n in w.log])
            return answer
        return on_ready
    w = new_world()
    engine = M.LiveMigration(F.FakeClient(w, F.uri('h1')), F.FakeClient(w, F.uri('h2')), 'vm1', live_opts(),
                             clock=w.clock, sleep=w.clock.sleep, on_ready=gate(w, False))
    with pytest.raises(LibvirtClientError) as e:
        engine.run()
    assert 'nothing was changed' in e.value.msg and e.value.result['changed'] is False
    assert w.where('vm1') == {'h1': F.RUNNING} and not w.violations
    calls = [method(site) for _h, site, _n in w.log]
    assert len(seen) == 1 and calls == seen[0]          # nothing asked of libvirt after a refused gate
    assert 'startDirtyRateCalc' in calls and not any(c.startswith('migrate') for c in calls), calls
    w = new_world()
    seen[:] = []
    engine = M.LiveMigration(F.FakeClient(w, F.uri('h1')), F.FakeClient(w, F.uri('h2')), 'vm1', live_opts(),
                             clock=w.clock, sleep=w.clock.sleep, on_ready=gate(w, True))
    result = engine.run()
    assert result['state'] == 'migrated' and w.running('vm1') == ['h2'] and 'slot_wait_s' in result['phases']
    assert len(seen) == 1 and not any(c.startswith('migrate') for c in seen[0])
    # a guest split by a failed post-copy: resuming it streams the rest of its memory - it waits for its slot too
    for answer in (False, True):
        w = new_world()
        src = w.hosts['h1'].doms['vm1']
        src.state, src.reason = F.PAUSED, F.POSTCOPY_FAILED
        w.hosts['h2'].doms['vm1'] = F.Dom('vm1', src.uuid, src.xml, state=F.PAUSED, reason=F.POSTCOPY_FAILED)
        seen[:] = []
        engine = M.LiveMigration(F.FakeClient(w, F.uri('h1')), F.FakeClient(w, F.uri('h2')), 'vm1', live_opts(),
                                 clock=w.clock, sleep=w.clock.sleep, on_ready=gate(w, answer))
        try:
            engine.run()
        except LibvirtClientError as e:
            assert not answer and 'nothing was changed' in e.msg, e.msg
        calls = [method(site) for _h, site, _n in w.log]
        assert len(seen) == 1 and (calls == seen[0]) is not answer, calls
        assert answer or w.where('vm1') == {'h1': F.PAUSED, 'h2': F.PAUSED}


def test_a_drain_with_one_slot_prepares_the_next_move_while_one_migrates(tmp_path):
    """max_outbound 1: vm2 starts (its checks and plan) while vm1 migrates, and gets the slot only once vm1 runs on
    its destination (stopped first, it is not started: test__evacuation)."""
    w = new_world(('vm1', 'vm2'))
    result, err, _ev = run_drain(w, tmp_path, max_outbound=1)
    assert err is None and result['state'] == 'evacuated', err
    first, second = sorted(result['results'], key=lambda r: r['slot_s'])
    assert second['start_s'] < first['moved_s'] <= second['slot_s'], result['results']
    assert sorted(w.running('vm1') + w.running('vm2')) == ['h2', 'h3']


def test_a_drain_stopped_at_its_deadline_starts_no_move_prepared_ahead(tmp_path):
    """max_outbound 1: the drain's timeout_s passes while the first move migrates and the second waits ahead of the
    slot, checked and planned - the first is never abandoned, the second is not started: listed not started, not
    among the results, its journal entry ended 'not_started' (no return journey brings it back), and it runs on the
    source alone."""
    w = new_world(('vm1', 'vm2'))
    result, err, ev = run_drain(w, tmp_path, max_outbound=1, timeout_s=2)
    assert err is None and result['state'] == 'incomplete', (err, result.get('state'))
    [moved] = result['results']
    assert moved['state'] == 'migrated' and not moved['error']
    other = ({'vm1', 'vm2'} - {moved['name']}).pop()
    assert [(x['name'], x['action'], x['reason']) for x in result['left']] == [
        (other, 'not_started', 'the drain stopped: timeout_s reached')], result['left']
    journal = FILES.read_journal(ev.p['journal'])
    assert [e['result']['state'] for e in journal if e.get('event') == 'end' and e['vm'] == other] == ['not_started']
    assert [m['name'] for m in FILES.return_moves(journal, 'h1')] == [moved['name']]
    assert w.running(other) == ['h1'] and w.running(moved['name']) != ['h1'] and not w.violations


def test_a_return_counts_the_moves_still_arriving_home(tmp_path, monkeypatch):
    """A return journey has no plan: each move's own memory check is the only one. Home (h1) has room for one of
    the two VMs: the second, checked while the first is still arriving (max_inbound 1: it is prepared ahead of its
    slot), counts the first and is refused with nothing changed - it still runs where it went; once there is room, a
    second return brings it home. (Without the count both came home into room for one.)"""
    monkeypatch.setattr(PLAN, 'check_domains', checks_pass('shared'))
    w = new_world(('vm1', 'vm2'))
    result, err, ev = run_drain(w, tmp_path)
    assert err is None and result['state'] == 'evacuated', err
    starts = [e for e in FILES.read_journal(ev.p['journal']) if e.get('event') == 'start']
    assert sorted(e['memory_mib'] for e in starts) == [512, 512], starts
    away = dict((n, w.running(n)) for n in ('vm1', 'vm2'))
    # (the moves' own checks, as they are: the return's are the only ones)
    monkeypatch.setattr(M, 'check_domains', CHECK_RUN.check_domains)
    real = F.FakeConn.getFreeMemory
    room = {'mib': 800}
    monkeypatch.setattr(F.FakeConn, 'getFreeMemory', lambda self: room['mib'] * F.MIB if self.h == 'h1' else real(self))
    result, err, ev = run_drain(w, tmp_path, rollback=True)
    home = [n for n in away if w.running(n) == ['h1']]
    assert len(home) == 1, (away, [(n, w.running(n)) for n in away], result.get('results'))
    [other] = [n for n in away if n not in home]
    assert w.running(other) == away[other] and not w.violations
    [failed] = [r for r in result['results'] if r['name'] == other]
    assert 'not enough memory' in failed['error'] and '512 MiB already planned' in failed['error'], failed
    assert [m['name'] for m in FILES.return_moves(FILES.read_journal(ev.p['journal']), 'h1')] == [other]
    room['mib'] = 8192
    result, err, ev = run_drain(w, tmp_path, rollback=True)
    assert err is None and result['state'] == 'returned_home', (err, result.get('state'))
    assert all(w.running(n) == ['h1'] for n in away) and not w.violations


class _Standing:
    """A source guest whose running reason is REASON (None: its state cannot be read)."""

    def __init__(self, reason):
        self.reason = reason

    def state(self):
        if self.reason is None:
            raise LibvirtClientError('cannot read the state of vm1: connection reset')
        return [1, self.reason]


@pytest.mark.parametrize('reason, paused, may_run', [
    (1, False, False),      # booted, never stopped by this move: a copy there cannot run
    (6, False, True),       # 'migration canceled': the source had stopped it for the switch-over
    (1, True, True),        # paused by this move to finish (resumed since): the switch-over may have happened
    (None, False, True),    # the mark cannot be read: whether it had stopped cannot be told
])
def test_an_unreadable_destination_is_said_to_maybe_run_the_guest_unless_the_source_never_stopped_it(
        reason, paused, may_run):
    """A rollback whose destination cannot be read: only a guest the source never stopped in this move is surely not
    running there (rolled_back); every other case may run there too (rolled_back_unconfirmed, check that host)."""
    said, maybe = LC.CommitRollback(None)._unchecked_destination(  # pylint: disable=protected-access
        _Standing(reason), {'postcopy': False, 'paused': paused}, 'no route to host')
    assert maybe is may_run, said
    assert ('before anything else' in said) is may_run, said


def test_shared_storage_proven_by_several_moves_at_once(monkeypatch):
    """A drain checks moves at the same time (one migrating, others checked ahead of their slots): their proofs of
    one shared directory without a pool of its own must not share a transient pool that one of them destroys under
    the other (libvirt allows one pool per directory) - each proof says shared."""
    from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver import storage_proof as SP
    w = new_world()
    for h in w.hosts.values():
        h.pools.clear()
    slow = F.FakePool.storageVolLookupByName

    def looked_up_slowly(self, name):
        time.sleep(0.02)         # (the window in which another proof would destroy the pool)
        return slow(self, name)
    monkeypatch.setattr(F.FakePool, 'storageVolLookupByName', looked_up_slowly)
    verdicts = []

    def prove():
        verdicts.append(SP.probe_directory(F.FakeClient(w, F.uri('h1')), F.FakeClient(w, F.uri('h2')), IMAGES)[0])
    threads = [threading.Thread(target=prove) for _i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert verdicts == ['shared'] * 6, verdicts
    assert not any(p.startswith(SP.MARKER_PREFIX) for h in w.hosts.values() for p in h.pools)


def test_the_downtime_starts_at_10_ms_and_a_link_above_the_cap_counts_for_the_switchover():
    """The allowed downtime ramps up from 10 ms; with a cap below the link's known speed, libvirt is told the
    link's speed for the switch-over (it sends the last pass uncapped); without a known link, nothing."""
    w = new_world()
    result, err, _engine = run_live(w, bandwidth_mibps=32, expected_bandwidth_mibps=1000)
    assert err is None and result['state'] == 'migrated'
    assert w.downtimes[0] == 10 and w.downtimes == sorted(w.downtimes)
    assert w.migrate_params['bandwidth.avail.switchover'] == 1000 and w.migrate_params['bandwidth'] == 32
    assert result['plan']['switchover_bandwidth_mibps'] == 1000
    w = new_world()
    result, err, _engine = run_live(w, bandwidth_mibps=32, expected_bandwidth_mibps=None)
    assert err is None and 'bandwidth.avail.switchover' not in w.migrate_params
    assert result['plan']['switchover_bandwidth_mibps'] is None


def test_a_guest_paused_to_finish_is_allowed_the_downtime_to_finish_at_once():
    """Once the engine pauses the guest (pre-copy cannot converge), QEMU may send what is left in one switch-over
    (uncapped) instead of more passes at the cap while the guest waits."""
    w = new_world()
    w.polls_to_finish = None        # never converges: the engine must pause it to finish
    w.job_step_s = 20.0
    result, err, _engine = run_live(w, final_action='pause', completion='precopy')
    assert err is None and result['paused'] is True and result['state'] == 'migrated'
    assert w.downtimes[-1] == S.PAUSED_DOWNTIME_MS and max(w.downtimes[:-1]) <= 300


# -- the host's own disk: a progress file or the journal that cannot be written ------------------------

_REAL_RENAME, _REAL_APPEND = os.rename, FILES.journal_append


class DiskFull:
    """os.rename of the status files and the journal's appends fail with ENOSPC at their NTH write (None:
    count them only)."""

    def __init__(self, monkeypatch, tmp_path, nth=None):
        import errno
        self.n, self.nth, self.writes = 0, nth, []
        real_rename, real_append = _REAL_RENAME, _REAL_APPEND

        def fail(what, path):
            self.n += 1
            self.writes.append(what)
            if self.n == self.nth:
                raise OSError(errno.ENOSPC, 'No space left on device', path)

        def rename(src, dst, *args, **kwargs):
            if str(dst).startswith(str(tmp_path)):
                fail('status', dst)
            return real_rename(src, dst, *args, **kwargs)

        def append(path, entry):
            if path:
                fail('journal %s' % entry.get('event'), path)
            return real_append(path, entry)
        monkeypatch.setattr(os, 'rename', rename)
        monkeypatch.setattr(FILES, 'journal_append', append)


def test_a_full_disk_never_abandons_a_move(tmp_path, monkeypatch):
    """Every write of a progress file or the journal, failed in turn: the move goes on to its end (never a
    raw OSError, never a move thread left behind), the VM is where the result says, and the result says what
    could not be written."""
    counter = {'n': 0}

    def fresh():
        counter['n'] += 1
        d = tmp_path / str(counter['n'])
        d.mkdir()
        return d
    # the live engine, with its status file
    d = fresh()
    clean = DiskFull(monkeypatch, tmp_path)
    result, err, engine = run_live(new_world(), status_file=str(d / 'status'))
    assert err is None and clean.n >= 3, (err, clean.writes)
    assert 'journal plan' not in clean.writes   # (the live engine alone: its status file)
    live_n = clean.n
    for nth in range(1, live_n + 1):
        d = fresh()
        w = new_world()
        DiskFull(monkeypatch, tmp_path, nth)
        result, err, engine = run_live(w, status_file=str(d / 'status'))
        label = 'live, status write %d of %d failed' % (nth, live_n)
        live_invariants(w, result, err, engine, True, label)
        assert err is None and result['state'] == 'migrated' and w.running('vm1') == ['h2'], (label, err)
        assert 'No space left on device' in result['status_file_error'], label
    # the drain: its journal and status files
    monkeypatch.setattr(PLAN, 'check_domains', checks_pass('shared'))
    d = fresh()
    clean = DiskFull(monkeypatch, tmp_path)
    result, err, ev = run_drain(new_world(('vm1', 'vm2')), d)
    assert err is None and result['state'] == 'evacuated', err
    runs = 0
    for nth in range(1, clean.n + 1):
        d = fresh()
        w = new_world(('vm1', 'vm2'))
        disk = DiskFull(monkeypatch, tmp_path, nth)
        result, err, ev = run_drain(w, d)
        if len(disk.writes) < nth:
            continue        # (the progress file is written as often as the drain looks: this run wrote less)
        what = disk.writes[nth - 1]
        label = 'drain, write %d of %d (%s) failed' % (nth, clean.n, what)
        runs += 1
        if what == 'journal plan':
            # before anything moves: refused, nothing changed
            assert err is not None and w.running('vm1') == ['h1'] and w.running('vm2') == ['h1'], label
            continue
        assert err is None, (label, err)
        assert sorted(result['moved']) == ['vm1', 'vm2'] and result['state'] == 'evacuated', (label, result)
        assert all(len(w.running(n)) == 1 and w.running(n) != ['h1'] for n in ('vm1', 'vm2')), label
        assert not [t for t in __import__('threading').enumerate() if t.name.startswith('migrate-')], label
        if what.startswith('journal'):
            assert result['journal_errors'] and 'No space left on device' in result['journal_errors'][0], label
        else:
            assert any('No space left on device' in x for x in result.get('warnings', [])), (label, result.get('warnings'))
    assert runs >= 10, runs
    print('\nfault injection: a full disk at each of %d writes of the live engine and %d of the drain'
          % (live_n, runs))


def test_the_drain_never_exits_while_a_move_runs(tmp_path, monkeypatch):
    """A drain whose own limit passes during a cold copy (a 40 GiB disk: the copy's own deadline is 1 s per
    10 MiB, past the drain's 30-minute assumption) waits for the move's end: it never returns with a
    move thread running (which dies with the module, leaving the guest shut off half-way)."""
    def cold_checks(src, dst, names, **_kw):  # pylint: disable=unused-argument
        dst.host_uuid()
        return {'destination': {'hostname': 'dest', 'uuid': 'u', 'memory_free': 8192 * F.MIB,
                                'memory_total': 16384 * F.MIB},
                'domains': [{'name': n, 'checks': [{'check': 'cpu', 'status': 'fail', 'blocks': 'live',
                                                    'reason': 'the CPU differs'}],
                             'memory_mib': 512, 'active': True, 'recommended': 'cold',
                             'storage': {'vda': {'verdict': 'local'}}} for n in names]}
    monkeypatch.setattr(PLAN, 'check_domains', cold_checks)

    class Roomy:
        f_bavail, f_frsize = 1 << 40, 4096
    monkeypatch.setattr(os, 'statvfs', lambda path: Roomy())
    w = local_world()
    w.allocation[DISK] = 40 * 1024 * F.MIB   # its copy may take 4,096 s
    w.stream_step_s = 500.0            # each 4 KiB of the copy takes 500 s of fake time: about 3,000 s
    result, err, ev = run_drain(w, tmp_path, policy='cold', timeout_s=10, names=('vm1',))
    assert err is None, err.msg
    assert E.wait_limit_s(ev.p) < 6000, E.wait_limit_s(ev.p)
    journal = FILES.read_journal(ev.p['journal'])
    assert [e['event'] for e in journal if e.get('vm') == 'vm1'] == ['start', 'end'], journal
    assert result.get('overran') == ['vm1'], (result['state'], result['results'][0]['error'], result['left'])
    assert result['results'][0]['state'] == 'migrated', result['results']
    assert w.running('vm1') == [result['results'][0]['destination']] and result['state'] == 'evacuated'
    assert not [t for t in __import__('threading').enumerate() if t.name.startswith('Thread') and t.is_alive()
                and getattr(t, '_target', None) == ev._move]  # pylint: disable=protected-access


def test_an_approved_shared_disk_is_proven_again_before_a_move(tmp_path, monkeypatch):
    """A plan approved while the images directory was shared; since then the share is gone and a stale file
    sits at the same path on the destination. The move proves the storage again and refuses: the guest never
    runs from the stale file (libvirt, told the disk is shared, would open whatever is at that path)."""
    monkeypatch.setattr(PLAN, 'check_domains', checks_pass('shared'))
    approved = PLAN.plan_evacuation(F.FakeCache(new_world(('vm1', 'vm2'))), {
        'uri': F.uri('h1'), 'destinations': [{'name': 'h2', 'uri': F.uri('h2')}, {'name': 'h3', 'uri': F.uri('h3')}],
        'domains': None, 'headroom_mib': 0, 'anti_affinity': {}, 'pinned': {}, 'rate_mibps': 1000, 'max_outbound': 2,
        'max_inbound': 1, 'max_total': 4})
    assert all(m['storage'] == {'vda': 'shared'} for m in approved['moves'])
    w = local_world(('vm1', 'vm2'))
    for h in ('h2', 'h3'):
        for name in ('vm1', 'vm2'):
            w.hosts[h].files['%s/%s.qcow2' % (IMAGES, name)] = b'stale' * 100
    result, err, ev = run_drain(w, tmp_path, plan=approved)
    assert not w.violations, w.violations
    assert err is None and result['state'] == 'incomplete' and sorted(result['still_running_on_source']) == \
        ['vm1', 'vm2'], result
    assert all('not proven shared now' in r['error'] and r['state'] != 'migrated' for r in result['results']), \
        result['results']
    # the same through the live engine on its own, and the cold engine
    w = local_world()
    w.hosts['h2'].files[DISK] = b'stale' * 100
    result, err, _e = run_live(w, approved={'storage': {'vda': 'shared'}})
    assert err is not None and 'not proven shared now' in err.msg and w.running('vm1') == ['h1'] and not w.violations
    w = local_world()
    w.hosts['h2'].files[DISK] = b'stale' * 100
    result, err, _e = run_cold(w, tmp_path, approved={'storage': {'vda': 'shared'}})
    assert err is not None and 'not proven shared now' in err.msg and w.running('vm1') == ['h1'] and not w.violations


def test_a_disk_already_on_the_destination_is_never_overwritten(tmp_path):
    """A cold move whose destination already has a file at the disk's path refuses before it changes
    anything: the file there is kept as it was, the guest runs on the source."""
    w = local_world()
    w.hosts['h2'].files[DISK] = b'somebody else' * 100
    result, err, _e = run_cold(w, tmp_path)
    assert err is not None and 'refusing to overwrite it' in err.msg, err and err.msg
    assert w.hosts['h2'].files[DISK] == b'somebody else' * 100 and w.running('vm1') == ['h1'] and not w.violations
    assert not [e for e in w.events if e[0] in ('shutdown', 'destroy', 'create_volume', 'define')], w.events


def test_a_guest_its_owner_paused_is_not_resumed_by_a_recovered_move(tmp_path):
    """The migration finished in libvirt but its reply was lost (the call failed): the move is committed from
    what both hosts say. A guest that ran is resumed on the destination if the job left it paused; one that
    its owner had paused before the move stays paused there."""
    for start, final in ((F.RUNNING, F.RUNNING), (F.PAUSED, F.PAUSED)):
        w = new_world()
        w.hosts['h1'].doms['vm1'].state = start
        run_live(w)
        site = site_of(w, 'migrateToURI3')
        w = new_world()
        w.hosts['h1'].doms['vm1'].state = start
        w.fault = ('h1', site, 1, 'lost')
        result, err, _e = run_live(w)
        assert result['state'] == 'migrated' and 'recovered_from' in result, (start, result.get('state'), err)
        assert w.where('vm1') in ({'h2': final}, {'h1': F.SHUTOFF, 'h2': final}), (start, w.where('vm1'))

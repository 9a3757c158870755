"""Stop in place and start again (power) on the fake libvirt: a real shutdown is asked for and waited for, nothing
stops while a refusal stands, a guest that will not stop leaves the host as it was unless forced, and the start
goes in order, waits for each VM, and names the one that did not come back without keeping the others down."""
import pytest

import fakevirt as F
from ansible_collections.vmmigration.libvirt.plugins.module_utils.engines import power as P
from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver.wait import FakeClock


def world(names=('db', 'app'), state=F.RUNNING, persistent=True):
    w = F.World(FakeClock(1000.0))
    for i, n in enumerate(names):
        uuid = '11111111-2222-3333-4444-5555555555%02d' % i
        w.hosts['h1'].doms[n] = F.Dom(n, uuid, F.domain_xml(n, uuid, '/var/lib/libvirt/images/%s.qcow2' % n),
                                      state=state, persistent=persistent)
    client = F.FakeCache(w).get(F.uri('h1'))
    return w, client


def run_stop(w, client, names, **kw):
    return P.stop(client, names, clock=w.clock, now=w.clock, sleep=w.clock.sleep, **kw)


def run_start(w, client, names, **kw):
    return P.start(client, names, clock=w.clock, now=w.clock, sleep=w.clock.sleep, **kw)


def states(w):
    return dict((n, d.state) for n, d in w.hosts['h1'].doms.items())


def test_stop_shuts_every_guest_down_cleanly_and_says_when():
    w, client = world()
    out = run_stop(w, client, ['db', 'app'])
    assert [(r['name'], r['state'], r['how']) for r in out] == [('db', 'stopped', 'clean'), ('app', 'stopped', 'clean')]
    assert all(r['stopped_at'] >= 1000.0 for r in out)
    assert states(w) == {'db': F.SHUTOFF, 'app': F.SHUTOFF}
    # (a shutdown, never a power-off)
    assert [e[0] for e in w.events] == ['shutdown', 'shutdown']


def test_stop_again_changes_nothing():
    w, client = world(state=F.SHUTOFF)
    out = run_stop(w, client, ['db', 'app'])
    assert [r['state'] for r in out] == ['already_stopped', 'already_stopped'] and w.events == []


def test_check_mode_says_what_would_stop_and_stops_nothing():
    w, client = world()
    out = run_stop(w, client, ['db'], check_mode=True)
    assert out == [{'name': 'db', 'state': 'would_stop'}] and states(w)['db'] == F.RUNNING


@pytest.mark.parametrize('names, persistent, others, why', [
    (['db', 'nosuch'], True, False, 'nosuch is not defined on'),
    (['db', 'app'], False, False, 'db is transient on qemu+tls://h1/system: once stopped, libvirt forgets it'),
    (['db', 'db'], True, False, 'db is named twice'),
    (['db'], True, True, 'app still runs on qemu+tls://h1/system and is not to be stopped in place'),
])
def test_a_refusal_stops_nothing(names, persistent, others, why):
    w, client = world(persistent=persistent)
    with pytest.raises(P.PowerError) as e:
        run_stop(w, client, names, refuse_others=others)
    assert why in e.value.msg and e.value.msg.startswith('nothing was stopped: ')
    assert set(r['state'] for r in e.value.result['results']) == {'not_stopped'}
    assert states(w) == {'db': F.RUNNING, 'app': F.RUNNING} and w.events == []


def test_a_guest_that_will_not_stop_leaves_the_host_as_it_was():
    w, client = world()
    w.ignore_shutdown_of.add('app')
    with pytest.raises(P.PowerError) as e:
        run_stop(w, client, ['db', 'app'], shutdown_timeout_s=30)
    assert e.value.msg.startswith('app did not shut down within 30 s (force=true powers a guest off after that)')
    assert 'nothing stays stopped: db started again' in e.value.msg
    assert states(w) == {'db': F.RUNNING, 'app': F.RUNNING}
    # (db was stopped and started again: not recorded as a VM stopped in place)
    assert [r['state'] for r in e.value.result['results']] == ['started_again', 'did_not_stop']
    # (pressed again every 5 s: an early press can be lost)
    presses = [x for x in w.log if x[1].startswith('shutdown@')]
    assert len(presses) >= 6
    assert 'destroy' not in [e[0] for e in w.events] and e.value.result['stuck'] == ['app']


def test_force_powers_off_only_the_guest_that_would_not_stop():
    w, client = world()
    w.ignore_shutdown_of.add('app')
    out = run_stop(w, client, ['db', 'app'], shutdown_timeout_s=30, force=True)
    assert [(r['name'], r['how']) for r in out] == [('db', 'clean'), ('app', 'forced')]
    assert [(e[0], e[2]) for e in w.events] == [('shutdown', 'db'), ('destroy', 'app')]


def test_start_goes_in_order_and_waits_for_each():
    w, client = world(state=F.SHUTOFF)
    out = run_start(w, client, ['app', 'db'])
    assert [(e[0], e[2]) for e in w.events] == [('start', 'app'), ('start', 'db')]
    assert [r['state'] for r in out] == ['started', 'started'] and all(r['running_at'] >= r['started_at'] for r in out)


def test_start_again_changes_nothing_and_check_mode_starts_nothing():
    w, client = world()
    assert [r['state'] for r in run_start(w, client, ['db', 'app'])] == ['already_running'] * 2
    w, client = world(state=F.SHUTOFF)
    assert [r['state'] for r in run_start(w, client, ['db'], check_mode=True)] == ['would_start']
    assert w.events == []


def test_a_vm_that_does_not_come_back_is_named_and_does_not_keep_the_others_down():
    w, client = world(state=F.SHUTOFF)
    w.faults = [('h1', site, 1, 'error') for site in sites_of_create(world(state=F.SHUTOFF)[0])]
    with pytest.raises(P.PowerError) as e:
        run_start(w, client, ['db', 'app'])
    assert e.value.msg.startswith('did not come back: db (') and 'app' not in e.value.msg
    assert states(w) == {'db': F.SHUTOFF, 'app': F.RUNNING}
    assert [r['state'] for r in e.value.result['results']] == ['failed', 'started'] and e.value.result['changed']


def sites_of_create(w):
    """The call site of the start (learned on a world of its own)."""
    client = F.FakeCache(w).get(F.uri('h1'))
    run_start(w, client, ['db'])
    return sorted(set(site for _h, site, _n in w.log if site.startswith('create@')))


def test_addresses_that_stay_silent_fail_the_vm_by_name():
    w, client = world(state=F.SHUTOFF)
    probed = []

    def probe(addresses, timeout_s):
        probed.append((list(addresses), timeout_s))
        return dict((a, None if a == '198.18.0.9' else 1.5) for a in addresses)
    with pytest.raises(P.PowerError) as e:
        run_start(w, client, ['db', 'app'], addresses_by_vm={'db': ['198.18.0.8'], 'app': ['198.18.0.9']},
                  probe=probe, start_timeout_s=60)
    assert 'app (runs, but 198.18.0.9 did not answer within 60 s of its start)' in e.value.msg
    assert [r['state'] for r in e.value.result['results']] == ['started', 'failed']
    assert e.value.result['results'][0]['answered_at'] >= e.value.result['results'][0]['running_at']
    assert [p[0] for p in probed] == [['198.18.0.8'], ['198.18.0.9']]


def test_a_vm_found_running_is_back_once_its_addresses_answer():
    """(an earlier attempt started it, and its addresses did not answer then: a resumed run checks it again)"""
    w, client = world()
    out = run_start(w, client, ['db'], addresses_by_vm={'db': ['198.18.0.8']}, probe=lambda a, t: {'198.18.0.8': 0.1})
    assert out[0]['state'] == 'already_running' and out[0]['answered_at'] >= out[0]['running_at'] and w.events == []
    with pytest.raises(P.PowerError, match='db .runs, but 198.18.0.8 did not answer'):
        run_start(w, client, ['db'], addresses_by_vm={'db': ['198.18.0.8']}, probe=lambda a, t: {'198.18.0.8': None})


def test_never_two_a_vm_running_on_a_peer_is_not_started_here():
    """(started on another host of the group during the maintenance - by hand, by another tool - from shared storage)"""
    w, client = world(state=F.SHUTOFF)
    uuid = w.hosts['h1'].doms['db'].uuid
    w.hosts['h2'].doms['db'] = F.Dom('db', uuid, w.hosts['h1'].doms['db'].xml, state=F.RUNNING)
    cache = F.FakeCache(w)
    with pytest.raises(P.PowerError) as e:
        run_start(w, client, ['db', 'app'], peers=[cache.get(F.uri('h2')), cache.get(F.uri('h3'))])
    assert 'db (not started here: it runs on qemu+tls://h2/system (same UUID) - never two copies' in e.value.msg
    assert states(w) == {'db': F.SHUTOFF, 'app': F.RUNNING} and w.hosts['h2'].doms['db'].state == F.RUNNING


def test_a_peer_that_cannot_be_asked_is_said_and_does_not_keep_the_vm_down():
    w, client = world(state=F.SHUTOFF)
    w.down_until['h3'] = float('inf')
    out = run_start(w, client, ['db'], peers=[F.FakeCache(w).get(F.uri('h3'))])
    assert out[0]['state'] == 'started' and 'qemu+tls://h3/system: ' in out[0]['unasked'][0]


def test_a_vm_gone_from_the_host_fails_alone_the_others_start():
    w, client = world(state=F.SHUTOFF)
    with pytest.raises(P.PowerError) as e:
        run_start(w, client, ['nosuch', 'db', 'app'])
    assert e.value.msg.startswith('did not come back: nosuch (nosuch is not defined on')
    assert states(w) == {'db': F.RUNNING, 'app': F.RUNNING}


def test_addresses_that_cannot_be_probed_fail_that_vm_not_the_start():
    w, client = world(state=F.SHUTOFF)

    def probe(addresses, timeout_s):
        raise P.PowerError('ICMP probes need root (CAP_NET_RAW): run the task with become: true')
    with pytest.raises(P.PowerError) as e:
        run_start(w, client, ['db', 'app'], addresses_by_vm={'db': ['198.18.0.8']}, probe=probe)
    assert 'db (runs, but its addresses could not be probed: ICMP probes need root' in e.value.msg
    assert states(w) == {'db': F.RUNNING, 'app': F.RUNNING}


def test_a_stop_cut_short_says_what_did_stop():
    w, client = world()
    w.ignore_shutdown_of.add('app')
    w.faults = [('h1', site, 1, 'drop') for site in destroy_sites()]
    with pytest.raises(P.PowerError) as e:
        run_stop(w, client, ['db', 'app'], shutdown_timeout_s=10, force=True)
    assert '- stopped by then: db (recorded as stopped)' in e.value.msg
    assert [(r['name'], r['state']) for r in e.value.result['results']] == [('db', 'stopped'), ('app', 'would_stop')]


def destroy_sites():
    w, client = world()
    w.ignore_shutdown_of.add('app')
    run_stop(w, client, ['app'], shutdown_timeout_s=10, force=True)
    return sorted(set(site for _h, site, _n in w.log if site.startswith('destroy@')))


def test_autostart_is_off_while_stopped_in_place_and_on_again_once_back():
    """(libvirt would start a VM set to start with its host as the host comes back - before its gate, out of order)"""
    w, client = world()
    w.hosts['h1'].doms['db'].autostart = True
    out = run_stop(w, client, ['db', 'app'])
    assert [r.get('autostart') for r in out] == [True, None]
    assert not w.hosts['h1'].doms['db'].autostart
    out = run_start(w, client, ['db', 'app'], restore_autostart=['db'])
    assert [r.get('autostart') for r in out] == [True, None] and w.hosts['h1'].doms['db'].autostart
    assert not w.hosts['h1'].doms['app'].autostart

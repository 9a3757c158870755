"""The cluster plan on the controller (cluster, cluster_read): one fact read per host, the group's distinct
questions answered once per host, and every drain of a run planned from them - the same plan the evacuation_plan
module makes by connecting from the source to each destination; the run simulated in order, so a step's drains
share the destinations' memory, the wave moves each VM once, and bad reads are refused naming the host."""
import os

import pytest
from ansible.errors import AnsibleFilterError

import fakevirt as F
from ansible_collections.vmmigration.libvirt.plugins.filter import cluster as FILTER
from ansible_collections.vmmigration.libvirt.plugins.module_utils.decide import cluster as CL
from ansible_collections.vmmigration.libvirt.plugins.module_utils.orchestration import batch as BATCH
from ansible_collections.vmmigration.libvirt.plugins.module_utils.orchestration import cluster_read as CR
from ansible_collections.vmmigration.libvirt.plugins.module_utils.engines import drain as E
from ansible_collections.vmmigration.libvirt.plugins.module_utils.engines import drain_plan as PLAN
from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver.storage_proof import MARKER_PREFIX
from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver.wait import FakeClock

SHARED = '/srv/nfs/images'
LOCAL = '/var/lib/libvirt/images'


# -- against the fake libvirt: the reads, the answers, the markers, and the same plan as evacuation_plan's ----

def fake_world():
    """h1 runs web (disk on the share every host mounts) and db (disk in a local directory of the same path on
    every host: not shared); h2 runs app."""
    w = F.World(FakeClock(1000.0))
    w.shared_dirs.add(SHARED)
    for h in w.hosts.values():
        h.pools['nfs'] = SHARED
        h.pools['local'] = LOCAL
    for host, name, d, i in (('h1', 'web', SHARED, 1), ('h1', 'db', LOCAL, 2), ('h2', 'app', SHARED, 3)):
        uuid = '11111111-2222-3333-4444-5555555555%02d' % i
        disk = '%s/%s.qcow2' % (d, name)
        w.hosts[host].doms[name] = F.Dom(name, uuid, F.domain_xml(name, uuid, disk, memory_mib=1024))
        w.hosts[host].files[disk] = w.truth[disk] = os.urandom(512)
    return w


def read_all(w):
    cache = F.FakeCache(w)
    reads = dict((h, CR.read(cache.get(F.uri(h)))) for h in w.hosts)
    qs = CL.questions(reads)
    answers = dict((h, CR.answer(cache.get(F.uri(h)), qs)) for h in w.hosts)
    return cache, reads, qs, answers


def markers_left(w):
    """The markers in the world's storage (one on a share is one file, whatever the hosts that see it)."""
    return sorted(k for k in w.store if os.path.basename(k[1]).startswith(MARKER_PREFIX))


PLAN_P = {'headroom_mib': 512, 'rate_mibps': 100, 'overhead_s': 2.0, 'fixed_s': 1.0, 'move_times': {},
          'max_outbound': 2, 'max_inbound': 2, 'max_total': 4, 'allow_cold': False, 'anti_affinity': {},
          'pinned': {}, 'copy_storage': 'auto'}


def test_read_answer_clean_on_the_fake_libvirt_asks_each_question_once_and_leaves_no_marker():
    w = fake_world()
    cache, reads, qs, answers = read_all(w)
    assert [vm['name'] for vm in reads['h1']['domains']] == ['db', 'web']
    assert reads['h1']['version'] == CL.READ_VERSION and reads['h1']['host']['uuid'] == w.hosts['h1'].uuid
    assert dict((vm['name'], vm['disks'][0]['dir']) for vm in reads['h1']['domains']) == {'db': LOCAL, 'web': SHARED}
    # one marker per directory per host, each directory asked once
    assert sorted(reads['h1']['markers']) == [SHARED, LOCAL] and qs['dirs'] == [SHARED, LOCAL]
    # (a host writes markers where its VMs' disks are: h3 runs none)
    assert sorted(reads['h2']['markers']) == [SHARED] and reads['h3']['markers'] == {}
    # the share shows every marker written there on every host; the local directory only the host's own
    assert sorted(answers['h3']['dirs'][SHARED]['seen']) == sorted(reads[h]['markers'][SHARED]['name'] for h in ('h1', 'h2'))
    assert list(answers['h1']['dirs'][LOCAL]['seen']) == [reads['h1']['markers'][LOCAL]['name']]
    assert answers['h3']['dirs'][LOCAL]['seen'] == {}
    assert len(markers_left(w)) == 3
    assert [len(CR.clean(cache.get(F.uri(h)), reads[h]['markers'])['removed']) for h in ('h1', 'h2', 'h3')] == [2, 1, 0]
    assert markers_left(w) == []
    # one that cannot be removed any more is said, not ignored
    out = CR.clean(cache.get(F.uri('h1')), reads['h1']['markers'])
    assert out['removed'] == [] and len(out['kept']) == 2 and 'not found' in out['kept'][0], out


def test_the_controller_plans_the_drain_evacuation_plan_plans_from_the_source():
    w = fake_world()
    cache, reads, _qs, answers = read_all(w)
    ours = CL.plan_run(reads, answers, [['h1']], PLAN_P, destinations=['h2', 'h3'])['plans']['h1']
    for h in w.hosts:
        CR.clean(cache.get(F.uri(h)), reads[h]['markers'])
    dests = [{'name': h, 'uri': F.uri(h)} for h in ('h2', 'h3')]
    theirs = PLAN.plan_evacuation(F.FakeCache(w), dict(PLAN_P, uri=F.uri('h1'), domains=None, exclude_domains=[],
                                                       destinations=dests))

    def moves(plan):
        return [(m['name'], m['destination'], m['method'], m['copies_disks'], m['storage'], m['memory_mib'],
                 m['start_s'], m['end_s']) for m in plan['moves']]
    assert moves(ours) == moves(theirs)
    assert dict((m[0], m[2]) for m in moves(ours)) == {'web': 'live', 'db': 'live_copy_storage'}
    for key in ('version', 'left', 'predicted_total_s', 'refused', 'cold_only', 'free_after_mib', 'headroom_mib'):
        assert ours[key] == theirs[key], key
    assert ours['source']['uuid'] == theirs['source']['uuid'] == w.hosts['h1'].uuid
    assert markers_left(w) == []


def test_a_drain_that_prefers_destinations_fills_them_first_and_the_others_take_only_the_rest():
    """The wave at the drain (evacuation_plan's prefer_destinations, the hosts a rolling run maintained already)."""
    w = fake_world()
    for i in range(3):
        uuid = '11111111-2222-3333-4444-5555555556%02d' % i
        name = 'extra%d' % i
        w.hosts['h1'].doms[name] = F.Dom(name, uuid, F.domain_xml(name, uuid, SHARED + '/x.qcow2', memory_mib=2048))
    dests = [{'name': h, 'uri': F.uri(h)} for h in ('h2', 'h3')]
    p = dict(PLAN_P, uri=F.uri('h1'), domains=None, exclude_domains=[], destinations=dests)
    spread = PLAN.plan_evacuation(F.FakeCache(w), p)
    assert set(m['destination'] for m in spread['moves']) == {'h2', 'h3'}
    # (8 GiB free on every fake host, 512 MiB kept free: h3 takes 7.5 GiB - three 2 GiB VMs and one of 1 GiB)
    wave = PLAN.plan_evacuation(F.FakeCache(w), dict(p, prefer_destinations=['h3', 'not-a-destination']))
    where = dict((m['name'], m['destination']) for m in wave['moves'])
    assert sorted(where.values()).count('h3') == 4 and list(where.values()).count('h2') == 1, where
    assert markers_left(w) == []


def test_copy_storage_none_leaves_the_vm_on_local_disk_and_says_why():
    w = fake_world()
    _cache, reads, _qs, answers = read_all(w)
    plan = CL.plan_run(reads, answers, [['h1']], dict(PLAN_P, copy_storage='none'))['plans']['h1']
    assert [m['name'] for m in plan['moves']] == ['web']
    assert 'same path, different storage' in plan['left']['db']


# -- pure: simulated reads ---------------------------------------------------------------------------

def vm(name, mib, cpu=None, dirs=(SHARED,), active=True, uuid=None):
    return {'name': name, 'uuid': uuid or 'u-' + name, 'active': active, 'persistent': True, 'memory_kib': mib * 1024,
            'domain_type': 'kvm', 'arch': 'x86_64', 'machine': 'pc-q35-9.2', 'cpu': {'mode': 'custom', 'model': 'X'},
            'cpu_question': cpu, 'interfaces': [{'type': 'bridge', 'bridge': 'br0', 'mac': 'm-' + name}],
            'disks': [{'target': 'vd%s' % chr(97 + i), 'type': 'file', 'cache': 'none', 'source': d + '/' + name,
                       'dir': d} for i, d in enumerate(dirs)],
            'blockers': [], 'tpm': False, 'nvram': None}


def cluster(layout, total_mib=8192, cpu_no=None):
    """LAYOUT {host: [vm]}: reads and answers of a cluster where every host mounts SHARED; CPU_NO {host: [cpu
    question it cannot run]}."""
    reads, answers = {}, {}
    for h, vms in layout.items():
        used = sum(v['memory_kib'] // 1024 for v in vms if v['active'])
        reads[h] = {'version': CL.READ_VERSION, 'domains': vms,
                    'host': {'uuid': 'uuid-' + h, 'uri': 'qemu:///system', 'memory_total': total_mib * 1048576,
                             'memory_free': (total_mib - used) * 1048576, 'domain_types': ['kvm', 'qemu'],
                             'machine_types': {'x86_64': ['pc-q35-9.2']}, 'libvirt_version': '11.3.0',
                             'hypervisor_version': '10.0.2', 'bridges': ['br0'], 'networks': []},
                    'cpu_questions': {'q1': {'xml': '<cpu/>'}, 'q2': {'xml': '<cpu/>'}},
                    'markers': {SHARED: {'name': 'vmm-probe-%s.marker' % h, 'size': 512}}}
    seen = dict((reads[h]['markers'][SHARED]['name'], 512) for h in layout)
    for h in layout:
        answers[h] = {'version': CL.READ_VERSION, 'servers': {}, 'dirs': {SHARED: {'seen': seen}},
                      'cpus': dict((q, 'the host CPU does not provide: avx512' if q in (cpu_no or {}).get(h, ())
                                    else None) for q in ('q1', 'q2'))}
    return reads, answers


def four_hosts():
    return cluster({'h1': [vm('a1', 1024), vm('a2', 1024)], 'h2': [vm('b1', 1024), vm('b2', 1024)],
                    'h3': [vm('c1', 1024), vm('c2', 1024)], 'h4': [vm('d1', 1024), vm('d2', 1024)]}, total_mib=6144)


def test_the_wave_moves_each_vm_once_but_the_first_hosts_where_the_roomiest_host_rule_moves_more():
    reads, answers = four_hosts()
    # (h4, maintained last, has the most room: the roomiest-host rule sends every drain there)
    reads['h4']['host']['memory_total'] += 8192 * 1048576
    reads['h4']['host']['memory_free'] += 8192 * 1048576
    steps = [['h1'], ['h2'], ['h3'], ['h4']]
    spread = CL.plan_run(reads, answers, steps, PLAN_P, return_vms='stay')
    wave = CL.plan_run(reads, answers, steps, PLAN_P, return_vms='stay', wave=True)
    assert spread['moves'] == 14 and max(spread['moves_per_vm'].values()) == 2 and wave['moves'] == 10
    # (the first host's VMs have no maintained host to go to: they move again with the host they went to)
    assert wave['moves_per_vm'] == {'a1': 2, 'a2': 2, 'b1': 1, 'b2': 1, 'c1': 1, 'c2': 1, 'd1': 1, 'd2': 1}
    # the first host's VMs have no maintained host to go to; after that, only maintained hosts receive
    assert set(m['destination'] for m in wave['plans']['h2']['moves']) == {'h1'}
    assert wave['plans']['h3']['moves'] and set(m['destination'] for m in wave['plans']['h3']['moves']) <= {'h1', 'h2'}


def test_return_home_moves_every_vm_out_and_back_and_each_drain_sees_the_memory_as_it_will_be():
    reads, answers = four_hosts()
    out = CL.plan_run(reads, answers, [['h1'], ['h2'], ['h3'], ['h4']], PLAN_P, return_vms='original')
    assert set(out['moves_per_vm'].values()) == {2} and out['moves'] == 16 and out['moved_mib'] == 16 * 1024
    for h in ('h1', 'h2', 'h3', 'h4'):
        assert len(out['plans'][h]['moves']) == 2 and out['plans'][h]['left'] == {}


def test_a_step_of_two_hosts_neither_sends_to_the_other_and_together_they_never_overbook_a_destination():
    # h3 and h4 have room for 2 GiB each beyond the headroom: h1 and h2 out together must split over them
    reads, answers = cluster({'h1': [vm('a1', 1024), vm('a2', 1024)], 'h2': [vm('b1', 1024), vm('b2', 1024)],
                              'h3': [], 'h4': []}, total_mib=2560)
    out = CL.plan_run(reads, answers, [['h1', 'h2']], PLAN_P)
    dests = [m['destination'] for h in ('h1', 'h2') for m in out['plans'][h]['moves']]
    assert sorted(dests) == ['h3', 'h3', 'h4', 'h4']
    # one host more to drain than the room: the second drain of the step leaves it, saying why
    two = [vm('a1', 1024), vm('a2', 1024)]
    three = [vm('b1', 1024), vm('b2', 1024), vm('b3', 1024)]
    reads, answers = cluster({'h1': two, 'h2': three, 'h3': [], 'h4': []}, total_mib=3584)
    out = CL.plan_run(reads, answers, [['h1', 'h2']], PLAN_P)
    placed = [m['destination'] for h in ('h1', 'h2') for m in out['plans'][h]['moves']]
    assert placed.count('h3') <= 3 and placed.count('h4') <= 3 and len(placed) == 5 and set(placed) == {'h3', 'h4'}
    out = CL.plan_run(reads, answers, [['h1', 'h2']], dict(PLAN_P, headroom_mib=1024))
    assert len(out['plans']['h2']['left']) >= 1 and 'not enough memory' in ' '.join(out['plans']['h2']['left'].values())


def test_a_vm_leaving_a_host_that_wrote_no_marker_where_its_disk_is_is_judged_by_the_marker_that_host_sees():
    reads, answers = cluster({'h1': [vm('a', 1024)], 'h2': [], 'h3': []})
    for h in ('h2', 'h3'):
        reads[h]['markers'] = {}
    answers = dict((h, dict(a, dirs={SHARED: {'seen': {'vmm-probe-h1.marker': 512}}})) for h, a in answers.items())
    out = CL.plan_run(reads, answers, [['h1'], ['h3']], PLAN_P, destinations=['h2', 'h3'], return_vms='stay')
    assert [(m['destination'], m['method']) for m in out['plans']['h1']['moves']] == [('h3', 'live')]
    assert [(m['destination'], m['method'], m['storage']) for m in out['plans']['h3']['moves']] == \
        [('h2', 'live', {'vda': 'shared'})]


def test_a_cpu_a_destination_cannot_run_keeps_the_vm_off_it_with_libvirts_reason():
    reads, answers = cluster({'h1': [vm('new', 1024, cpu='q2'), vm('old', 1024, cpu='q1')], 'h2': [], 'h3': []},
                             cpu_no={'h2': ['q2']})
    plan = CL.plan_run(reads, answers, [['h1']], PLAN_P)['plans']['h1']
    assert dict((m['name'], m['destination']) for m in plan['moves'])['new'] == 'h3'
    assert 'avx512' in ' '.join(plan['refused']['new']['h2'])
    # no host can run it: left, every host's reason said
    reads, answers = cluster({'h1': [vm('new', 1024, cpu='q2')], 'h2': [], 'h3': []},
                             cpu_no={'h2': ['q2'], 'h3': ['q2']})
    plan = CL.plan_run(reads, answers, [['h1']], PLAN_P)['plans']['h1']
    assert plan['moves'] == [] and 'h2: ' in plan['left']['new'] and 'h3: ' in plan['left']['new']


def test_a_destination_with_a_domain_of_the_same_name_or_uuid_is_not_chosen():
    reads, answers = cluster({'h1': [vm('web', 1024)], 'h2': [vm('web', 512, active=False, uuid='other')],
                              'h3': [vm('x', 512, uuid='u-web')], 'h4': []})
    plan = CL.plan_run(reads, answers, [['h1']], PLAN_P)['plans']['h1']
    assert [m['destination'] for m in plan['moves']] == ['h4']
    assert 'another domain named web' in plan['refused']['web']['h2'][0]
    assert 'same UUID' in plan['refused']['web']['h3'][0]


def test_a_share_a_destination_does_not_see_means_a_copy_there():
    reads, answers = cluster({'h1': [vm('web', 1024)], 'h2': []})
    answers['h2']['dirs'][SHARED]['seen'] = {}
    plan = CL.plan_run(reads, answers, [['h1']], PLAN_P)['plans']['h1']
    assert plan['moves'][0]['method'] == 'live_copy_storage' and plan['moves'][0]['copies_disks']
    assert plan['moves'][0]['storage'] == {'vda': 'not_shared'}


def test_alike_destinations_are_judged_once_per_vm():
    reads, answers = cluster(dict(('h%d' % i, [vm('v%d' % i, 512)]) for i in range(1, 51)))
    judge = CL.Judge(reads, answers)
    kinds, kind_of = judge.kinds('h1', ['h%d' % i for i in range(2, 51)])
    assert len(kinds) == 1 and len(kind_of) == 49
    info = judge.entry('h1', reads['h1']['domains'][0], kinds, kind_of, set(kind_of), False, {})
    assert len(judge.memo) == 1 and len(info['allowed']) == 49 and info['method']['h7'] == 'live'


@pytest.mark.parametrize('spoil,want', [
    (lambda r: r.update(h2='unreachable'), 'h2: its fact read answered nothing usable'),
    (lambda r: r['h2'].update(version=2), 'h2: its fact read is of format 2'),
    (lambda r: r['h2']['host'].pop('memory_free'), 'h2: its fact read has no memory_free'),
    (lambda r: r['h2']['domains'][0].pop('disks'), 'h2: VM b1 in its fact read has no disks'),
])
def test_a_read_the_controller_cannot_plan_from_is_refused_naming_the_host(spoil, want):
    reads, answers = four_hosts()
    spoil(reads)
    out = FILTER.cluster_plan(reads, answers, [['h1']])
    assert out['plans'] == {} and any(want in p for p in out['problems']), out['problems']


def test_the_filter_refuses_a_group_of_one_and_a_host_named_twice():
    reads, answers = cluster({'h1': [vm('a', 512)]})
    assert 'a drain needs another host' in ' '.join(FILTER.cluster_plan(reads, answers, [['h1']])['problems'])
    reads, answers = four_hosts()
    assert 'h1: named 2 times' in FILTER.cluster_plan(reads, answers, [['h1'], ['h1']])['problems'][0]
    out = FILTER.cluster_plan(reads, answers, [['h1'], ['h2']], return_vms='stay', wave=True)
    assert out['problems'] == [] and out['vms'] == 8 and out['plans']['h1']['lines'][0].startswith('plan for h1')


# -- alternates: a destination lost before the drain starts is routed around, within the approved rules ------

def alt_plan(moves):
    return {'version': CL.PLAN_VERSION, 'source': {'uuid': 's'}, 'allow_cold': False, 'headroom_mib': 100,
            'moves': moves, 'left': {}, 'predicted_total_s': 5.0}


def alt_move(name, dest, alts, mib=1000, group=None):
    m = {'name': name, 'uuid': 'u-' + name, 'destination': dest, 'method': 'live', 'copies_disks': False,
         'storage': {'vda': 'shared'}, 'memory_mib': mib, 'start_s': 0.0, 'end_s': 2.0,
         'alternates': [{'destination': a, 'method': 'live_copy_storage', 'copies_disks': True,
                         'storage': {'vda': 'not_shared'}} for a in alts]}
    if group:
        m['group'] = group
    return m


ALT_NOW = {'a': ('u-a', True), 'b': ('u-b', True), 'c': ('u-c', True)}


def test_a_lost_destination_sends_its_vms_to_their_alternates_and_says_so():
    plan = alt_plan([alt_move('a', 'h3', ['h2', 'h4']), alt_move('b', 'h3', ['h4', 'h2']), alt_move('c', 'h2', [])])
    dests = {'h2': {'free_mib': 2200, 'domains': []}, 'h3': {'error': 'unable to connect: No route to host'}}
    asked = []

    def read(d):
        asked.append(d)
        return {'h4': {'free_mib': 1050, 'domains': []}}.get(d, {'error': 'not among the destinations given'})
    out, changes = PLAN.revalidate(plan, ALT_NOW, dests, 'skip', 100, read=read)
    where = dict((m['name'], (m['destination'], m['method'], m['storage'], m.get('instead_of'))) for m in out['moves'])
    # c keeps h2, its own destination, which still holds; then a, rerouted, takes h2's room left (2200 MiB free,
    # 100 kept free: 2100 for c and a)
    assert where['c'] == ('h2', 'live', {'vda': 'shared'}, None)
    assert where['a'] == ('h2', 'live_copy_storage', {'vda': 'not_shared'}, 'h3')
    # b: h4 has 1050 MiB free - 100 kept free: not 1000 more; h2 is full by now: left, with the lost host as reason
    assert 'b' not in where and out['left']['b'].startswith('changed since the plan was approved: destination h3')
    assert changes == ['a: destination h3 cannot be reached now: unable to connect: No route to host - goes to h2 '
                       'instead (an alternate the approved plan allows)',
                       'b: destination h3 cannot be reached now: unable to connect: No route to host']
    assert asked == ['h4']          # (an alternate's host is read only when it is needed)
    assert [m['name'] for m in out['moves']] == ['a', 'c']      # (plan order)


def test_alternates_keep_the_anti_affinity_of_the_plan():
    plan = alt_plan([alt_move('a', 'h3', ['h2'], mib=500, group='db'), alt_move('b', 'h4', ['h2'], mib=500, group='db')])
    dests = {'h2': {'free_mib': 8000, 'domains': []}, 'h3': {'error': 'down'}, 'h4': {'error': 'down'}}
    out, changes = PLAN.revalidate(plan, {'a': ('u-a', True), 'b': ('u-b', True)}, dests, 'skip', 100)
    assert [(m['name'], m['destination']) for m in out['moves']] == [('a', 'h2')]
    assert 'destination h4 cannot be reached now' in out['left']['b'] and len(changes) == 2


def test_the_plan_ranks_alternates_allowed_by_the_same_rules_and_none_for_a_pinned_vm():
    reads, answers = cluster({'h1': [vm('a', 1024), vm('b', 1024, cpu='q2'), vm('p', 512)], 'h2': [], 'h3': [],
                              'h4': []}, cpu_no={'h3': ['q2']})
    plan = CL.plan_run(reads, answers, [['h1']], dict(PLAN_P, pinned={'p': 'h4'}))['plans']['h1']
    by = dict((m['name'], m) for m in plan['moves'])
    assert by['p']['destination'] == 'h4' and by['p']['alternates'] == []
    for name in ('a', 'b'):
        alts = [x['destination'] for x in by[name]['alternates']]
        assert by[name]['destination'] not in alts and len(alts) == len(set(alts)) >= 1
    assert 'h3' not in [x['destination'] for x in by['b']['alternates']] and by['b']['destination'] != 'h3'
    assert all(x['method'] == 'live' for m in plan['moves'] for x in m['alternates'])


def test_a_drain_whose_planned_destination_is_gone_runs_through_the_alternates_on_the_fake_libvirt(monkeypatch):
    from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver import connection as C
    # (the fake hosts are no TCP peers: a host that is down refuses new connections in the model itself)
    monkeypatch.setattr(C, 'reachable', lambda address, timeout=3.0: True)
    w = fake_world()
    dests = [{'name': h, 'uri': F.uri(h)} for h in ('h2', 'h3')]
    p = dict(PLAN_P, uri=F.uri('h1'), domains=None, exclude_domains=[], destinations=dests, non_live_policy='skip')
    approved = PLAN.plan_evacuation(F.FakeCache(w), p)
    lost = sorted(set(m['destination'] for m in approved['moves']))[0]
    other = 'h3' if lost == 'h2' else 'h2'
    w.drop(lost, F.FOREVER)
    plan, changes = PLAN.check_approved(F.FakeCache(w), p, approved, 'skip')
    assert sorted(m['name'] for m in plan['moves']) == ['db', 'web'] and plan['left'] == {}
    assert set(m['destination'] for m in plan['moves']) == {other}
    assert any('goes to %s instead' % other in c for c in changes), changes
    # a host whose libvirtd port does not answer is not waited for (libvirt's connect would take TCP's retries)
    monkeypatch.setattr(C, 'reachable', lambda address, timeout=3.0: address[0] != lost)
    w = fake_world()
    plan, changes = PLAN.check_approved(F.FakeCache(w), p, approved, 'skip')
    assert set(m['destination'] for m in plan['moves']) == {other}
    assert any('its libvirtd (%s port 16514) does not answer within 3 s - goes to %s' % (lost, other) in c
               for c in changes), changes


def refusing_drain(monkeypatch, refuse, full=()):
    """h1's drain of web and db on the fake libvirt, over h2 and h3 (each VM with the other as its alternate),
    run from the approved plan while the hosts in REFUSE refuse an incoming guest, once per mention (their libvirt fails
    the incoming side of the job: libvirt removes the guest there, the source keeps running it) and the hosts
    in FULL report no free memory once the drain has started. (result, world, approved plan)"""
    from test_faults import Clock
    from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver import connection as C
    monkeypatch.setattr(C, 'reachable', lambda address, timeout=3.0: True)
    w = fake_world()
    w.clock = Clock(1000.0)
    dests = [{'name': h, 'uri': F.uri(h)} for h in ('h2', 'h3')]
    p = dict(PLAN_P, uri=F.uri('h1'), domains=None, exclude_domains=[], destinations=dests, non_live_policy='skip')
    approved = PLAN.plan_evacuation(F.FakeCache(w), p)
    assert all(m['alternates'] for m in approved['moves'])
    left, hit, refused = list(refuse), w.hit, []

    def refusing(obj, method):
        if method == 'incoming' and obj in left:
            left.remove(obj)
            refused.append(obj)
            raise F.lv_error('operation failed: %s refused the incoming guest (a hook said no)' % obj,
                             F.libvirt.VIR_ERR_OPERATION_FAILED)
        return hit(obj, method)
    w.hit = refusing
    if full:
        real = F.FakeConn.getFreeMemory
        monkeypatch.setattr(F.FakeConn, 'getFreeMemory', lambda self: 0 if self.h in full and refused else real(self))
    run = dict(p, plan=approved, per_vm_timeout_s=600, timeout_s=3600, stop_on_failure=False, announce=False,
               journal=None, status_file=None, source_name='h1', return_home=False, return_uri=None, cold_options={},
               migrate_options={'tuning': {'poll_interval_s': 0.001, 'dirty_rate_sample_s': 0}})
    ev = E.Evacuation(F.FakeCache(w), run, lambda: F.FakeCache(w), clock=w.clock, sleep=w.clock.sleep)
    ev._source_security = None  # pylint: disable=protected-access
    return ev.run(), w, approved


def test_a_vm_that_reached_its_destination_is_never_tried_elsewhere(monkeypatch):
    """A failure after the VM runs on its destination (here: an unexpected error in its announce/verify step) is
    reported as it is; the VM is not sent to an alternate, whatever the error looks like."""
    from ansible_collections.vmmigration.libvirt.plugins.module_utils.engines import pipeline as PIPE
    real = PIPE.finish

    def finish(dst, name, result, **kw):
        if name == 'web':
            raise RuntimeError('the verification step broke')
        return real(dst, name, result, **kw)
    monkeypatch.setattr(PIPE, 'finish', finish)
    out, w, approved = refusing_drain(monkeypatch, refuse=[])
    planned = dict((m['name'], m['destination']) for m in approved['moves'])
    web = [r for r in out['results'] if r['name'] == 'web']
    assert len(web) == 1 and 'unexpected error' in web[0]['error'] and web[0]['moved_s'] is not None, web
    assert not out.get('rerouted'), out.get('rerouted')
    assert w.running('web') == [planned['web']] and w.running('db') == [planned['db']]


def test_a_vm_the_engine_moved_is_never_tried_elsewhere_whatever_fails_before_the_drain_hears_of_it(monkeypatch):
    """The drain's second guard: a failure right after the engine moved the VM, before the drain was told it arrived
    (here: the drain's own arrival bookkeeping breaks). The engine's result (migrated) stays on the error, so the move
    counts as one that changed something: reported as it is, never sent to an alternate."""
    def broken(self, name, arrived):  # pylint: disable=unused-argument
        raise KeyError('bookkeeping broke')
    monkeypatch.setattr(E.Evacuation, 'moved', broken)
    out, w, approved = refusing_drain(monkeypatch, refuse=[])
    planned = dict((m['name'], m['destination']) for m in approved['moves'])
    assert not out.get('rerouted'), out.get('rerouted')
    for r in out['results']:
        assert r['state'] == 'migrated' and 'unexpected error' in r['error'] and r['moved_s'] is None, r
    assert w.running('web') == [planned['web']] and w.running('db') == [planned['db']]


def test_a_destination_that_refuses_a_vm_during_the_drain_sends_it_to_the_next_alternate(monkeypatch):
    """Issue 23: a destination that refuses during the drain (not only one lost before it) - the VM, still running
    on the source alone with nothing left on the refusing host, goes to the next alternate that holds now."""
    out, w, approved = refusing_drain(monkeypatch, refuse=['h3'])
    planned = dict((m['name'], m['destination']) for m in approved['moves'])
    to_h3 = sorted(n for n, d in planned.items() if d == 'h3')
    assert to_h3, planned
    assert out['state'] == 'evacuated' and out['failed_vms'] == [], (out['state'], out['results'])
    assert [(r['name'], r['from'], r['to']) for r in out['rerouted']] == [(to_h3[0], 'h3', 'h2')]
    assert 'h3 refused the incoming guest' in out['rerouted'][0]['why']
    by = dict((r['name'], r) for r in out['results'])
    assert by[to_h3[0]]['destination'] == 'h2' and by[to_h3[0]]['instead_of'] == 'h3'
    assert by[to_h3[0]]['state'] == 'migrated' and 'h3 refused' in by[to_h3[0]]['rerouted_because']
    assert any(line.startswith('%s went to h2 instead of h3' % to_h3[0]) for line in out['report']['table'])
    for name in ('web', 'db'):
        assert w.running(name) == ['h2' if name == to_h3[0] else planned[name]]
        assert 'h3' not in w.where(name) or name != to_h3[0]


def link_lost_drain(monkeypatch, site, reason_before=None):
    """h1's drain of web and db over h2 and h3 (refusing_drain's), while h3's link goes for good in the middle of the
    first move to it, at libvirt's step SITE: 'stream' (before the switch-over: the source never stopped the guest)
    or 'incoming' (at the switch-over: the source had stopped it, libvirt resumes it); REASON_BEFORE, libvirt's
    running reason of that VM before the drain. (result, world, approved plan, the VM that was on its way)"""
    from test_faults import Clock
    from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver import connection as C
    w = fake_world()
    w.clock = Clock(1000.0)
    # (the fake hosts are no TCP peers: a host whose link is gone does not answer in the model itself)
    monkeypatch.setattr(C, 'reachable', lambda address, timeout=3.0: address[0] not in w.dropped)
    dests = [{'name': h, 'uri': F.uri(h)} for h in ('h2', 'h3')]
    p = dict(PLAN_P, uri=F.uri('h1'), domains=None, exclude_domains=[], destinations=dests, non_live_policy='skip')
    approved = PLAN.plan_evacuation(F.FakeCache(w), p)
    vm = [m['name'] for m in approved['moves'] if m['destination'] == 'h3'][0]
    if reason_before is not None:
        w.hosts['h1'].doms[vm].reason = reason_before
    hit, cut = w.hit, []

    def losing(obj, method):
        if obj == 'h3' and method == site and not cut:
            cut.append(True)
            w.drop('h3', F.FOREVER)
            raise F.lv_error('internal error: connection closed due to keepalive timeout',
                             F.libvirt.VIR_ERR_INTERNAL_ERROR)
        return hit(obj, method)
    w.hit = losing
    run = dict(p, plan=approved, per_vm_timeout_s=600, timeout_s=3600, stop_on_failure=False, announce=False,
               journal=None, status_file=None, source_name='h1', return_home=False, return_uri=None, cold_options={},
               migrate_options={'tuning': {'poll_interval_s': 0.001, 'dirty_rate_sample_s': 0}})
    ev = E.Evacuation(F.FakeCache(w), run, lambda: F.FakeCache(w), clock=w.clock, sleep=w.clock.sleep)
    ev._source_security = None  # pylint: disable=protected-access
    out = ev.run()
    assert cut, 'the link was never cut'
    return out, w, approved, vm


def test_a_vm_in_flight_when_its_destinations_link_goes_before_the_switch_over_goes_to_its_alternate(monkeypatch):
    """Issue 23: the link to h3 goes while a VM is on its way there, before the switch-over. h3 cannot be read, but
    the source never stopped the guest (its libvirt's running reason says so, before and after): whatever h3
    received never had the guest's final state and cannot run. The VM goes to its alternate; the drain ends
    evacuated, every VM running once."""
    out, w, approved, vm = link_lost_drain(monkeypatch, 'stream')
    planned = dict((m['name'], m['destination']) for m in approved['moves'])
    assert planned[vm] == 'h3'
    assert out['state'] == 'evacuated' and out['failed_vms'] == [], (out['state'], out['results'])
    assert [(r['name'], r['from'], r['to']) for r in out['rerouted']] == [(vm, 'h3', 'h2')]
    by = dict((r['name'], r) for r in out['results'])
    assert by[vm]['destination'] == 'h2' and by[vm]['instead_of'] == 'h3' and by[vm]['state'] == 'migrated'
    for name in ('web', 'db'):
        assert w.running(name) == ['h2' if name == vm else planned[name]], (name, w.where(name))
    assert vm not in w.hosts['h3'].doms


def test_a_vm_whose_link_goes_at_the_switch_over_is_never_sent_elsewhere(monkeypatch):
    """The same cut at the switch-over: the source had stopped the guest and libvirt resumed it ('migration
    canceled'), so h3 may have finished and run it, its reply lost. It is never tried elsewhere: the drain ends
    incomplete with the VM on its source, and says to check h3 before anything else."""
    out, w, approved, vm = link_lost_drain(monkeypatch, 'incoming')
    planned = dict((m['name'], m['destination']) for m in approved['moves'])
    assert planned[vm] == 'h3'
    assert out['state'] == 'incomplete' and not out.get('rerouted'), (out['state'], out.get('rerouted'))
    line = [r for r in out['results'] if r['name'] == vm][0]
    # (not said to be rolled back: the guest runs on its source again, and h3 may run it too)
    assert line['state'] == 'rolled_back_unconfirmed' and 'before anything else' in line['error'], line
    assert w.running(vm) == ['h1']


def test_a_vm_libvirt_had_resumed_after_an_earlier_failed_move_is_not_sent_elsewhere_when_the_link_goes(monkeypatch):
    """The mark libvirt leaves on a guest resumed after a failed migration stays until it is paused again: a guest
    that carries it from an earlier move cannot show whether this move stopped it - judged as stopped, not tried
    elsewhere."""
    out, w, _approved, vm = link_lost_drain(monkeypatch, 'stream', reason_before=F.MIGRATION_CANCELED)
    assert out['state'] == 'incomplete' and not out.get('rerouted'), (out['state'], out.get('rerouted'))
    assert w.running(vm) == ['h1']


def test_a_refused_vm_with_no_alternate_that_holds_ends_failed_on_its_source(monkeypatch):
    """Both destinations refuse (the alternate too), or the alternate has no room left: the VM is tried no
    further, fails as its move did, and runs on its source alone."""
    out, w, approved = refusing_drain(monkeypatch, refuse=['h2', 'h3'] * 2)
    assert sorted(out['failed_vms']) == ['db', 'web'] and out['state'] == 'incomplete', (out['state'], out['results'])
    # (each was refused by its destination, then by its alternate: tried once each, no further)
    assert sorted((r['name'], r['from']) for r in out['rerouted']) == sorted(
        (m['name'], m['destination']) for m in approved['moves'])
    for name in ('db', 'web'):
        assert w.running(name) == ['h1'] and set(w.where(name)) == {'h1'}
    out, w, approved = refusing_drain(monkeypatch, refuse=['h3'], full=['h2'])
    to_h3 = [m['name'] for m in approved['moves'] if m['destination'] == 'h3']
    assert out['rerouted'] == [] and out['failed_vms'] == to_h3 and out['state'] == 'incomplete'
    assert all(w.running(n) == ['h1'] for n in to_h3)


def test_the_wave_takes_the_emptiest_host_first_and_keeps_the_order_given_among_equals():
    reads, _answers = cluster({'h1': [vm('a', 2048)], 'h2': [], 'h3': [vm('c', 1024)], 'h4': []})
    assert FILTER.cluster_wave_order(reads, ['h1', 'h2', 'h3', 'h4']) == ['h2', 'h4', 'h3', 'h1']
    reads['h4'] = None
    assert FILTER.cluster_wave_order(reads, ['h1', 'h4', 'h2', 'h3']) == ['h2', 'h3', 'h1', 'h4']


# -- one admission control for a step: the drains of a step share each destination's inbound limit ----------------

def test_the_drains_of_a_step_split_a_shared_destinations_inbound_limit_and_a_step_that_cannot_is_said():
    layout = {'h1': [vm('a1', 512), vm('a2', 512)], 'h2': [vm('b1', 512), vm('b2', 512)], 'h3': []}
    reads, answers = cluster(layout, total_mib=8192)
    out = CL.plan_run(reads, answers, [['h1', 'h2']], dict(PLAN_P, max_inbound=2))
    for h in ('h1', 'h2'):
        assert set(m['destination'] for m in out['plans'][h]['moves']) == {'h3'}
        assert out['plans'][h]['inbound_limits'] == {'h3': 1} and out['plans'][h].get('inbound_over', []) == []
        # (the predicted schedule keeps the share: one move into h3 at a time, so the two take twice as long)
        moves = out['plans'][h]['moves']
        assert moves[1]['start_s'] >= moves[0]['end_s']
    # one slot into h3 for two drains at once: not a step (the rolling plan takes them one at a time)
    out = CL.plan_run(reads, answers, [['h1', 'h2']], dict(PLAN_P, max_inbound=1))
    assert out['plans']['h1']['inbound_over'] == ['h3 would receive from h1 + h2 at once, above its inbound limit of 1']
    from ansible_collections.vmmigration.libvirt.plugins.module_utils.orchestration import rolling as R
    why = R.batch_conflicts(['h1', 'h2'], out['plans'])
    assert 'h3 would receive from h1 + h2 at once, above its inbound limit of 1' in why, why
    # a drain alone keeps the whole limit
    out = CL.plan_run(reads, answers, [['h1'], ['h2']], dict(PLAN_P, max_inbound=1))
    assert 'inbound_limits' not in out['plans']['h1']


# -- the simulated run as the hosts will be: definitions move with the VMs; steps planned together -----------------

def test_a_vm_can_come_back_to_the_host_it_left_and_two_of_one_name_never_meet_on_one_host():
    # two hosts, return stay: h1's VM goes to h2, then h2's drain sends both back to h1 (a move undefines its source)
    reads, answers = cluster({'h1': [vm('a', 512)], 'h2': [vm('b', 512)]})
    out = CL.plan_run(reads, answers, [['h1'], ['h2']], PLAN_P, return_vms='stay')
    assert sorted((m['name'], m['destination']) for m in out['plans']['h2']['moves']) == [('a', 'h1'), ('b', 'h1')]
    assert out['plans']['h2']['left'] == {}
    # two VMs of one name on the two hosts of a step: once one is planned onto h3, the other is not
    reads, answers = cluster({'h1': [vm('web', 512, uuid='u1')], 'h2': [vm('web', 512, uuid='u2')], 'h3': [],
                              'h4': []})
    out = CL.plan_run(reads, answers, [['h1', 'h2']], PLAN_P)
    dests = [m['destination'] for h in ('h1', 'h2') for m in out['plans'][h]['moves']]
    assert sorted(dests) == ['h3', 'h4'], dests


def test_plans_made_together_for_a_step_are_not_charged_each_others_memory_twice():
    from ansible_collections.vmmigration.libvirt.plugins.module_utils.orchestration import rolling as R
    reads, answers = cluster({'h1': [vm('a1', 1024), vm('a2', 1024)], 'h2': [vm('b1', 1024), vm('b2', 1024)],
                              'h3': [], 'h4': []}, total_mib=2560)
    out = CL.plan_run(reads, answers, [['h1', 'h2']], PLAN_P)
    assert R.batch_conflicts(['h1', 'h2'], out['plans']) == []
    # (and a step's drains keep no alternates: rerouting on their own, two could meet on one host)
    assert all(m['alternates'] == [] for h in ('h1', 'h2') for m in out['plans'][h]['moves'])
    assert out['plans']['h1']['planned_with'] == ['h1', 'h2']


def test_one_spare_destination_is_enough_but_a_step_with_none_outside_it_is_refused():
    reads, answers = four_hosts()
    out = FILTER.cluster_plan(reads, answers, [['h1'], ['h2']], destinations=['h4'])
    assert out['problems'] == [] and set(m['destination'] for m in out['plans']['h2']['moves']) == {'h4'}
    out = FILTER.cluster_plan(reads, answers, [['h4']], destinations=['h4'])
    assert out['problems'] == ['h4: no destination outside it (destinations: h4) - a drain needs another host to move to']
    out = FILTER.cluster_plan(reads, answers, [['h1']], destinations=['h9'])
    assert 'h9: not read' in out['problems'][0]
    answers.pop('h2')
    assert 'h2: its answers are missing' in ' '.join(FILTER.cluster_plan(reads, answers, [['h1']])['problems'])


SKIPPED = {'changed': False, 'skipped': True, 'skip_reason': 'Conditional result was False'}


def test_a_group_that_raises_no_question_is_planned_without_the_answer_round_and_one_question_needs_every_answer():
    """No custom CPU, no disk directory, no storage server: the role asks nothing (no second module run per host)
    and the plan takes each host to answer nothing; one question and a host that did not answer is refused."""
    reads, answers = four_hosts()
    for r in reads.values():
        r['cpu_questions'], r['markers'] = {}, {}
        for v in r['domains']:
            v['disks'], v['cpu_question'] = [], None
    assert CL.questions(reads) == {'cpus': {}, 'dirs': [], 'servers': {}}
    skipped = dict((h, SKIPPED) for h in reads)
    unasked = dict((h, CR.answer(None, CL.questions(reads))) for h in reads)
    out = FILTER.cluster_plan(reads, skipped, [['h1'], ['h2']])
    assert out['problems'] == [] and out == FILTER.cluster_plan(reads, unasked, [['h1'], ['h2']])
    assert len(out['plans']['h1']['moves']) == 2
    assert FILTER.cluster_batch(reads, skipped, ['h1', 'h2'], PLAN_P)['problems'] == []
    # one VM with a disk in a directory: the directory is asked of every host, which must all answer
    reads['h3']['markers'] = {SHARED: {'name': 'vmm-probe-h3.marker', 'size': 512}}
    for f in (lambda a: FILTER.cluster_plan(reads, a, [['h1']])['problems'],
              lambda a: FILTER.cluster_batch(reads, a, ['h1'], PLAN_P)['problems']):
        problems = ' '.join(f(skipped))
        assert all('h%d: its answers are missing' % i in problems for i in (1, 2, 3, 4)), problems


def test_the_cpu_definitions_a_hosts_own_vms_run_are_answered_in_its_read_and_only_the_rest_asked():
    """Every host runs VMs of q1 and answered it in its read: nobody is asked q1 again, and a host's 'no' there
    keeps VMs off it; the host that runs none (h3) is left q1, and is refused when it did not answer."""
    reads, _answers = cluster({'h1': [vm('a', 1024, cpu='q1', dirs=())], 'h2': [vm('b', 512, cpu='q1', dirs=())],
                               'h3': [], 'h4': [vm('d', 512, cpu='q1', dirs=())]})
    for h, r in reads.items():
        r['markers'] = {}
        r['cpu_questions'] = {'q1': {'xml': '<cpu/>'}} if r['domains'] else {}
        r['cpu_answers'] = dict((q, None) for q in r['cpu_questions'])
    reads['h2']['cpu_answers']['q1'] = 'the host CPU does not provide: avx512'
    asked = CL.questions(reads)
    left = dict((h, FILTER.cluster_questions_left(asked, reads[h])) for h in reads)
    assert [sorted(left[h]['cpus']) for h in ('h1', 'h2', 'h3', 'h4')] == [[], [], ['q1'], []]
    # (what the role asks of each host - h3 alone - and whether it asks at all)
    assert [h for h in sorted(left) if any(left[h].values())] == ['h3']
    with pytest.raises(AnsibleFilterError, match='expects the cluster_questions result'):
        FILTER.cluster_questions_left('q1', reads['h1'])
    answers = dict((h, SKIPPED) for h in reads)
    assert FILTER.cluster_plan(reads, answers, [['h1']])['problems'] == [
        'h3: its answers are missing (it was left a question: a CPU definition its own VMs do not run, a disk '
        'directory or a storage server)']
    answers['h3'] = dict(CL.unasked(), version=2)
    assert FILTER.cluster_plan(reads, answers, [['h1']])['problems'] == [
        'h3: its answers are of format 2; this controller reads format %d' % CL.READ_VERSION]
    answers['h3'] = {'version': CL.READ_VERSION, 'cpus': {'q1': 'the host CPU does not provide: sha-ni'},
                     'dirs': {}, 'servers': {}}
    plan = FILTER.cluster_plan(reads, answers, [['h1']])['plans']['h1']
    # (h2 said no in its read, h3 when asked: only h4 runs q1)
    assert [m['destination'] for m in plan['moves']] == ['h4']
    assert 'avx512' in ' '.join(plan['refused']['a']['h2']) and 'sha-ni' in ' '.join(plan['refused']['a']['h3'])


def test_a_vm_that_cannot_move_keeps_its_own_reason_in_the_waves_first_step():
    reads, answers = cluster({'h1': [vm('pin', 512, cpu='q2')], 'h2': [], 'h3': []},
                             cpu_no={'h2': ['q2'], 'h3': ['q2']})
    plan = CL.plan_run(reads, answers, [['h1']], PLAN_P, return_vms='stay', wave=True)['plans']['h1']
    assert 'avx512' in plan['left']['pin'] and 'maintained' not in plan['left']['pin']


# -- batch: auto - the most hosts out at once whose every step the cluster absorbs -------------------------------

def six_hosts():
    return cluster(dict(('h%d' % i, [vm('v%da' % i, 1024), vm('v%db' % i, 1024)]) for i in range(1, 7)))


def test_batch_auto_is_the_largest_step_every_step_of_which_fits_and_says_why_one_more_does_not():
    reads, answers = six_hosts()
    hosts = sorted(reads)
    # 8 GiB hosts, 2 GiB of VMs each, 512 MiB kept free: five out would put 10 GiB on one host's 5.5; four out put
    # 8 GiB on two hosts (it fits)
    out = BATCH.auto_batch(reads, answers, hosts, dict(PLAN_P, max_inbound=8))
    # (5 passed over without a plan; then 2 and 4 planned - doubled while it fits - up to the memory bound)
    assert out['batch'] == 4 and [t['size'] for t in out['tried']] == [5, 4, 2], out['tried']
    assert 'MiB of VMs' in out['tried'][0]['why'][0] and out['tried'][1]['fits']
    # with 2 inbound slots a destination takes two drains at once: three out send to three hosts, two each; four out
    # send to two hosts, four each
    out = BATCH.auto_batch(reads, answers, hosts, dict(PLAN_P, max_inbound=2))
    assert out['batch'] == 3, out['tried']
    assert out['lines'][0] == 'batch auto: 3 hosts out at once'
    assert 'above its inbound limit of 2' in out['lines'][1] and out['lines'][1].startswith('  4 at once does not fit')
    # (one slot: two out still fit - their drains, planned together, send to four different hosts)
    assert BATCH.auto_batch(reads, answers, hosts, dict(PLAN_P, max_inbound=1))['batch'] == 2
    # the size chosen is one the rolling plan takes at once: every step of it without a conflict
    from ansible_collections.vmmigration.libvirt.plugins.module_utils.orchestration import rolling as RO
    steps = RO.candidate_batches(hosts, {}, out['batch'])
    plans = CL.plan_run(reads, answers, steps, dict(PLAN_P, max_inbound=2))['plans']
    assert all(RO.batch_conflicts(s, dict((h, plans[h]) for h in s)) == [] for s in steps)
    steps = RO.candidate_batches(hosts, {}, out['batch'] + 1)
    plans = CL.plan_run(reads, answers, steps, dict(PLAN_P, max_inbound=2))['plans']
    assert any(RO.batch_conflicts(s, dict((h, plans[h]) for h in s)) for s in steps)


def test_batch_auto_keeps_anti_affinity_and_a_host_left_half_done_alone_and_falls_back_to_one():
    reads, answers = cluster({'h1': [vm('a', 1024)], 'h2': [vm('b', 1024)], 'h3': [vm('c', 1024)]})
    assert BATCH.auto_batch(reads, answers, ['h1', 'h2', 'h3'], PLAN_P)['batch'] == 2
    out = BATCH.auto_batch(reads, answers, ['h1', 'h2', 'h3'], dict(PLAN_P, anti_affinity={'g': ['a', 'b', 'c']}))
    assert out['batch'] == 1 and out['lines'][0] == 'batch auto: one host at a time', out
    assert 'anti-affinity' in ' '.join(out['tried'][0]['why']) or 'cannot move' in ' '.join(out['tried'][0]['why'])
    reads, answers = six_hosts()
    hosts = sorted(reads)
    # h3 left half done by an earlier run is a step of its own, and h6 needs no drain: with five a step, the run
    # takes h3 alone, then h1 + h2 + h4 + h5 (8 GiB onto h3 and h6) - it fits, where six hosts in one step could not
    out = BATCH.auto_batch(reads, answers, hosts, dict(PLAN_P, max_inbound=8), records={'h3': {'state': 'draining'}},
                           drained=['h1', 'h2', 'h3', 'h4', 'h5'])
    assert out['batch'] == 5 and [t['size'] for t in out['tried']] == [5, 4, 2], out['tried']
    out = BATCH.auto_batch(reads, answers, hosts, dict(PLAN_P, max_inbound=8), records={'h3': {'state': 'draining'}})
    assert out['batch'] == 4, out['tried']
    out = FILTER.cluster_batch(reads, dict(answers, h2={'version': 99}), hosts, dict(PLAN_P))
    assert out['batch'] == 1 and out['problems'] == ['h2: its answers are of format 99; this controller reads format %d'
                                                     % CL.READ_VERSION]

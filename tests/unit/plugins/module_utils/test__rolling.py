"""The rolling maintenance's cluster plan and report (pure functions)."""
import math
import re

import pytest

from ansible_collections.vmmigration.libvirt.plugins.module_utils import _rolling as R


def plan(moves=(), left=None, cold_only=(), predicted=4.0):
    return {'moves': [{'name': n, 'destination': d, 'method': 'live', 'memory_mib': 256} for n, d in moves],
            'left': dict(left or {}), 'cold_only': list(cold_only), 'predicted_total_s': predicted}


def test_cluster_plan_orders_resumes_first_and_leaves_out_hosts_done():
    hp = [{'name': 'h1', 'record': {'state': 'done'}, 'plan': None},
          {'name': 'h2', 'record': {}, 'plan': plan([('a', 'h1')], predicted=3.0)},
          {'name': 'h3', 'record': {'state': 'failed'}, 'plan': plan([('b', 'h2'), ('c', 'h1')], predicted=5.0)}]
    cp = R.cluster_plan(hp, ['h1', 'h2', 'h3'], expected_s=60)
    assert cp['order'] == ['h3', 'h2'] and cp['unplaceable'] == {}
    by = dict((h['name'], h) for h in cp['hosts'])
    assert by['h3']['predicted'] == {'drain_s': 5.0, 'maintenance_s': 60.0, 'return_s': 5.0, 'total_s': 70.0}
    assert by['h1']['status'] == 'done' and by['h1']['predicted']['total_s'] == 0
    assert cp['predicted_total_s'] == 70.0 + 66.0
    assert '  h1: done by an earlier run of this id - not taken again' in cp['lines']
    assert '    b -> h2 (live, 256 MiB), back afterwards' in cp['lines']
    assert cp['lines'][-1] == '  order: h3 -> h2'
    # with the VMs staying where they go, nothing comes back
    assert R.cluster_plan(hp, ['h1', 'h2', 'h3'], expected_s=60, return_vms='stay')['hosts'][2]['predicted']['return_s'] == 0


def test_a_host_the_cluster_cannot_empty_is_named_with_each_vm_and_reason():
    hp = [{'name': 'h1', 'record': {}, 'plan': plan([('a', 'h2')], left={'big': 'no host has 9000 MiB free'})},
          {'name': 'h2', 'record': {}, 'plan': plan(left={'old': 'only a cold migration could move it'},
                                                    cold_only=['old'])}]
    cp = R.cluster_plan(hp, ['h1', 'h2'])
    assert cp['unplaceable'] == {'h1': {'big': 'no host has 9000 MiB free'},
                                 'h2': {'old': 'only a cold migration could move it'}}
    assert cp['unplaceable_lines'][0] == 'h1: big (no host has 9000 MiB free)'
    assert cp['order'] == [] and any('CANNOT BE EMPTIED' in x for x in cp['lines'])
    # the shutdown policy stops what only a cold move could take: that host can be emptied
    cp = R.cluster_plan(hp, ['h1', 'h2'], non_live_policy='shutdown')
    assert list(cp['unplaceable']) == ['h1'] and cp['order'] == ['h2']


@pytest.mark.parametrize('span', [0.4, 3.9, 7.3, 16.2, 59, 61, 299.5, 3601])
def test_the_time_axis_is_linear_with_even_steps_and_labels(span):
    ticks = R.axis_ticks(span)
    steps = set(round(b[0] - a[0], 6) for a, b in zip(ticks, ticks[1:]))
    assert len(steps) == 1, ticks           # evenly spaced ...
    step = steps.pop()
    assert ticks[0][0] == 0 and ticks[-1][0] >= span > ticks[-2][0]
    assert all(label == '%g s' % t for t, label in ticks)   # ... and labelled with the value at each
    mantissa = step / 10 ** math.floor(math.log10(step))
    assert min(abs(mantissa - m) for m in (1, 2, 5)) < 1e-9, step   # 1, 2 or 5 times a power of ten
    assert 3 <= len(ticks) <= 10


def record(name, t0, state='done', moved=(('vm', 'h2', 2.8),)):
    return {'name': name, 'state': state, 'predicted': {'total_s': 20.0},
            'phases': {'drain': {'start': t0, 'end': t0 + 5}, 'maintenance': {'start': t0 + 5, 'end': t0 + 9},
                       'gate': {'start': t0 + 9, 'end': t0 + 10}, 'return': {'start': t0 + 10, 'end': t0 + 15}},
            'drain_started_at': t0 + 1.0, 'return_started_at': t0 + 11.0,
            'drained': [{'name': n, 'destination': d, 'state': 'migrated', 'start_s': 0.2, 'total_time_s': s,
                         'downtime_ms': 120} for n, d, s in moved],
            'returned': [{'name': n, 'destination': name, 'state': 'migrated', 'start_s': 0.1, 'total_time_s': s,
                          'downtime_ms': 90} for n, _d, s in moved]}


def test_report_says_where_each_vm_ends_and_bars_agree_with_the_table():
    recs = [record('h1', 1000.0, moved=(('a', 'h2', 2.8),)), record('h2', 1015.0, moved=(('b', 'h1', 1.5),))]
    rep = R.report(recs, run_id='r1', predicted=40.0)
    assert rep['state'] == 'done' and rep['ends'] == {'a': 'h1', 'b': 'h2'} and rep['actual_total_s'] == 30.0
    assert rep['table'][0].split() == ['HOST', 'STATE', 'DRAIN', 'MAINTENANCE', 'GATE', 'RETURN', 'TOTAL', 'PREDICTED', 'VMS']
    assert rep['table'][1].split()[:4] == ['h1', 'done', '5.0', 's']
    assert '  a: h1 -> h2 (migrated, 2.8 s, downtime 120 ms) -> back to h1 (migrated, 2.8 s, downtime 90 ms)' in rep['table']
    assert rep['table'][-1] == 'run r1: done, took 30.0 s (predicted 40.0 s)'
    # the move's bar: from its start in its drain (1.0 + 0.2 s after the host's first step), as long as the table says
    html = rep['html']
    ticks = R.axis_ticks(30.0)
    scale = (960 - 160 - 20) / ticks[-1][0]
    pattern = r'<rect x="([\d.]+)" y="\d+" width="([\d.]+)" height="\d+" fill="[^"]+"><title>a -&gt; h2: migrated, 2.8 s'
    found = re.search(pattern, html)
    assert found, html
    assert abs(float(found.group(1)) - (160 + 1.2 * scale)) < 0.1 and abs(float(found.group(2)) - 2.8 * scale) < 0.1


def test_a_failed_host_fails_the_report_and_says_where():
    recs = [record('h1', 1000.0), dict(record('h2', 1015.0, state='failed', moved=(('b', 'h3', 1.0),)), returned=[],
                                       failed_phase='maintenance', error='apt failed')]
    rep = R.report(recs, run_id='r1')
    assert rep['state'] == 'failed' and rep['ends'] == {'vm': 'h1', 'b': 'h3'}
    assert '  h2 failed in maintenance: apt failed' in rep['table']


def test_the_report_sets_each_drains_prediction_against_what_it_took():
    recs = [record('h1', 1000.0), record('h2', 1015.0), dict(record('h3', 1030.0), drained=[])]
    recs[0]['predicted'] = {'drain_s': 4.0, 'total_s': 20.0}     # drain took 5.0 s: 20 % off
    recs[1]['predicted'] = {'drain_s': 6.0, 'total_s': 20.0}     # 20 % off the other way
    recs[2]['predicted'] = {'drain_s': 1.0, 'total_s': 20.0}     # moved nothing: not counted
    rep = R.report(recs, run_id='r1')
    assert rep['drain_errors'] == {'h1': {'predicted_s': 4.0, 'actual_s': 5.0, 'error_pct': 20.0},
                                   'h2': {'predicted_s': 6.0, 'actual_s': 5.0, 'error_pct': 20.0}}
    assert rep['median_drain_error_pct'] == 20.0
    assert 'drain predicted against actual: h1 4.0 s for 5.0 s (20 %), h2 6.0 s for 5.0 s (20 %); median error 20 %' in rep['table']


def test_the_cluster_plan_adds_the_measured_role_overhead_to_each_drain_and_return():
    hp = [{'name': 'h1', 'record': {}, 'plan': plan([('a', 'h2')], predicted=3.0)},
          {'name': 'h2', 'record': {}, 'plan': plan([('b', 'h1')], predicted=3.0)}]
    p = R.cluster_plan(hp, ['h1', 'h2'], expected_s=10, role_overhead_s=18.5)['hosts'][0]['predicted']
    assert p == {'drain_s': 21.5, 'maintenance_s': 10.0, 'return_s': 21.5, 'total_s': 53.0}

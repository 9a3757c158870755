"""The rolling maintenance's cluster plan and report (pure functions)."""
import math
import re

import pytest

from ansible_collections.vmmigration.libvirt.plugins.module_utils.orchestration import report as REP
from ansible_collections.vmmigration.libvirt.plugins.module_utils.orchestration import rolling as R


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
    assert by['h3']['predicted'] == {'drain_s': 5.0, 'maintenance_s': 60.0, 'gate_s': 0.0, 'return_s': 5.0,
                                     'total_s': 70.0, 'calibrated': False, 'learned': []}
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
    ticks = REP.axis_ticks(span)
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
    ticks = REP.axis_ticks(30.0)
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
    recs[0]['predicted'] = {'drain_s': 1.0, 'total_s': 20.0}     # drain took 5.0 s: 80 % off, from the configured rate
    recs[1]['predicted'] = {'drain_s': 6.0, 'total_s': 20.0, 'calibrated': True}     # 20 % off, calibrated
    recs[2]['predicted'] = {'drain_s': 1.0, 'total_s': 20.0}     # moved nothing: not counted
    failed = record('h4', 1045.0, state='failed')
    failed['phases']['drain']['failed'] = True                    # a drain that failed: not counted either
    failed['predicted'] = {'drain_s': 1.0, 'total_s': 20.0, 'calibrated': True}
    recs.append(failed)
    rep = R.report(recs, run_id='r1')
    assert rep['drain_errors'] == {'h1': {'predicted_s': 1.0, 'actual_s': 5.0, 'error_pct': 80.0, 'calibrated': False},
                                   'h2': {'predicted_s': 6.0, 'actual_s': 5.0, 'error_pct': 20.0, 'calibrated': True}}
    assert rep['median_drain_error_pct'] == 50.0 and rep['median_calibrated_drain_error_pct'] == 20.0
    assert ('drain predicted against actual: h1 1.0 s for 5.0 s (80 %), h2 6.0 s for 5.0 s (20 %, calibrated); '
            'median error 50 %, once calibrated 20 %') in rep['table']


def test_the_cluster_plan_adds_the_measured_role_overhead_to_each_drain_and_return():
    hp = [{'name': 'h1', 'record': {}, 'plan': plan([('a', 'h2')], predicted=3.0), 'calibrated': True},
          {'name': 'h2', 'record': {}, 'plan': plan([('b', 'h1')], predicted=3.0)}]
    p = R.cluster_plan(hp, ['h1', 'h2'], expected_s=10, role_overhead_s=18.5)['hosts'][0]['predicted']
    assert p == {'drain_s': 21.5, 'maintenance_s': 10.0, 'gate_s': 0.0, 'return_s': 21.5, 'total_s': 53.0,
                 'calibrated': True, 'learned': []}


def test_a_resumed_host_keeps_its_earlier_attempt_and_each_move_stays_at_its_own_drain():
    """h2's first attempt drained it (b moved) and failed in maintenance; the resume drained an empty host, then
    finished. The report keeps both attempts' times; the prediction is measured on the drain that moved b."""
    first = record('h2', 1000.0, moved=(('b', 'h1', 1.5),))
    first['phases'] = {'drain': {'start': 1000.0, 'end': 1006.0},
                       'maintenance': {'start': 1006.0, 'end': 1007.0, 'failed': True}}
    first['drained'][0]['drain_started_at'] = 1001.0
    rec = dict(record('h2', 1100.0, moved=()), drained=first['drained'], returned=first['returned'],
               drain_started_at=1101.0, return_started_at=1111.0, predicted={'drain_s': 1.0, 'total_s': 20.0},
               attempts=[{'phases': first['phases'], 'predicted': {'drain_s': 4.8, 'total_s': 30.0}, 'moved': 1,
                          'state': 'failed', 'failed_phase': 'maintenance', 'error': 'apt failed'}])
    rep = R.report([rec], run_id='r1')
    assert rep['actual_total_s'] == 115.0                        # from the first attempt's start
    assert '  h2 attempt 1: drain 6.0 s, maintenance 1.0 s; maintenance failed: apt failed' in rep['table']
    assert rep['table'][1].split()[:4] == ['h2', 'done', '5.0', 's']    # the phases of the attempt that finished
    # measured on the first attempt's drain (6.0 s for 4.8 predicted), not on the resume's empty one
    assert rep['drain_errors'] == {'h2': {'predicted_s': 4.8, 'actual_s': 6.0, 'error_pct': 20.0, 'calibrated': False}}
    html = rep['html']
    assert 'h2 drain: 6.0 s (attempt 1, maintenance failed)' in html and 'fill-opacity="0.45"' in html
    # b's bar starts at its own drain's start (1001 + 0.2 s from the run's first step at 1000), not the resume's
    scale = (960 - 160 - 20) / REP.axis_ticks(115.0)[-1][0]
    found = re.search(r'<rect x="([\d.]+)" y="\d+" width="[\d.]+" height="\d+" fill="[^"]+"><title>b -&gt; h1', html)
    assert found and abs(float(found.group(1)) - (160 + 1.2 * scale)) < 0.1, html
    # a host that never resumed has no earlier attempt
    assert R.attempts(record('h1', 0.0))[0]['current'] and len(R.attempts(record('h1', 0.0))) == 1


def bplan(moves, free_after, headroom=128, left=None, predicted=4.0):
    p = plan(moves, left=left, predicted=predicted)
    p.update(free_after_mib=free_after, headroom_mib=headroom)
    return p


def test_hosts_whose_plans_fit_together_are_taken_at_once_the_step_as_long_as_its_longest_host():
    hp = [{'name': 'h1', 'record': {}, 'plan': plan([('a', 'h2')], predicted=3.0),
           'batch_plan': bplan([('a', 'h3')], {'h3': 1000}, predicted=3.0)},
          {'name': 'h2', 'record': {}, 'plan': plan([('b', 'h1')], predicted=3.0),
           'batch_plan': bplan([('b', 'h3')], {'h3': 1000}, predicted=5.0)},
          {'name': 'h3', 'record': {}, 'plan': plan([('c', 'h1')], predicted=3.0), 'batch_plan': None}]
    cp = R.cluster_plan(hp, ['h1', 'h2', 'h3'], expected_s=10, batch=2)
    assert cp['batches'] == [['h1', 'h2'], ['h3']] and cp['serial'] == [2, 1] and cp['order'] == ['h1', 'h2', 'h3']
    by = dict((h['name'], h) for h in cp['hosts'])
    # each host of the step drains by its plan against the hosts outside the step
    assert by['h1']['moves'][0]['destination'] == 'h3' and by['h1']['plan_kind'] == 'batch'
    assert by['h2']['batch'] == ['h1', 'h2'] and by['h3']['plan_kind'] == 'single' and by['h3']['batch'] == ['h3']
    assert cp['predicted_total_s'] == (5 + 10 + 5) + (3 + 10 + 3)
    assert cp['lines'][0].startswith('cluster plan: 3 host(s) to maintain, in 2 step(s) of up to 2 hosts at once')
    assert cp['lines'][-1] == '  order: h1 + h2 -> h3' and cp['batch_notes'] == []
    # batch 1 (the default) is the plan as before: one at a time, by the N+1 plans
    cp1 = R.cluster_plan(hp, ['h1', 'h2', 'h3'], expected_s=10)
    assert cp1['batches'] == [['h1'], ['h2'], ['h3']] and cp1['hosts'][0]['moves'][0]['destination'] == 'h2'


def test_each_host_is_predicted_with_the_role_cost_of_its_own_phase_and_step():
    """h1 and h2 out together, h3 alone: the drains of the step take the role's cost measured beside other drains,
    h3 the cost measured alone; each return takes the returns' own; a figure not measured falls back to
    role_overhead_s."""
    hp = [{'name': 'h1', 'record': {}, 'plan': plan([('a', 'h2')], predicted=3.0),
           'batch_plan': bplan([('a', 'h3')], {'h3': 1000}, predicted=3.0)},
          {'name': 'h2', 'record': {}, 'plan': plan([('b', 'h1')], predicted=3.0),
           'batch_plan': bplan([('b', 'h3')], {'h3': 1000}, predicted=3.0)},
          {'name': 'h3', 'record': {}, 'plan': plan([('c', 'h1')], predicted=3.0), 'batch_plan': None}]
    overheads = {'drain': {'alone': 2.9, 'alongside': 5.1}, 'return': {'alone': None, 'alongside': 3.1}}
    cp = R.cluster_plan(hp, ['h1', 'h2', 'h3'], expected_s=10, batch=2, role_overhead_s=3.5, role_overheads=overheads)
    assert cp['batches'] == [['h1', 'h2'], ['h3']]
    by = dict((h['name'], h['predicted']) for h in cp['hosts'])
    assert (by['h1']['drain_s'], by['h1']['return_s']) == (8.1, 6.1) == (by['h2']['drain_s'], by['h2']['return_s'])
    assert (by['h3']['drain_s'], by['h3']['return_s']) == (5.9, 6.5)     # 3 + 2.9; 3 + 3.5 (return alone: not measured)
    # without them, every drain and return as before: role_overhead_s
    plain = R.cluster_plan(hp, ['h1', 'h2', 'h3'], expected_s=10, batch=2, role_overhead_s=3.5)
    by = dict((h['name'], h['predicted']) for h in plain['hosts'])
    assert set((p['drain_s'], p['return_s']) for p in by.values()) == {(6.5, 6.5)}


@pytest.mark.parametrize('case, why', [
    ('memory', 'h3 would keep 44 MiB free with the VMs of h1 + h2, below the headroom of 128 MiB'),
    ('anti_affinity', 'a (h1), b (h2) of anti-affinity group web would all go to h3'),
    ('unplaceable', 'b cannot move with h1 out too (no host has room)'),
    ('not_planned', 'h2 was not planned against the hosts outside the step'),
    ('cpu', 'the CPU of b runs only on h1, h2'),
])
def test_a_step_whose_hosts_do_not_fit_together_is_taken_one_host_at_a_time_saying_why(case, why):
    free = 300 if case == 'memory' else 1000
    h2_batch = {'unplaceable': bplan([], {'h3': free}, left={'b': 'no host has room'}),
                'not_planned': None}.get(case, bplan([('b', 'h3')], {'h3': free}))
    hp = [{'name': 'h1', 'record': {}, 'plan': plan([('a', 'h2')]), 'batch_plan': bplan([('a', 'h3')], {'h3': free})},
          {'name': 'h2', 'record': {}, 'plan': plan([('b', 'h1')]), 'batch_plan': h2_batch},
          {'name': 'h3', 'record': {}, 'plan': plan([('c', 'h1')])}]
    cpu = {'domains': [{'name': 'b', 'host': 'h2', 'active': True, 'can_run_on': ['h1', 'h2']}]} if case == 'cpu' else None
    cp = R.cluster_plan(hp, ['h1', 'h2', 'h3'], batch=3 if case == 'not_planned' else 2,
                        anti_affinity={'web': ['a', 'b']} if case == 'anti_affinity' else None, cpu=cpu)
    assert cp['batches'][:2] == [['h1'], ['h2']], cp['batches']
    assert why in cp['batch_notes'][0] and cp['batch_notes'][0].endswith(': one at a time'), cp['batch_notes']
    # one at a time, each host drains by its N+1 plan; nothing is refused for it
    assert cp['hosts'][0]['moves'][0]['destination'] == 'h2' and cp['unplaceable'] == {}
    assert '  ' + cp['batch_notes'][0] in cp['lines']


def test_a_host_left_half_done_goes_first_and_alone():
    recs = {'h2': {'state': 'maintenance'}, 'h4': {'state': 'done'}}
    assert R.candidate_batches(['h1', 'h2', 'h3', 'h4', 'h5'], recs, 2) == [['h2'], ['h1', 'h3'], ['h5']]
    assert R.candidate_batches(['h1', 'h2'], {}, 0) == [['h1'], ['h2']]


def test_a_host_left_out_leaves_its_step_to_the_others_with_the_plans_made_for_that_step():
    # h1 cannot be emptied (skip): its step-mate h2 keeps its step (planned with h1 and h2 out), h3 + h4 theirs
    hp = [{'name': 'h1', 'record': {}, 'plan': plan(left={'big': 'no room'}), 'batch_plan': bplan([], {}, left={'big': 'x'})},
          {'name': 'h2', 'record': {}, 'plan': plan([('b', 'h1')]), 'batch_plan': bplan([('b', 'h4')], {'h4': 1000})},
          {'name': 'h3', 'record': {}, 'plan': plan([('c', 'h1')]), 'batch_plan': bplan([('c', 'h1')], {'h1': 1000})},
          {'name': 'h4', 'record': {}, 'plan': plan([('d', 'h1')]), 'batch_plan': bplan([('d', 'h2')], {'h2': 1000})}]
    cp = R.cluster_plan(hp, ['h1', 'h2', 'h3', 'h4'], batch=2)
    assert cp['batches'] == [['h2'], ['h3', 'h4']] and list(cp['unplaceable']) == ['h1']
    assert [h['plan_kind'] for h in cp['hosts'][1:]] == ['single', 'batch', 'batch']


def history(*runs):
    """A host's run records: RUNS [(started_at, {phase: seconds}, predicted)]."""
    out = []
    for i, (t0, took, pred) in enumerate(runs):
        phases, t = {}, float(t0)
        for ph in ('drain', 'maintenance', 'gate', 'return'):
            if ph in took:
                phases[ph] = {'start': t, 'end': t + took[ph]}
                t += took[ph]
        out.append({'run_id': 'r%d' % i, 'group': 'g', 'state': 'done', 'started_at': t0, 'phases': phases,
                    'predicted': pred or {}})
    return out


def test_maintenance_and_gate_are_learned_per_host_and_the_report_sets_each_phase_against_its_prediction():
    """Issue 23: a run predicted 300 s of maintenance for every host even once every maintenance was measured. Each
    host's own earlier runs give its maintenance and gate (the median of the last three; maintained in place apart),
    and the report prints predicted against actual per host and phase, with the median error of each phase."""
    h1 = history((100, {'drain': 5, 'maintenance': 40, 'gate': 3, 'return': 5}, None),
                 (900, {'drain': 5, 'maintenance': 50, 'gate': 5, 'return': 5}, None),
                 (1900, {'maintenance': 7, 'gate': 2}, {'in_place': True}))
    learned = R.learned_phases(h1)
    assert learned['maintenance_s'] == 45.0 and learned['gate_s'] == 3.0 and learned['maintenance_in_place_s'] == 7.0
    assert learned['samples'] == {'maintenance': 2, 'maintenance_in_place': 1, 'gate': 3}
    # the last three by when they ran, whatever order the records come in
    seq = history(*[(t, {'maintenance': m}, None) for t, m in ((100, 10), (200, 20), (300, 30), (400, 100))])
    assert R.learned_phases(list(reversed(seq)))['maintenance_s'] == 30.0
    # a maintenance that failed is no measure of one
    failed = history((2900, {'maintenance': 900}, None))[0]
    failed.update(state='failed', failed_phase='maintenance')
    assert R.learned_phases(h1 + [failed])['maintenance_s'] == 45.0
    hp = [{'name': 'h1', 'record': {}, 'plan': plan([('a', 'h2')], predicted=3.0), 'history': h1},
          {'name': 'h2', 'record': {}, 'plan': plan([('b', 'h1')], predicted=3.0)}]
    cp = R.cluster_plan(hp, ['h1', 'h2'], expected_s=300)
    by = dict((h['name'], h['predicted']) for h in cp['hosts'])
    assert by['h1']['maintenance_s'] == 45.0 and by['h1']['gate_s'] == 3.0 and by['h1']['total_s'] == 54.0
    assert by['h1']['learned'] == ['gate_s', 'maintenance_s']
    assert by['h2']['maintenance_s'] == 300.0 and by['h2']['learned'] == [] and cp['predicted_total_s'] == 360.0
    assert any('predicted drain 3.0 s, maintenance 45.0 s (learned), gate 3.0 s (learned), return 3.0 s' in line
               for line in cp['lines']), cp['lines']
    # the same in a step of two hosts (their plans against the host outside the step)
    hp2 = [dict(hp[0], batch_plan=bplan([('a', 'h3')], {'h3': 1000}, predicted=3.0)),
           dict(hp[1], batch_plan=bplan([('b', 'h3')], {'h3': 1000}, predicted=3.0)),
           {'name': 'h3', 'record': {}, 'plan': plan([('c', 'h1')], predicted=3.0), 'batch_plan': None}]
    step = dict((h['name'], h) for h in R.cluster_plan(hp2, ['h1', 'h2', 'h3'], expected_s=300, batch=2)['hosts'])
    assert step['h1']['plan_kind'] == 'batch' and step['h1']['predicted']['maintenance_s'] == 45.0
    assert step['h1']['predicted']['learned'] == ['gate_s', 'maintenance_s']
    assert step['h2']['predicted']['maintenance_s'] == 300.0
    # the report: each phase of each host against its prediction, and the median error of each phase
    done = history((5000, {'drain': 4, 'maintenance': 60, 'gate': 3, 'return': 4}, by['h1']))[0]
    other = history((5100, {'drain': 6, 'maintenance': 200, 'gate': 2, 'return': 3}, by['h2']))[0]
    done['name'], other['name'] = 'h1', 'h2'
    rep = R.report([done, other], run_id='r')
    assert rep['phase_errors']['h1']['maintenance'] == {'predicted_s': 45.0, 'actual_s': 60.0, 'error_pct': 25.0,
                                                        'learned': True}
    assert rep['phase_errors']['h2']['maintenance']['error_pct'] == 50.0
    assert rep['phase_errors']['h1']['drain'] == {'predicted_s': 3.0, 'actual_s': 4.0, 'error_pct': 25.0,
                                                  'calibrated': False}
    # (h2's gate had no prediction - none learned yet -: no measure of one)
    assert 'gate' not in rep['phase_errors']['h2'] and rep['phase_errors']['h1']['gate']['error_pct'] == 0.0
    assert rep['median_phase_error_pct'] == {'drain': 37.5, 'maintenance': 37.5, 'gate': 0.0, 'return': 12.5}
    assert 'predicted against actual, per phase (median error): drain 37 %, maintenance 37 %, gate 0 %, return 12 %' \
        in rep['table'], rep['table']

"""Predictions calibrated from measured drains."""
from ansible_collections.vmmigration.libvirt.plugins.module_utils.decide import calibration as C
from ansible_collections.vmmigration.libvirt.plugins.module_utils.decide import planner as P


def drain(moves, wall_s, method='live'):
    """An evacuate result: MOVES [(name, memory_mib, start_s, total_s)]."""
    return {'plan': {'moves': [{'name': n, 'memory_mib': m} for n, m, _s, _t in moves]}, 'wall_s': wall_s,
            'results': [{'name': n, 'state': 'migrated', 'method': method, 'start_s': s, 'end_s': s + t,
                         'total_time_s': t, 'bytes_transferred': m * 1048576} for n, m, s, t in moves]}


def test_a_line_through_moves_of_different_sizes_gives_the_rate_and_the_cost_of_a_move():
    # truth: 1.5 s a move + 200 MiB/s
    moves = [('a', 100, 0.0, 2.0), ('b', 400, 0.0, 3.5), ('c', 1000, 2.0, 6.5), ('d', 200, 3.5, 2.5)]
    cal = C.update({}, drain(moves, wall_s=11.0), role_wall_s=31.0)
    assert (cal['overhead_s'], cal['rate_mibps']) == (1.5, 200)
    assert cal['fixed_s'] == 2.5 and cal['role_overhead_s'] == 20.0     # 11 - (8.5 - 0.0); 31 - 11
    # the next plan predicts these moves from what was measured: each move within 1 %
    opts = C.plan_options(cal, rate_mibps=1000)
    everywhere = {'alone': 20.0, 'alongside': 20.0}     # (one sample, of no known phase nor concurrency: any)
    assert opts == {'rate_mibps': 200, 'overhead_s': 1.5, 'fixed_s': 2.5, 'role_overhead_s': 20.0, 'calibrated': True,
                    'move_times': {'a': 2.0, 'b': 3.5, 'c': 6.5, 'd': 2.5}, 'kind': 'any',
                    'role_overheads': {'drain': everywhere, 'return': everywhere}}
    timeline, _span = P.schedule([{'name': n, 'source': 's', 'dest': 'd%d' % i, 'memory_mib': m}
                                  for i, (n, m, _s, _t) in enumerate(moves)], opts['rate_mibps'], 4, 4, 4,
                                 overhead_s=opts['overhead_s'])
    took = dict((n, t) for n, _m, _s, t in moves)
    assert all(abs((t['end_s'] - t['start_s']) - took[t['name']]) < 0.01 * took[t['name']] for t in timeline)


def test_moves_of_one_size_keep_the_configured_rate_and_measure_the_cost_beyond_it():
    cal = C.update({}, drain([('a', 96, 0.5, 3.9), ('b', 96, 0.6, 4.1)], wall_s=6.0), default_rate=1000)
    assert cal['rate_mibps'] == 1000 and abs(cal['overhead_s'] - (4.0 - 0.096)) < 0.01
    nothing = {'alone': None, 'alongside': None}
    assert C.plan_options({}, 1000) == {'rate_mibps': 1000, 'overhead_s': 2.0, 'fixed_s': 0.0,
                                        'role_overhead_s': 0.0, 'move_times': {}, 'calibrated': False, 'kind': 'any',
                                        'role_overheads': {'drain': nothing, 'return': nothing}}


def test_each_phase_and_concurrency_has_its_own_role_overhead_and_the_nearest_measured_stands_in():
    """Measured in the lab (rolling_maintenance, batch 2, one 96 MiB VM a host): the role cost about 5 s beyond a
    drain run beside another drain and 3 s beyond a return beside another; 2.9 s beyond a drain alone. One median
    over all of them (3.2 s) put a step's drains 2-3 s short. Each phase and concurrency is now its own; a return
    alone, not measured yet, is taken from the returns of any concurrency."""
    cal = {}
    for wall, role, alongside, phase in ((3.56, 8.30, 1, 'drain'), (2.81, 8.30, 1, 'drain'),
                                         (2.52, 5.12, 1, 'return'), (2.78, 6.30, 1, 'return'),
                                         (2.30, 5.16, 0, 'drain'), (2.78, 5.66, 0, 'drain')):
        cal = C.update(cal, drain([('a', 96, 0.0, wall - 0.1)], wall_s=wall), role_wall_s=role,
                       drains_alongside=alongside, phase=phase)
    assert [d['phase'] for d in cal['drains']] == ['drain', 'drain', 'return', 'return', 'drain', 'drain']
    got = C.plan_options(cal, 1000, drains_alongside=1)['role_overheads']
    assert got == {'drain': {'alongside': 5.115, 'alone': 2.87},      # (4.74 + 5.49) / 2; (2.86 + 2.88) / 2
                   'return': {'alongside': 3.06, 'alone': 3.06}}     # (2.60 + 3.52) / 2: the returns', any concurrency
    assert C.role_overhead(cal['drains']) == cal['role_overhead_s'] == 3.2     # all six: what the plan used before
    # a sample kept before samples kept their phase stands in for a phase none of that phase was measured for, and
    # never outvotes one of the phase (after an upgrade the old ones are most of a host's last 60)
    old = [{'wall_s': 2.0, 'role_wall_s': 6.0, 'drains_alongside': 0}]
    assert C.role_overheads(old) == {'drain': {'alone': 4.0, 'alongside': 4.0}, 'return': {'alone': 4.0, 'alongside': 4.0}}
    mixed = old * 5 + [{'wall_s': 2.0, 'role_wall_s': 4.5, 'drains_alongside': 0, 'phase': 'return'}]
    assert C.role_overheads(mixed) == {'drain': {'alone': 4.0, 'alongside': 4.0}, 'return': {'alone': 2.5, 'alongside': 2.5}}
    assert C.role_overhead([{'wall_s': 2.0, 'role_wall_s': None}], 'drain', 'alone') is None
    # the merged calibration of several hosts keeps each sample's phase
    assert C.merge([cal, {}])['drains'][2]['phase'] == 'return'


def test_only_completed_live_moves_count_and_old_samples_go():
    r = drain([('a', 100, 0.0, 2.0)], wall_s=3.0)
    r['results'].append({'name': 'x', 'state': 'rolled_back', 'method': 'live', 'start_s': 0, 'end_s': 9,
                         'total_time_s': 9.0})
    r['results'].append({'name': 'y', 'state': 'migrated', 'method': 'cold', 'start_s': 0, 'end_s': 30,
                         'total_time_s': 30.0})
    assert [s['memory_mib'] for s in C.move_samples(r)] == [100.0]
    cal = {}
    for _round in range(C.KEEP_MOVES + 5):
        cal = C.update(cal, drain([('a', 100, 0.0, 2.0)], wall_s=3.0))
    assert len(cal['moves']) == C.KEEP_MOVES and len(cal['drains']) == C.KEEP
    # a drain that moved nothing adds no drain sample
    assert C.update(cal, {'results': [], 'wall_s': 1.0})['drains'] == cal['drains']


def test_a_vm_that_rewrites_its_memory_is_predicted_by_its_own_pace_and_goes_first():
    """Eight 128 MiB VMs, two of them rewriting memory under a 16 MiB/s cap: by size all take 8 s; measured, the
    two take 30 s. The next plan predicts each VM by its own last moves (the median of its last three), starts the
    slow ones first, and its makespan is the schedule of what was measured."""
    from ansible_collections.vmmigration.libvirt.plugins.module_utils.decide import planner as P
    took = dict(('vm%d' % i, 30.0 if i < 2 else 8.5) for i in range(8))
    cal = {}
    for _round in range(2):
        cal = C.update(cal, drain([(n, 128, 0.0, t) for n, t in sorted(took.items())], wall_s=60.0), default_rate=16)
    opts = C.plan_options(cal, 16)
    assert opts['move_times'] == took
    # the size model alone: every move alike (its overhead is the median's: 0.5 s beyond 8 s)
    assert abs(opts['overhead_s'] - 0.5) < 0.01 and opts['rate_mibps'] == 16
    moves = [{'name': n, 'source': 's', 'dest': 'd%d' % (i % 2), 'memory_mib': 128} for i, n in enumerate(sorted(took))]
    by_size, span_size = P.schedule(moves, 16, 2, 1, 4, overhead_s=opts['overhead_s'])
    by_vm, span_vm = P.schedule(moves, 16, 2, 1, 4, overhead_s=opts['overhead_s'], durations=opts['move_times'])
    assert span_size == 34.0                       # 4 rounds of 8.5 s: what the plan said before
    assert [t['name'] for t in by_vm[:2]] == ['vm0', 'vm1'] and span_vm == 30.0 + 3 * 8.5
    # the last three moves count: a VM that calmed down is predicted by its recent pace
    for _round in range(3):
        cal = C.update(cal, drain([('vm0', 128, 0.0, 9.0)], wall_s=10.0), default_rate=16)
    assert C.plan_options(cal, 16)['move_times']['vm0'] == 9.0


def test_samples_keep_their_concurrency_and_a_prediction_uses_those_of_its_own_kind():
    """Issue 23: moves measured while other drains ran (a rolling step of several hosts) took longer than a lone
    drain's; each sample keeps the drains and the moves that ran alongside it, and a plan predicts a lone drain from
    lone samples, a step's drain from samples taken alongside others - all samples only when none of its kind."""
    alone = drain([('a', 512, 0.0, 6.0), ('b', 512, 0.0, 6.0), ('c', 512, 6.0, 6.0)], wall_s=13.0)
    busy = drain([('a', 512, 0.0, 18.0), ('b', 512, 0.0, 18.0)], wall_s=19.0)
    cal = C.update(C.update({}, alone, default_rate=512, drains_alongside=0), busy, default_rate=512,
                   drains_alongside=2)
    by = dict(((m['name'], m['drains_alongside']), m) for m in cal['moves'])
    assert by[('a', 0)]['moves_alongside'] == 1 and by[('c', 0)]['moves_alongside'] == 0
    # a move checked and planned ahead of its slot ran alongside the others only from its slot on
    ahead = [{'name': 'a', 'start_s': 0.0, 'slot_s': 0.0, 'end_s': 6.0}, {'name': 'c', 'start_s': 1.0, 'slot_s': 6.0,
                                                                          'end_s': 12.0}]
    assert [C.moves_alongside(ahead, r) for r in ahead] == [0, 0]
    started = [dict((k, v) for k, v in r.items() if k != 'slot_s') for r in ahead]
    assert [C.moves_alongside(started, r) for r in started] == [1, 1]   # (no slot_s: counted from their starts)
    # one that failed before it got a slot (slot_s None) never used the link
    assert C.moves_alongside(ahead + [{'name': 'x', 'start_s': 0.5, 'slot_s': None, 'end_s': 5.0}], ahead[0]) == 0
    assert [d['drains_alongside'] for d in cal['drains']] == [0, 2]
    lone, step, every = (C.plan_options(cal, 512, drains_alongside=0), C.plan_options(cal, 512, drains_alongside=1),
                         C.plan_options(cal, 512))
    assert lone['kind'] == 'alone' and lone['move_times']['a'] == 6.0 and lone['overhead_s'] == 5.0
    assert step['kind'] == 'alongside' and step['move_times']['a'] == 18.0 and step['overhead_s'] == 17.0
    assert every['kind'] == 'any' and every['move_times']['a'] == 12.0
    assert lone['fixed_s'] == 1.0 and step['fixed_s'] == 1.0
    # none of its kind yet: every sample (older samples, of unknown concurrency, count as either)
    only_alone = C.update({}, alone, default_rate=512, drains_alongside=0)
    assert C.plan_options(only_alone, 512, drains_alongside=3)['move_times']['a'] == 6.0
    old = {'moves': [dict(m, drains_alongside=None) for m in only_alone['moves']], 'samples': 3}
    assert C.plan_options(C.update(old, busy, default_rate=512, drains_alongside=1), 512,
                          drains_alongside=0)['move_times']['a'] == 6.0

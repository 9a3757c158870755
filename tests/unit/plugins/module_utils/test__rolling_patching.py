"""Monthly patching in the cluster plan and report (pure): hosts whose need check says no drain is needed are
skipped or maintained in place, VMs that cannot move (or that the operator lists) are stopped in place with a
predicted downtime, and said loudly; the records keep what stopped and what started again, and the report gives
each stopped VM's real downtime."""
import pytest

from ansible_collections.vmmigration.libvirt.plugins.module_utils.orchestration import rolling as R
from ansible_collections.vmmigration.libvirt.plugins.module_utils.orchestration import run_record as RR


def plan(moves=(), left=None, predicted=4.0):
    return {'moves': [{'name': n, 'destination': d, 'method': 'live', 'memory_mib': 256} for n, d in moves],
            'left': dict(left or {}), 'cold_only': [], 'predicted_total_s': predicted}


def hosts(need_h2='none'):
    return [{'name': 'h1', 'record': {}, 'plan': plan([('web1', 'h3')], left={'db1': 'only a cold migration could move it'})},
            {'name': 'h2', 'record': {}, 'plan': plan([('web2', 'h3')]), 'need': {'need': need_h2, 'why': 'no reboot required'}},
            {'name': 'h3', 'record': {}, 'plan': plan([('web3', 'h1')])}]


def by_name(cp):
    return dict((h['name'], h) for h in cp['hosts'])


def test_a_host_that_needs_no_drain_is_skipped_by_default_and_said_why():
    cp = R.cluster_plan(hosts(), ['h1', 'h2', 'h3'], unplaceable='stop_in_place', expected_s=60)
    assert cp['order'] == ['h1', 'h3'] and cp['skipped'] == {'h2': 'no reboot required'}
    assert by_name(cp)['h2']['status'] == 'skipped' and by_name(cp)['h2']['moves'] == []
    assert '  h2: SKIPPED, not drained nor maintained - no reboot required' in cp['lines']
    assert '  by their need checks: drained h1, h3; maintained in place none; skipped h2' in cp['lines']


def test_in_place_maintains_it_alone_with_its_vms_running_and_moves_nothing_off_it():
    cp = R.cluster_plan(hosts(), ['h1', 'h2', 'h3'], unplaceable='stop_in_place', expected_s=60, not_needed='in_place',
                        batch=3)
    h2 = by_name(cp)['h2']
    assert h2['status'] == 'in_place' and h2['moves'] == [] and h2['running'] == ['web2']
    assert h2['predicted'] == {'drain_s': 0.0, 'maintenance_s': 60.0, 'gate_s': 0.0, 'return_s': 0.0, 'total_s': 60.0,
                               'in_place': True, 'calibrated': False, 'learned': []}
    assert ['h2'] in cp['batches'] and cp['in_place'] == {'h2': ['web2']}
    assert any(line.startswith('  h2: MAINTAINED IN PLACE, not drained (no reboot required)') and 'web2' in line
               for line in cp['lines'])
    assert any(line.startswith('h2: maintained in place with web2 running on it') for line in cp['downtime_lines'])
    assert cp['downtime_vms'] == ['db1 on h1', 'web2 on h2']


def test_a_host_half_done_is_taken_up_again_whatever_its_check_says():
    hp = hosts()
    hp[1]['record'] = {'state': 'failed'}
    cp = R.cluster_plan(hp, ['h1', 'h2', 'h3'], unplaceable='stop_in_place')
    assert by_name(cp)['h2']['status'] == 'resume' and cp['order'][0] == 'h2'


def test_vms_that_cannot_move_are_stopped_in_place_with_a_predicted_downtime():
    cp = R.cluster_plan(hosts('drain'), ['h1', 'h2', 'h3'], unplaceable='stop_in_place', expected_s=60, stop_start_s=30)
    h1 = by_name(cp)['h1']
    assert h1['status'] == 'to_do' and h1['unplaceable'] == {} and cp['unplaceable'] == {}
    assert h1['stop'] == {'db1': 'cannot move: only a cold migration could move it'}
    assert h1['predicted']['downtime_s'] == 90.0 and h1['predicted']['total_s'] == 4.0 + 60 + 4.0 + 30
    assert cp['stop'] == {'h1': ['db1']}
    assert ('    db1 STOPPED IN PLACE on h1 - cannot move: only a cold migration could move it; started again after its '
            'gate, predicted down 90.0 s') in cp['lines']
    assert cp['downtime_lines'] == ['db1 on h1: stopped in place (cannot move: only a cold migration could move it), '
                                    'predicted down 90.0 s']


def test_without_the_policy_the_same_vm_makes_its_host_unplaceable():
    cp = R.cluster_plan(hosts('drain'), ['h1', 'h2', 'h3'])
    assert cp['unplaceable'] == {'h1': {'db1': 'only a cold migration could move it'}} and cp['stop'] == {}
    assert cp['downtime_lines'] == []


def test_a_listed_vm_is_stopped_in_place_whatever_the_policy_for_the_others():
    hp = hosts('drain')
    hp[2]['plan']['left'] = {'lic3': 'excluded from this drain (exclude_domains): it stays on this host'}
    cp = R.cluster_plan(hp, ['h1', 'h2', 'h3'], stop_vms=['lic3'], unplaceable='skip')
    assert cp['stop'] == {'h3': ['lic3']} and by_name(cp)['h3']['stop']['lic3'].startswith('listed to stop in place')
    # (db1 still cannot move, and the policy skips its host)
    assert cp['unplaceable'] == {'h1': {'db1': 'only a cold migration could move it'}} and 'h1' not in cp['order']


def test_vms_stopped_in_place_are_no_conflict_for_a_step():
    hp = hosts('drain')
    for h in hp:
        h['batch_plan'] = dict(h['plan'], free_after_mib={'h3': 8192}, headroom_mib=128)
    hp[0]['batch_plan']['moves'] = [{'name': 'web1', 'destination': 'h3', 'method': 'live', 'memory_mib': 256}]
    hp[1]['batch_plan']['moves'] = [{'name': 'web2', 'destination': 'h3', 'method': 'live', 'memory_mib': 256}]
    cp = R.cluster_plan(hp, ['h1', 'h2', 'h3'], unplaceable='stop_in_place', batch=2)
    assert cp['batches'][0] == ['h1', 'h2'], cp['batch_notes']
    cp = R.cluster_plan(hp, ['h1', 'h2', 'h3'], unplaceable='skip', batch=2)
    assert cp['batches'][0] == ['h2']


def test_the_records_keep_what_stopped_and_what_started_again():
    r = RR.new_record('g', 'run1', 'h1', ['h1'], 1.0)
    r = RR.add_power(r, 'stopped', [{'name': 'db1', 'state': 'stopped', 'how': 'clean', 'stopped_at': 100.0},
                                    {'name': 'old', 'state': 'already_stopped'}])
    assert [x['name'] for x in r['stopped']] == ['db1'] and RR.still_stopped(r) == ['db1']
    assert RR.downtimes(r) == [{'name': 'db1', 'stopped_at': 100.0, 'back_at': None, 'how': 'clean',
                                'downtime_s': None}]
    r = RR.add_power(r, 'started', [{'name': 'db1', 'state': 'started', 'started_at': 160.0, 'running_at': 161.0,
                                     'answered_at': 170.5}])
    assert RR.still_stopped(r) == [] and RR.downtimes(r)[0]['downtime_s'] == 70.5
    # (found running by a later attempt - started then, its addresses silent: back from when it was seen running)
    r2 = RR.add_power(RR.add_power(RR.new_record('g', 'run1', 'h1', ['h1'], 1.0), 'stopped', [
        {'name': 'db1', 'state': 'stopped', 'how': 'clean', 'stopped_at': 100.0}]), 'started', [
        {'name': 'db1', 'state': 'failed', 'started_at': 150.0, 'running_at': 151.0}])
    assert RR.still_stopped(r2) == ['db1']
    r2 = RR.add_power(r2, 'started', [{'name': 'db1', 'state': 'already_running', 'running_at': 400.0}])
    assert RR.still_stopped(r2) == [] and RR.downtimes(r2)[0]['downtime_s'] == 300.0
    # (stopped again by a later attempt: down again until that one's start)
    r = RR.add_power(r, 'stopped', [{'name': 'db1', 'state': 'stopped', 'how': 'forced', 'stopped_at': 300.0}])
    assert RR.still_stopped(r) == ['db1']
    with pytest.raises(RR.RecordError):
        RR.add_power(r, 'paused', [])
    assert 'VMs stopped in place, not started again yet: db1 on h1' in RR._describe('run1', {'h1': r})


def test_a_vm_about_to_stop_counts_as_stopped_until_a_start_says_it_is_back():
    """(the intent is recorded before the stop is asked: a stop cut short - a lost connection, a lost controller -
    never leaves a VM down that no record names)"""
    r = RR.add_stopping(RR.new_record('g', 'run1', 'h1', ['h1'], 1.0), ['db1', 'db2'], 100.0)
    assert RR.still_stopped(r) == ['db1', 'db2'] and RR.downtimes(r) == []
    r = RR.add_power(r, 'stopped', [{'name': 'db1', 'state': 'stopped', 'how': 'clean', 'stopped_at': 101.0},
                                    {'name': 'db2', 'state': 'started_again', 'started_at': 130.0, 'running_at': 130.0}])
    assert RR.still_stopped(r) == ['db1'] and [d['name'] for d in RR.downtimes(r)] == ['db1']
    # (a stop refused, or a guest that would not stop: still running - not a VM down)
    r3 = RR.add_stopping(RR.new_record('g', 'run1', 'h1', ['h1'], 1.0), ['a', 'b'], 100.0)
    r3 = RR.add_power(r3, 'stopped', [{'name': 'a', 'state': 'not_stopped'}, {'name': 'b', 'state': 'did_not_stop'}],
                      at=105.0)
    assert RR.still_stopped(r3) == []
    # (gone down with the host: a restart during a maintenance in place)
    r = RR.add_stopping(r, ['web'], 200.0, how='host_restarted')
    assert RR.still_stopped(r) == ['db1', 'web'] and RR.downtimes(r)[-1]['how'] == 'host_restarted'


def test_the_stop_and_start_are_phases_of_the_record():
    r = RR.new_record('g', 'run1', 'h1', ['h1'], 1.0)
    for phase, mark, at in (('drain', 'start', 1), ('drain', 'end', 2), ('stop', 'start', 2), ('stop', 'end', 3),
                            ('start', 'start', 9), ('start', 'end', 12)):
        r = RR.mark(r, phase, mark, float(at))
    assert r['phases']['stop'] == {'start': 2.0, 'end': 3.0} and r['state'] == 'start'


def test_the_report_gives_each_stopped_vms_downtime_against_its_prediction():
    r = RR.new_record('g', 'run1', 'h1', ['h1'], 1.0)
    r['name'] = 'h1'
    r['predicted'] = {'total_s': 90.0, 'downtime_s': 90.0}
    for phase, a, b in (('drain', 10, 14), ('stop', 14, 18), ('maintenance', 18, 60), ('gate', 60, 62),
                        ('start', 62, 75)):
        r = RR.mark(RR.mark(r, phase, 'start', float(a)), phase, 'end', float(b))
    r = RR.add_power(r, 'stopped', [{'name': 'db1', 'state': 'stopped', 'how': 'clean', 'stopped_at': 17.0}])
    rep = R.report([r], 'run1')
    assert rep['table'][0].split() == ['HOST', 'STATE', 'DRAIN', 'STOP', 'MAINTENANCE', 'GATE', 'START', 'RETURN',
                                       'TOTAL', 'PREDICTED', 'VMS']
    assert '  db1: stopped in place on h1 (clean shutdown), NOT STARTED AGAIN YET (a resumed run starts it)' in rep['table']
    r = RR.add_power(r, 'started', [{'name': 'db1', 'state': 'started', 'started_at': 62.0, 'running_at': 63.0,
                                     'answered_at': 74.0}])
    rep = R.report([r], 'run1')
    assert '  db1: stopped in place on h1 (clean shutdown), back 57.0 s later (predicted 90.0 s)' in rep['table']
    assert rep['stopped_in_place']['db1']['downtime_s'] == 57.0 and rep['stopped_in_place']['db1']['host'] == 'h1'
    assert 'db1 stopped in place on h1: down 57.0 s' in rep['html']


def test_a_run_without_stops_keeps_its_four_phase_columns():
    r = RR.new_record('g', 'run1', 'h1', ['h1'], 1.0)
    r['name'] = 'h1'
    r = RR.mark(RR.mark(r, 'drain', 'start', 1.0), 'drain', 'end', 2.0)
    assert R.report([r], 'run1')['table'][0].split()[2:6] == ['DRAIN', 'MAINTENANCE', 'GATE', 'RETURN']


def test_abandoning_a_run_says_the_vms_it_leaves_stopped():
    r = RR.add_stopping(dict(RR.new_record('g', 'old', 'h1', ['h1'], 1.0), state='failed'), ['db1'], 100.0)
    out = RR.choose_run({'h1': [r]}, 'g', abandon='old', now=0)
    assert out['mode'] == 'new' and 'run old abandoned as it stands: old (h1 failed); VMs stopped in place, not ' \
        'started again yet: db1 on h1' in out['message']


def test_a_host_that_failed_in_its_start_phase_resumes_there():
    """(its drain, stop, maintenance and gate are done: the resumed attempt starts again what is down, nothing more)"""
    hp = hosts('drain')
    rec = RR.add_stopping(RR.new_record('g', 'r', 'h1', ['h1'], 1.0), ['db1'], 10.0)
    hp[0]['record'] = dict(rec, state='failed', failed_phase='start')
    cp = R.cluster_plan(hp, ['h1', 'h2', 'h3'], unplaceable='stop_in_place', expected_s=60)
    h1 = by_name(cp)['h1']
    assert h1['status'] == 'resume' and h1['stop'] == {} and h1['moves'] == [] and cp['order'][0] == 'h1'
    assert 'h1' not in cp['stop'] and h1['predicted']['maintenance_s'] == 0.0
    assert any(line.startswith('  h1 (half done by an earlier run: first): resumes at its start phase - starts again '
                               'db1, then returns its VMs') for line in cp['lines'])

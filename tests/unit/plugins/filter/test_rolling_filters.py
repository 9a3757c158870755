"""The role-facing filters over the pure functions: inputs checked, Ansible's containers read as plain data."""
import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.vmmigration.libvirt.plugins.filter.calibration import calibrate, calibrated_plan
from ansible_collections.vmmigration.libvirt.plugins.filter.rolling import rolling_batches, rolling_plan, rolling_report


def test_rolling_filters_pass_their_inputs_through_and_refuse_what_is_not_theirs():
    move = {'name': 'a', 'destination': 'h2', 'method': 'live', 'memory_mib': 64}
    hp = [{'name': 'h1', 'record': {}, 'plan': {'moves': [move], 'left': {}, 'predicted_total_s': 3.0}},
          {'name': 'h2', 'record': {'state': 'done'}, 'plan': None}]
    plan = rolling_plan(hp, ('h1', 'h2'), expected_s='5', role_overhead_s=None)
    assert plan['order'] == ['h1'] and plan['hosts'][0]['predicted']['total_s'] == 11.0
    cpu = {'baseline': {'model': 'Haswell', 'vendor': 'Intel'},
           'domains': [{'name': 'a', 'host': 'h1', 'active': True, 'can_run_on': ['h1'], 'stranded': True, 'why': 'avx'}]}
    assert rolling_plan(hp, ['h1', 'h2'], cpu=cpu)['unplaceable'] == {'h1': {'a': 'its CPU runs only on h1 - avx'}}
    rep = rolling_report([{'name': 'h2', 'state': 'done'}, {'name': 'h1', 'state': 'done'}], 'r', ['h1', 'h2'])
    assert [h['name'] for h in rep['hosts']] == ['h1', 'h2'] and rep['state'] == 'done'
    assert rolling_batches({'h2': {'state': 'drain'}}, ('h1', 'h2', 'h3'), '2') == [['h2'], ['h1', 'h3']]
    assert rolling_plan(hp, ['h1', 'h2'], batch='2', anti_affinity={})['serial'] == [1]
    with pytest.raises(AnsibleFilterError, match='batch must be a whole number of hosts, at least 1'):
        rolling_plan(hp, ['h1', 'h2'], batch=0)
    # the role's cost per phase and concurrency, as calibrated_plan returns it (null: not measured yet)
    both = {'drain': {'alone': 1.5, 'alongside': None}, 'return': {'alone': 2, 'alongside': 4.0}}
    assert rolling_plan(hp, ['h1', 'h2'], expected_s=5, role_overheads=both)['hosts'][0]['predicted']['total_s'] == 14.5
    for bad in ({'drain': 3.0}, {'stay': {'alone': 1.0}}, {'drain': {'alone': -1.0}}, {'return': {'alone': 'x'}}, [1]):
        with pytest.raises(AnsibleFilterError, match=r'role_overheads is \{drain, return'):
            rolling_plan(hp, ['h1', 'h2'], role_overheads=bad)
    with pytest.raises(AnsibleFilterError, match='rolling_batches expects'):
        rolling_batches([], ['h1'])
    with pytest.raises(AnsibleFilterError, match='rolling_plan expects a list'):
        rolling_plan({'name': 'h1'}, ['h1'])
    with pytest.raises(AnsibleFilterError, match='rolling_report expects a list'):
        rolling_report([{'state': 'done'}])


def test_calibration_filters():
    report = {'plan': {'moves': [{'name': 'a', 'memory_mib': 100}]}, 'wall_s': 3.0,
              'results': [{'name': 'a', 'state': 'migrated', 'method': 'live', 'start_s': 0.0, 'end_s': 2.0,
                           'total_time_s': 2.0}]}
    cal = calibrate({}, report, 13.0)
    assert cal['samples'] == 1 and cal['role_overhead_s'] == 10.0 and cal['updated_at'] > 0
    assert calibrated_plan(cal, 1000)['calibrated'] is True and calibrated_plan({}, 500)['rate_mibps'] == 500
    with pytest.raises(AnsibleFilterError, match='calibrate expects the evacuate module result'):
        calibrate({}, 'text')

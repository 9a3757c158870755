"""A rolling maintenance run's records on the hypervisors: which run a job is, the record's steps, the file."""
import json
import os
import stat

import pytest

from ansible_collections.vmmigration.libvirt.plugins.module_utils.orchestration import run_record as R

G = 'hv'


def rec(host, run_id, state, group=G, created=1.0, drained=(), returned=()):
    r = R.new_record(group, run_id, host, ['h1', 'h2', 'h3'], created)
    r.update(state=state, drained=[dict(name=n, destination=d, state='migrated') for n, d in drained],
             returned=[dict(name=n, state='migrated') for n in returned])
    return r


def by_host(*records):
    out = {'h1': [], 'h2': [], 'h3': []}
    for r in records:
        out[r['name']].append(r)
    return out


def test_a_new_run_gets_a_new_id_each_time():
    a = R.choose_run(by_host(), G, now=1796389200)
    assert a['mode'] == 'new' and a['run_id'] == 'hv-20261204T130000Z', a
    done = by_host(rec('h1', a['run_id'], 'done'), rec('h2', a['run_id'], 'done'))
    b = R.choose_run(done, G, now=1796389200 + 30 * 86400)
    # month two: a new run, not the finished one replayed as a no-op
    assert b['mode'] == 'new' and b['run_id'] != a['run_id'], b


def test_an_unfinished_run_blocks_a_new_one_and_says_how_to_resume_or_abandon():
    hosts = by_host(rec('h1', 'r1', 'done', drained=[('vm1', 'h2')], returned=['vm1']),
                    rec('h2', 'r1', 'failed', drained=[('vm2', 'h3')]), rec('h3', 'r1', 'planned'))
    with pytest.raises(R.RecordError) as e:
        R.choose_run(hosts, G)
    msg = str(e.value)
    assert 'run r1 (h1 done, h2 failed, h3 planned)' in msg and 'VMs away from home: vm2 on h3' in msg, msg
    assert 'rolling_maintenance_resume=true' in msg and 'rolling_maintenance_abandon=r1' in msg, msg
    # a new run id given does not get round it
    with pytest.raises(R.RecordError):
        R.choose_run(hosts, G, run_id='r2')
    for asked in ({'resume': True}, {'run_id': 'r1'}):
        got = R.choose_run(hosts, G, **asked)
        assert (got['mode'], got['run_id']) == ('resume', 'r1'), (asked, got)
    after = R.choose_run(hosts, G, abandon='r1', now=0)
    assert after['mode'] == 'new' and after['abandon'] == 'r1', after


def test_resume_is_refused_with_no_unfinished_run_and_a_finished_run_changes_nothing():
    hosts = by_host(rec('h1', 'r1', 'done'), rec('h2', 'r1', 'done'))
    with pytest.raises(R.RecordError) as e:
        R.choose_run(hosts, G, resume=True)
    assert 'no unfinished run of group hv to resume (the last run, r1, is finished)' in str(e.value)
    with pytest.raises(R.RecordError):
        R.choose_run(by_host(), G, resume=True)
    assert R.choose_run(hosts, G, run_id='r1')['mode'] == 'finished'
    # an abandoned run is finished too
    assert R.choose_run(by_host(rec('h1', 'r1', 'abandoned')), G)['mode'] == 'new'


def test_refusals_another_groups_run_several_unfinished_and_bad_ids():
    with pytest.raises(R.RecordError) as e:
        R.choose_run(by_host(rec('h1', 'r1', 'failed', group='other')), G, run_id='r1')
    assert 'run r1 is a run of group other, not of hv' in str(e.value)
    two = by_host(rec('h1', 'r1', 'failed'), rec('h2', 'r2', 'drain'))
    with pytest.raises(R.RecordError) as e:
        R.choose_run(two, G, resume=True)
    assert 'several unfinished runs' in str(e.value)
    assert R.choose_run(two, G, run_id='r2')['mode'] == 'resume'
    for bad in ({'run_id': 'a b'}, {'abandon': 'nope'}, {'abandon': 'r1', 'resume': True}):
        with pytest.raises(R.RecordError):
            R.choose_run(two, G, **bad)


def test_record_steps_attempts_marks_moves_failure():
    r = R.new_record(G, 'r1', 'h2', ['h1', 'h2'], 1.0)
    r = R.begin(r, {'total_s': 9})
    assert r['attempts'] == [] and r['predicted'] == {'total_s': 9}
    r = R.mark(r, 'drain', 'start', 10.0)
    r = R.add_moves(r, 'drained', [{'name': 'vm2', 'destination': 'h1', 'state': 'migrated'}], 10.5)
    r = R.mark(R.mark(r, 'drain', 'end', 12.0), 'maintenance', 'start', 12.0)
    r = R.fail(r, 'boom', 13.0)
    assert r['state'] == 'failed' and r['failed_phase'] == 'maintenance' and r['error'] == 'boom'
    assert r['phases']['maintenance'] == {'start': 12.0, 'end': 13.0, 'failed': True}
    assert R.away(r) == [{'name': 'vm2', 'destination': 'h1'}]
    again = R.begin(r, {'total_s': 5})
    assert again['phases'] == {} and again['error'] is None and again['drained'] == r['drained']
    assert again['attempts'] == [{'phases': r['phases'], 'predicted': {'total_s': 9}, 'moved': 1, 'state': 'failed',
                                  'failed_phase': 'maintenance', 'error': 'boom'}]
    with pytest.raises(R.RecordError):
        R.mark(r, 'reboot', 'start', 1.0)


def test_records_are_written_whole_owner_only_and_bad_ones_refused_by_path(tmp_path):
    d = str(tmp_path / 'state')
    path = R.save(d, R.new_record(G, 'r1', 'h1', ['h1'], 5.0))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    assert [r['run_id'] for r in R.load_all(d)] == ['r1'] and not os.path.exists(path + '.tmp')
    with open(os.path.join(d, 'runs', 'r2.json'), 'w') as f:
        f.write('{"run_id": "r2", "gro')
    with pytest.raises(R.RecordError) as e:
        R.load_all(d)
    assert 'r2.json is corrupt' in str(e.value) and 'move it aside' in str(e.value)
    with open(os.path.join(d, 'runs', 'r2.json'), 'w') as f:
        json.dump(dict(R.new_record(G, 'r2', 'h1', ['h1'], 6.0), version=R.VERSION + 1), f)
    with pytest.raises(R.RecordError) as e:
        R.load_all(d)
    assert 'written by a newer vmmigration.libvirt' in str(e.value)
    assert R.load_all(str(tmp_path / 'none')) == []


def test_a_host_recorded_as_planned_has_not_started():
    from ansible_collections.vmmigration.libvirt.plugins.module_utils.orchestration import rolling as ROLLING
    records = {'h1': {'state': 'done'}, 'h2': {'state': 'planned'}, 'h3': {'state': 'gate'}, 'h4': {}}
    assert ROLLING.candidate_batches(['h1', 'h2', 'h3', 'h4'], records, 2) == [['h3'], ['h2', 'h4']]


def test_a_run_named_again_takes_on_the_hosts_it_has_no_record_of():
    # (an AWX workflow: one job per host, one run id)
    one = by_host(rec('h1', 'w1', 'done'))
    assert R.choose_run(one, G, run_id='w1', names=['h1'])['mode'] == 'finished'
    assert R.choose_run(one, G, run_id='w1', names=['h2'])['mode'] == 'resume'
    assert R.choose_run(one, G, names=['h2'])['mode'] == 'new'

"""evacuate with background: the whole drain in one task - started in the background, followed, read back, its
report and calibration kept on the controller - against a fake host that answers each module call."""
import copy
import functools
import json
import os
import stat
from unittest import mock

import shlex

import pytest

from ansible.errors import AnsibleConnectionFailure
from ansible.playbook.task import Task
from ansible.template import Templar
from ansible.parsing.dataloader import DataLoader

from ansible_collections.vmmigration.libvirt.plugins.action import evacuate as action_mod
from ansible_collections.vmmigration.libvirt.plugins.action import evacuation_status as status_mod
from ansible_collections.vmmigration.libvirt.plugins.action.evacuate import ActionModule, async_bound

STATUS = 'vmmigration.libvirt.evacuation_status'
ASYNC = 'ansible.legacy.async_status'
EVAC = 'vmmigration.libvirt.evacuate'

RESULT = {'changed': True, 'state': 'evacuated', 'moved': ['web1'], 'failed_vms': [], 'started_at': 100.0,
          'wall_s': 4.0, 'results': [{'name': 'web1', 'state': 'migrated', 'total_time_s': 3.0, 'start_s': 0.5,
                                      'end_s': 3.5, 'destination': 'h2'}],
          'plan': {'moves': [{'name': 'web1', 'memory_mib': 512}]},
          'report': {'table': ['VM    state', 'web1  migrated'], 'title': 'Evacuation of h1'}}


class FakeHost:
    """What the drained host answers: STATUSES in turn to the status reads (the last one again and again; a status
    tagged THIS gets the tag the drain was started with), the job finished on the async_status read number
    FINISH_AT, with FINAL as its result."""

    def __init__(self, statuses=(), finish_at=1, final=None, launch=None):
        self.statuses = list(statuses)
        self.tag = None
        self.shell = []
        self.slept = []
        self.lost = 0          # status reads the host does not answer, before it answers again
        self.job_missing = 0   # job reads that find no job file yet
        self.finish_at = finish_at
        self.final = dict(RESULT if final is None else final)
        self.launch = launch
        self.calls = []
        self.launched = False
        self.async_reads = 0
        self.async_val_at_launch = None

    def __call__(self, task, module_name=None, module_args=None, task_vars=None, wrap_async=False):
        self.calls.append((module_name, dict(module_args or {}), wrap_async))
        if module_name == STATUS:
            assert self.launched, 'the status is read after the drain started'
            if self.lost:
                self.lost -= 1
                raise AnsibleConnectionFailure('ssh: connect to host h1 port 22: Connection timed out')
            res = copy.deepcopy(self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]) \
                if self.statuses else {'state': 'absent', 'lines': ['no evacuation status']}
            if (res.get('status') or {}).get('tag') == 'THIS':
                res['status']['tag'] = self.tag
            return res
        if module_name == EVAC:
            if wrap_async:
                self.launched = True
                self.tag = module_args.get('status_tag')
                self.async_val_at_launch = task.async_val
                return self.launch or {'ansible_job_id': 'j42', 'started': 1, 'finished': 0, 'changed': True}
            return {'changed': False, 'state': 'planned', 'to_do': 1}
        if module_name == ASYNC:
            assert module_args == {'jid': 'j42', '_async_dir': '~/.ansible_async'}
            if self.job_missing:
                self.job_missing -= 1
                return {'failed': True, 'finished': 1, 'started': 1, 'msg': 'could not find job'}
            self.async_reads += 1
            if self.async_reads >= self.finish_at:
                return dict(self.final, ansible_job_id='j42', finished=1, started=1, results_file='/x')
            return {'ansible_job_id': 'j42', 'finished': 0, 'started': 1}
        raise AssertionError('unexpected module %s' % module_name)


def run(args, host, check_mode=False):
    task = Task()
    task.args = args
    task.check_mode = check_mode
    loader = DataLoader()
    action = ActionModule(task, mock.MagicMock(), mock.MagicMock(), loader, Templar(loader=loader), None)
    action._load_name = EVAC
    action._connection._shell.quote = shlex.quote
    shown = []
    with mock.patch.object(ActionModule, '_execute_module', autospec=True,
                           side_effect=lambda self, **kw: host(self._task, **kw)), \
            mock.patch.object(ActionModule, '_low_level_execute_command', autospec=True,
                              side_effect=lambda self, cmd, **kw: host.shell.append(cmd) or {'rc': 0}), \
            mock.patch.object(ActionModule, 'get_shell_option', autospec=True, side_effect=lambda self, o, default: default), \
            mock.patch.object(status_mod.display, 'display', side_effect=lambda msg, *a, **k: shown.append(msg)), \
            mock.patch.object(action_mod.time, 'sleep', side_effect=host.slept.append):
        res = action.run(task_vars={'inventory_hostname': 'h1'})
    return res, shown, task


def running(line):
    return {'state': 'running', 'status': {'pid': 200, 'tag': 'THIS'}, 'lines': ['1 of 1 moving', '  %s' % line]}


FINISHED = {'state': 'finished', 'status': {'pid': 200, 'tag': 'THIS'}, 'lines': ['finished: 1 moved', '  done web1 migrated']}


def test_the_whole_drain_in_one_task_result_progress_report_and_calibration(tmp_path):
    host = FakeHost(statuses=[running('web1 memory 40%'), running('web1 memory 80%'), FINISHED])
    reports, cal = tmp_path / 'reports' / 'h1', tmp_path / 'cal' / 'calibration.json'
    res, shown, task = run({'status_file': '/s/evacuate.status.json', 'journal': '/s/j', 'timeout_s': 100,
                            'per_vm_timeout_s': 10, 'background': {'report_dir': str(reports), 'calibration_file': str(cal),
                                                                   'started_at': 1.0, 'follow_interval_s': 5}}, host)
    # the module's own result, nothing of async_status's
    assert not res.get('failed'), res
    assert res['state'] == 'evacuated' and res['moved'] == ['web1'] and res['changed'] is True
    assert not set(res) & {'ansible_job_id', 'finished', 'results_file'}
    # the drain ran in the background, with its bound as the async limit (and the task's own async left as it was)
    launches = [c for c in host.calls if c[0] == EVAC]
    assert len(launches) == 1 and launches[0][2] is True and 'background' not in launches[0][1]
    assert host.async_val_at_launch == async_bound({'timeout_s': 100, 'per_vm_timeout_s': 10}) == 100 + 1920 + 900
    assert task.async_val == 0
    # progress shown as it changed, each time with the host's name; the job's file cleaned up after reading it
    assert any('[h1]   web1 memory 40%' in s for s in shown) and any('[h1]   web1 memory 80%' in s for s in shown)
    assert any('done web1 migrated' in s for s in shown)
    assert host.shell == ['rm -f -- ~/.ansible_async/j42']
    # the drain tags its status (an earlier drain's status is not its progress)
    assert launches[0][1]['status_tag'].startswith('evacuate-') and launches[0][1]['status_tag'] == host.tag
    # until the drain's own status showed up, the reads were short; then follow_interval_s
    waits = [c[1].get('wait_s') for c in host.calls if c[0] == STATUS]
    assert waits[0] == 2.0 and waits[-1] == 5.0
    # report and calibration on the controller, owner-only
    assert json.loads((reports / 'report.json').read_text())['moved'] == ['web1']
    assert (reports / 'report.txt').read_text() == 'VM    state\nweb1  migrated\n'
    # the timeline drawn here, on the controller, from the result's data (the module carries no HTML)
    html = (reports / 'timeline.html').read_text()
    assert '<title>Evacuation of h1</title>' in html and 'web1 -&gt; h2' in html and html.count('<rect') == 1
    assert stat.S_IMODE(os.stat(str(reports)).st_mode) == 0o700
    assert all(stat.S_IMODE(os.stat(str(reports / n)).st_mode) == 0o600 for n in os.listdir(str(reports)))
    assert res['report_files'] == [str(reports / n) for n in ('report.json', 'report.txt', 'timeline.html')]
    assert sorted(os.listdir(str(cal.parent))) == ['calibration.json', 'calibration.json.lock']
    assert all(stat.S_IMODE(os.stat(str(cal.parent / n)).st_mode) == 0o600 for n in os.listdir(str(cal.parent)))
    first = json.loads(cal.read_text())
    assert first['samples'] == 1 and first['drains'][0]['role_wall_s'] > 0
    # a second drain adds its samples to the same file
    run({'status_file': '/s/st', 'background': {'calibration_file': str(cal)}},
        FakeHost(statuses=[FINISHED], finish_at=1))
    assert json.loads(cal.read_text())['samples'] == 2


def test_check_mode_and_no_background_run_the_module_as_it_is():
    for args, check in (({'status_file': '/s/st', 'background': {'report_dir': '/nowhere'}}, True),
                        ({'status_file': '/s/st'}, False)):
        host = FakeHost()
        res, _shown, _task = run(args, host, check_mode=check)
        assert res['state'] == 'planned' and [c[0] for c in host.calls] == [EVAC] and host.calls[0][2] is False
        assert 'background' not in host.calls[0][1]


def test_a_drain_that_fails_before_it_writes_any_status_ends_the_task_at_once_with_its_message():
    host = FakeHost(statuses=[], finish_at=1,
                    final={'failed': True, 'msg': 'migrate_options: bandwidth_mibps must be > 0'})
    res, shown, _task = run({'status_file': '/s/st', 'background': {}}, host)
    assert res['failed'] and res['msg'] == 'migrate_options: bandwidth_mibps must be > 0'
    # one status read (short), one job read: no waiting for a status that never comes
    assert [c[0] for c in host.calls] == [EVAC, STATUS, ASYNC] and host.calls[1][1]['wait_s'] == 2.0
    assert shown == []


def test_an_earlier_drains_status_is_not_shown_as_this_ones_progress():
    old = {'state': 'finished', 'status': {'pid': 100, 'tag': None}, 'lines': ['finished: 3 moved', '  done old1 migrated']}
    host = FakeHost(statuses=[old, running('web1 memory 50%'), FINISHED], finish_at=2)
    res, shown, _task = run({'status_file': '/s/st', 'background': {}}, host)
    assert not res.get('failed'), res
    assert not any('old1' in s for s in shown) and any('web1 memory 50%' in s for s in shown)


def test_a_failed_drain_keeps_its_report_and_fails():
    final = dict(RESULT, failed=True, msg='the drain is incomplete: 1 VM(s) still run on the source', state='incomplete')
    host = FakeHost(statuses=[FINISHED], final=final)
    with mock.patch.object(action_mod, 'save_report', return_value=['/r/report.json']) as saved:
        res, _shown, _task = run({'status_file': '/s/st', 'background': {'report_dir': '/r'}}, host)
    assert res['failed'] and 'incomplete' in res['msg'] and res['state'] == 'incomplete'
    assert saved.call_count == 1 and res['report_files'] == ['/r/report.json']


def test_a_report_that_cannot_be_written_fails_the_task_and_keeps_the_drains_result(tmp_path):
    blocker = tmp_path / 'file'
    blocker.write_text('')
    res, _shown, _task = run({'status_file': '/s/st', 'background': {'report_dir': str(blocker / 'sub')}},
                             FakeHost(statuses=[FINISHED]))
    assert res['failed'] and 'could not be written on the controller' in res['msg'] and res['moved'] == ['web1']


def test_a_job_that_never_finishes_fails_naming_it(monkeypatch):
    host = FakeHost(statuses=[FINISHED], finish_at=10 ** 9)
    ticks = iter(range(10 ** 6))   # (a clock that moves on 1 s each time it is read)
    monkeypatch.setattr(action_mod, 'follow', functools.partial(action_mod.follow, clock=lambda: next(ticks)))
    monkeypatch.setattr(action_mod, 'wait_until', lambda pred, *a, **k: pred())
    res, _shown, _task = run({'status_file': '/s/st', 'background': {'async_s': 30}}, host)
    assert res['failed'] and 'job j42' in res['msg'] and 'did not end within its bound (30 s)' in res['msg']


@pytest.mark.parametrize('args, msg', [
    ({'status_file': '/s/st', 'background': 'yes'}, 'background: give a dict'),
    ({'status_file': '/s/st', 'background': {'poll': 1}}, 'background: unknown poll'),
    ({'status_file': '/s/st', 'background': {'async_s': -1}}, 'must be greater than 0'),
    ({'status_file': '/s/st', 'background': {'follow_interval_s': 'soon'}}, 'background: could not convert'),
    ({'background': {}}, 'background needs status_file'),
])
def test_bad_background_options_are_refused_before_anything_runs(args, msg):
    host = FakeHost()
    res, _shown, _task = run(args, host)
    assert res['failed'] and msg in res['msg'], res
    assert host.calls == []


def test_the_result_is_the_drains_own_once_its_job_has_ended_though_the_status_said_finished_first(monkeypatch):
    # the status file says finished a moment before the module returns: the job is read again until it has ended
    host = FakeHost(statuses=[FINISHED], finish_at=3)
    monkeypatch.setattr(action_mod, 'wait_until', lambda pred, timeout, interval: pred() or pred())
    res, _shown, _task = run({'status_file': '/s/st', 'background': {}}, host)
    assert not res.get('failed'), res
    assert host.async_reads == 3 and res['state'] == 'evacuated' and res['moved'] == ['web1']


def test_progress_that_cannot_be_read_fails_the_task_saying_the_drain_goes_on():
    host = FakeHost(statuses=[{'failed': True, 'msg': 'cannot read /s/st: permission denied'}], finish_at=10 ** 9)
    res, _shown, _task = run({'status_file': '/s/st', 'background': {}}, host)
    assert res['failed'] and 'the drain runs on in the background on h1 (job j42)' in res['msg']
    assert 'permission denied' in res['msg'] and 'run the play again' in res['msg'] and res['ansible_job_id'] == 'j42'
    # (nothing removed on the host: the job's file is the drain's result, still to come)
    assert host.shell == []


def test_a_host_that_stops_answering_is_asked_again_then_the_task_says_the_drain_goes_on():
    # one blip: asked again, the drain followed to its end
    host = FakeHost(statuses=[FINISHED])
    host.lost = 2
    res, _shown, _task = run({'status_file': '/s/st', 'background': {}}, host)
    assert not res.get('failed') and res['state'] == 'evacuated' and host.slept[:2] == [2, 4]
    # gone for good: the task fails naming the job and saying the drain goes on - no traceback, no "unreachable"
    host = FakeHost(statuses=[FINISHED], finish_at=10 ** 9)
    host.lost = 10 ** 9
    res, _shown, _task = run({'status_file': '/s/st', 'background': {}}, host)
    assert res['failed'] and res['ansible_job_id'] == 'j42' and 'h1 does not answer' in res['msg']
    assert 'runs on in the background on h1 (job j42)' in res['msg'] and host.shell == []


def test_a_job_file_not_written_yet_is_waited_for_and_one_gone_is_said(monkeypatch):
    host = FakeHost(statuses=[FINISHED])
    host.job_missing = 2
    res, _shown, _task = run({'status_file': '/s/st', 'background': {}}, host)
    assert not res.get('failed') and res['moved'] == ['web1'], res
    monkeypatch.setattr(action_mod, 'JOB_FILE_GRACE_S', -1)
    host = FakeHost(statuses=[FINISHED])
    host.job_missing = 1
    res, _shown, _task = run({'status_file': '/s/st', 'background': {}}, host)
    assert res['failed'] and 'its job file is gone' in res['msg'] and 'job j42' in res['msg']


def test_a_drain_whose_process_is_gone_and_whose_job_never_ends_is_given_up(monkeypatch):
    monkeypatch.setattr(action_mod, 'DEAD_GRACE_S', -1)
    dead = {'state': 'dead', 'status': {'pid': 200, 'tag': 'THIS'}, 'lines': ['1 of 1 moving']}
    host = FakeHost(statuses=[dead], finish_at=10 ** 9)
    res, _shown, _task = run({'status_file': '/s/st', 'background': {}}, host)
    assert res['failed'] and 'its process is gone' in res['msg'] and host.async_reads == 1


def test_without_background_the_tasks_own_async_runs_the_module_in_the_background():
    host = FakeHost()
    task = Task()
    task.args = {'status_file': '/s/st'}
    task.async_val = 7200
    loader = DataLoader()
    action = ActionModule(task, mock.MagicMock(has_native_async=False), mock.MagicMock(), loader,
                          Templar(loader=loader), None)
    action._load_name = EVAC
    with mock.patch.object(ActionModule, '_execute_module', autospec=True,
                           side_effect=lambda self, **kw: host(self._task, **kw)):
        res = action.run(task_vars={})
    assert res['ansible_job_id'] == 'j42' and host.calls == [(EVAC, {'status_file': '/s/st'}, True)]
    # background with the task's own async: refused, nothing runs
    host = FakeHost()
    task.args = {'status_file': '/s/st', 'background': {}}
    with mock.patch.object(ActionModule, '_execute_module', autospec=True,
                           side_effect=lambda self, **kw: host(self._task, **kw)):
        res = action.run(task_vars={})
    assert res['failed'] and 'leave the task\'s async and poll out' in res['msg'] and host.calls == []


def test_a_crashed_modules_own_stderr_reaches_the_user():
    final = {'failed': True, 'msg': 'MODULE FAILURE', 'module_stderr': 'Traceback ...', 'stderr': 'MemoryError'}
    res, _shown, _task = run({'status_file': '/s/st', 'background': {}}, FakeHost(statuses=[FINISHED], final=final))
    assert res['failed'] and res['stderr'] == 'MemoryError' and res['module_stderr'] == 'Traceback ...'


def test_a_calibration_that_is_not_one_is_kept_and_said_and_the_drains_result_stands(tmp_path):
    cal = tmp_path / 'calibration.json'
    cal.write_text('{"moves": [')
    reports = tmp_path / 'r'
    host = FakeHost(statuses=[FINISHED])
    res, _shown, _task = run({'status_file': '/s/st', 'background': {'calibration_file': str(cal),
                                                                     'report_dir': str(reports)}}, host)
    assert res['failed'] and 'is not JSON' in res['msg'] and 'move it aside' in res['msg']
    assert cal.read_text() == '{"moves": [' and res['moved'] == ['web1'] and (reports / 'report.json').exists()
    # (the job's file goes once the result is kept - here, in the task's result)
    assert host.shell == ['rm -f -- ~/.ansible_async/j42']


def test_a_drain_without_a_report_leaves_no_earlier_drains_table_or_timeline(tmp_path):
    reports = tmp_path / 'r'
    reports.mkdir()
    (reports / 'report.txt').write_text('an earlier drain\n')
    (reports / 'timeline.html').write_text('<html>earlier</html>')
    final = {'failed': True, 'msg': 'will not drain: the journal cannot be written'}
    res, _shown, _task = run({'status_file': '/s/st', 'background': {'report_dir': str(reports)}},
                             FakeHost(statuses=[FINISHED], final=final))
    assert res['failed'] and json.loads((reports / 'report.json').read_text())['msg'] == final['msg']
    assert (reports / 'report.txt').read_text() == '\n' and (reports / 'timeline.html').read_text() == ''


def test_the_tasks_own_async_is_restored_when_the_launch_fails():
    host = FakeHost(launch=None)

    def boom(task, **kw):
        if kw.get('wrap_async'):
            assert task.async_val == async_bound({})
            raise AnsibleConnectionFailure('ssh: Connection refused')
        return host(task, **kw)
    task = Task()
    task.args = {'status_file': '/s/st', 'background': {}}
    loader = DataLoader()
    action = ActionModule(task, mock.MagicMock(), mock.MagicMock(), loader, Templar(loader=loader), None)
    action._load_name = EVAC
    with mock.patch.object(ActionModule, '_execute_module', autospec=True,
                           side_effect=lambda self, **kw: boom(self._task, **kw)):
        with pytest.raises(AnsibleConnectionFailure):
            action.run(task_vars={})
    assert task.async_val == 0


def test_a_host_gone_once_the_result_is_read_keeps_the_result():
    host = FakeHost(statuses=[FINISHED])

    def gone(cmd):
        raise AnsibleConnectionFailure('ssh: Connection reset')
    host.shell = mock.MagicMock(append=gone)
    res, shown, _task = run({'status_file': '/s/st', 'background': {}}, host)
    assert not res.get('failed') and res['state'] == 'evacuated' and res['moved'] == ['web1']
    assert any("h1: the drain's job file ~/.ansible_async/j42 stays" in line for line in shown), shown


def test_reads_wait_only_while_no_status_of_this_drain_is_there():
    old = {'state': 'finished', 'status': {'pid': 100, 'tag': None}, 'lines': ['finished: 3 moved']}
    host = FakeHost(statuses=[old, old, running('web1 memory 50%'), FINISHED], finish_at=4)
    res, _shown, _task = run({'status_file': '/s/st', 'background': {}}, host)
    assert not res.get('failed'), res
    # (two rounds on an earlier drain's status paced; none once this drain's own status is there)
    assert host.slept == [0.5, 0.5]

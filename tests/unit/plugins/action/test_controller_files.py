"""controller_files: the roles' records written on the controller, atomically, in one task."""
import json
import os
import stat
from unittest import mock

import pytest

from ansible.playbook.task import Task
from ansible.template import Templar
from ansible.parsing.dataloader import DataLoader

from ansible_collections.vmmigration.libvirt.plugins.action.controller_files import ActionModule


def run(args, check_mode=False):
    task = Task()
    task.args = args
    task.check_mode = check_mode
    loader = DataLoader()
    action = ActionModule(task, mock.MagicMock(), mock.MagicMock(), loader, Templar(loader=loader), None)
    action._load_name = 'vmmigration.libvirt.controller_files'   # (the plugin loader sets it)
    return action.run(task_vars={})


def test_writes_each_file_as_json_or_text_and_a_second_run_changes_nothing(tmp_path):
    d = tmp_path / 'reports' / 'h1'
    files = [{'name': 'report.json', 'json': {'b': 1, 'a': [1, 'é']}}, {'name': 'report.txt', 'content': 'x\n'}]
    res = run({'dir': str(d), 'files': files})
    assert not res.get('failed') and res['changed'] is True, res
    assert res['paths'] == [str(d / 'report.json'), str(d / 'report.txt')]
    want = json.dumps({'a': [1, 'é'], 'b': 1}, indent=4, sort_keys=True, ensure_ascii=False) + '\n'
    assert (d / 'report.json').read_text(encoding='utf-8') == want
    assert (d / 'report.txt').read_text() == 'x\n'
    assert stat.S_IMODE(os.stat(str(d)).st_mode) == 0o700 and stat.S_IMODE(os.stat(str(d / 'report.txt')).st_mode) == 0o600
    assert run({'dir': str(d), 'files': files})['changed'] is False
    # a change to one file is changed, and written; nothing left over from the atomic write
    res = run({'dir': str(d), 'files': [{'name': 'report.txt', 'content': 'y\n'}], 'mode': '0640'})
    assert res['changed'] is True and (d / 'report.txt').read_text() == 'y\n'
    assert stat.S_IMODE(os.stat(str(d / 'report.txt')).st_mode) == 0o640
    assert sorted(os.listdir(str(d))) == ['report.json', 'report.txt']


def test_check_mode_writes_nothing_and_says_what_would_change(tmp_path):
    d = tmp_path / 'plans'
    res = run({'dir': str(d), 'files': [{'name': 'plan.json', 'json': {}}]}, check_mode=True)
    assert res['changed'] is True and not d.exists()


@pytest.mark.parametrize('args, msg', [
    ({'dir': '/tmp', 'files': [{'name': '../escape', 'content': ''}]}, 'files: give plain file names inside dir'),
    ({'dir': '/tmp', 'files': [{'name': 'a', 'content': ''}], 'mode': 'rw'}, 'mode and dir_mode are octal numbers'),
])
def test_bad_input_fails_with_a_clear_message_before_writing(args, msg):
    res = run(args)
    assert res['failed'] and msg in res['msg'], res


def test_options_are_checked_against_the_documented_spec():
    # (ansible-core turns AnsibleActionFail into the task's failure with this message)
    from ansible.errors import AnsibleActionFail
    with pytest.raises(AnsibleActionFail, match='missing required arguments: dir'):
        run({'files': []})
    with pytest.raises(AnsibleActionFail, match='Unsupported parameters'):
        run({'dir': '/tmp', 'files': [], 'owner': 'x'})


def test_a_directory_it_cannot_make_fails_with_the_path(tmp_path):
    blocker = tmp_path / 'file'
    blocker.write_text('')
    res = run({'dir': str(blocker / 'sub'), 'files': [{'name': 'a', 'content': 'x'}]})
    assert res['failed'] and 'cannot write %s on the controller' % (blocker / 'sub' / 'a') in res['msg'], res

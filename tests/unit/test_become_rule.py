"""One become rule for every role: each task that runs on a hypervisor runs with become set to its role's
<role>_become, whose default is the collection-wide vmmigration_become (true unless the inventory says otherwise);
each task that runs on the controller says become: false (a play's become never reaches the controller, where an
AWX execution environment has no sudo)."""
import glob
import os

import pytest
import yaml

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ROLES = sorted(os.path.basename(os.path.dirname(os.path.dirname(p)))
               for p in glob.glob(os.path.join(TOP, 'roles', '*', 'tasks', 'main.yml')))
KEYWORDS = {'name', 'when', 'register', 'become', 'become_user', 'delegate_to', 'run_once', 'loop', 'loop_control',
            'vars', 'changed_when', 'failed_when', 'ignore_errors', 'ignore_unreachable', 'check_mode', 'tags',
            'no_log', 'until', 'retries', 'delay', 'environment', 'args', 'notify', 'any_errors_fatal', 'throttle',
            'diff', 'timeout', 'delegate_facts', 'async', 'poll', 'listen', 'with_items', 'with_dict', 'module_defaults',
            'debugger', 'collections', 'connection', 'apply'}
# what runs in the controller's own process: nothing runs on a host, become does not apply
IN_PROCESS = {'ansible.builtin.set_fact', 'ansible.builtin.assert', 'ansible.builtin.debug', 'ansible.builtin.fail',
              'ansible.builtin.include_tasks', 'ansible.builtin.import_tasks', 'ansible.builtin.include_role',
              'ansible.builtin.pause', 'ansible.builtin.meta', 'ansible.builtin.set_stats',
              'ansible.builtin.validate_argument_spec', 'ansible.builtin.add_host', 'ansible.builtin.group_by',
              'ansible.builtin.include_vars', 'ansible.builtin.wait_for_connection',
              # (an action plugin that writes on the controller, in its own process)
              'vmmigration.libvirt.controller_files'}


def action(task):
    keys = [k for k in task if k not in KEYWORDS]
    return keys[0] if len(keys) == 1 else None


def tasks(role):
    """(file, task, become) for every task of ROLE, with what it inherits from its blocks (become, delegate_to)."""
    def walk(items, path, inherited):
        for t in items or []:
            here = dict(inherited, **dict((k, t[k]) for k in ('become', 'delegate_to', 'connection') if k in t))
            if 'block' in t:
                for k in ('block', 'rescue', 'always'):
                    yield from walk(t.get(k), path, here)
            else:
                yield path, dict(t, **here), here.get('become')
    for path in sorted(glob.glob(os.path.join(TOP, 'roles', role, 'tasks', '*.yml'))):
        with open(path) as f:
            yield from walk(yaml.safe_load(f), os.path.relpath(path, TOP), {})


def on_controller(task):
    return str(task.get('delegate_to', '')).strip() in ('localhost', '127.0.0.1') or task.get('connection') == 'local'


@pytest.mark.parametrize('role', ROLES)
def test_every_host_task_becomes_by_the_roles_own_switch_and_every_controller_task_never(role):
    want = '{{ %s_become }}' % role
    bad = []
    for path, task, become in tasks(role):
        act = action(task)
        assert act, '%s: %s - cannot tell its action' % (path, task.get('name'))
        if act in IN_PROCESS:
            continue
        if on_controller(task):
            if become is not False:
                bad.append('%s: %s runs on the controller - give it become: false' % (path, task.get('name')))
        elif '{{' in str(task.get('delegate_to', '')) and 'verify_from' in str(task.get('delegate_to')):
            # (a vantage point the operator names: a hypervisor, or the controller)
            if not (str(become).startswith(want[:-3]) and 'localhost' in str(become)):
                bad.append('%s: %s may run on the controller - its become must say localhost never becomes'
                           % (path, task.get('name')))
        elif become != want:
            bad.append('%s: %s runs on a host - give it become: "%s" (got %r)' % (path, task.get('name'), want, become))
    assert bad == []


@pytest.mark.parametrize('role', ROLES)
def test_every_roles_become_defaults_to_the_collections_one(role):
    with open(os.path.join(TOP, 'roles', role, 'defaults', 'main.yml')) as f:
        defaults = yaml.safe_load(f)
    assert defaults['%s_become' % role] == '{{ vmmigration_become | default(true) }}'
    with open(os.path.join(TOP, 'roles', role, 'meta', 'argument_specs.yml')) as f:
        specs = yaml.safe_load(f)['argument_specs']
    for entry, spec in specs.items():
        opt = (spec.get('options') or {}).get('%s_become' % role)
        assert opt, '%s: %s has no %s_become' % (role, entry, role)
        assert opt['type'] == 'bool' and 'default' not in opt and 'vmmigration_become' in ' '.join(opt['description'])

"""One vocabulary: an option given by a name it no longer has is refused on the controller, before anything runs,
naming the new one; the table agrees with the modules' own options and with the changelog."""
import importlib
import os
from unittest import mock

import pytest
import yaml

from ansible.playbook.task import Task
from ansible.template import Templar
from ansible.parsing.dataloader import DataLoader

from ansible_collections.vmmigration.libvirt.plugins.plugin_utils import renamed as R

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))


def documented(module):
    """MODULE's documented options, its doc fragments' included (as ansible-doc shows them)."""
    mod = importlib.import_module('ansible_collections.vmmigration.libvirt.plugins.modules.' + module)
    doc = yaml.safe_load(mod.DOCUMENTATION)
    options = {}
    for fragment in doc.get('extends_documentation_fragment') or []:
        base, _dot, part = fragment.replace('vmmigration.libvirt.', '').partition('.')
        frag = importlib.import_module('ansible_collections.vmmigration.libvirt.plugins.doc_fragments.' + base)
        text = getattr(frag.ModuleDocFragment, part.upper() if part else 'DOCUMENTATION', None)
        options.update((yaml.safe_load(text) or {}).get('options') or {})
    options.update(doc.get('options') or {})
    return options


@pytest.mark.parametrize('old,modules,new', R.RENAMED, ids=['%s@%s' % (o, ','.join(m)) for o, m, _n in R.RENAMED])
def test_each_old_name_is_gone_and_its_new_name_is_there(old, modules, new):
    target = new.split(' ', 1)[0]
    for module in modules:
        options = documented(module)
        assert old not in options, '%s still has %s' % (module, old)
        if target == 'nothing':
            continue
        top, _dot, sub = target.partition('.')
        assert top in options, '%s has no %s' % (module, top)
        if sub:
            assert sub in (options[top].get('suboptions') or {}), '%s has no %s' % (module, target)


def test_the_changelog_names_every_renamed_option_and_its_new_name():
    with open(os.path.join(TOP, 'changelogs', 'fragments', '24-one-vocabulary.yml')) as f:
        text = ' '.join(' '.join(yaml.safe_load(f)['minor_changes']).split())
    for old, _modules, new in R.RENAMED:
        assert 'C(%s)' % old in text, old
        target = new.split(' ', 1)[0]
        if target != 'nothing':
            assert target.rsplit('.', 1)[-1] in text, new


@pytest.mark.parametrize('module,args,want', [
    ('migrate', {'domain': 'web1', 'memory_reserve_mib': 64}, 'memory_reserve_mib was renamed: give headroom_mib'),
    ('migrate', {'poll_interval': 1}, 'poll_interval was renamed: give tuning.poll_interval_s'),
    ('migrate', {'dead_link_s': 9}, 'dead_link_s was renamed: give tuning.dead_link_s'),
    ('host_info', {'connect_retry_delay': 1}, 'connect_retry_delay was renamed: give connect_retry_delay_s'),
    ('evacuation_plan', {'allow_cold': True}, 'allow_cold was renamed: give non_live_policy'),
    ('ip_advertise', {'verify_addresses': False}, 'verify_addresses was renamed: give check_guest_addresses'),
    ('evacuate', {'verify_addresses': {}}, 'verify_addresses was renamed: give verify_addresses_by_vm'),
    ('evacuate', {'migrate_options': {'memory_reserve_mib': 64, 'stall_iterations': 3}},
     'migrate_options.memory_reserve_mib was renamed: give headroom_mib'),
    ('evacuate', {'cold_options': {'memory_reserve_mib': 64}}, 'cold_options.memory_reserve_mib was renamed: give headroom_mib'),
    ('cpu_baseline', {'uri': 'qemu:///system'}, "uri was renamed: give nothing - each host's uri is given in hosts"),
    ('migrate', {'tuning': {'poll_interval': 1}}, 'tuning.poll_interval was renamed: give tuning.poll_interval_s'),
    ('evacuate', {'migrate_options': {'tuning': {'poll_interval': 1}}},
     'migrate_options.tuning.poll_interval was renamed: give tuning.poll_interval_s'),
])
def test_an_old_name_is_named_with_its_new_one(module, args, want):
    assert any(p.startswith(want) for p in R.renamed_problems(module, args)), R.renamed_problems(module, args)


def test_new_names_and_other_modules_old_looking_names_pass():
    # migrate's verify_addresses (a list) is its own name, not ip_advertise's old one
    assert R.renamed_problems('migrate', {'verify_addresses': ['198.18.0.10'], 'headroom_mib': 64,
                                          'tuning': {'poll_interval_s': 0.5}}) == []
    assert R.renamed_problems('evacuate', {'migrate_options': {'tuning': {'dead_link_s': 9}}, 'cold_options': {}}) == []
    assert R.renamed_problems('shared_storage', {'uri': 'qemu:///system'}) == []
    # (migrate_options takes no connection option: its old name is not one to point to)
    assert R.renamed_problems('evacuate', {'migrate_options': {'connect_retry_delay': 1}}) == []
    assert R.renamed_problems('evacuate', {'migrate_options': '{"headroom_mib": 1}'}) == []   # (text: the module reads it)


def action_for(module, args, async_val=0):
    task = Task()
    task.args = args
    task.action = 'vmmigration.libvirt.' + module
    task.async_val = async_val
    loader = DataLoader()
    mod = importlib.import_module('ansible_collections.vmmigration.libvirt.plugins.action.' + module)
    connection = mock.MagicMock()
    connection.has_native_async = False
    return mod.ActionModule(task, connection, mock.MagicMock(), loader, Templar(loader=loader), None)


MODULES_WITH_ACTIONS = sorted(set(m for _o, ms, _n in R.RENAMED for m in ms) - {'evacuate'})


@pytest.mark.parametrize('module', MODULES_WITH_ACTIONS)
def test_every_module_with_a_renamed_option_refuses_it_on_the_controller_before_anything_runs(module):
    old = next(o for o, ms, _n in R.RENAMED if module in ms)
    action = action_for(module, {old: 1})
    with mock.patch.object(type(action), '_execute_module') as execute:
        res = action.run(task_vars={})
    assert res['failed'] and '%s was renamed' % old in res['msg'] and 'nothing ran' in res['msg']
    execute.assert_not_called()


@pytest.mark.parametrize('async_val,wrapped', [(0, False), (600, True)])
def test_good_arguments_run_the_module_as_any_module_runs_async_included(async_val, wrapped):
    action = action_for('migrate', {'domain': 'web1', 'dest_uri': 'qemu+tls://h2/system'}, async_val)
    with mock.patch.object(type(action), '_execute_module', return_value={'changed': True, 'state': 'migrated'}) as execute, \
            mock.patch.object(type(action), '_remove_tmp_path') as remove:
        res = action.run(task_vars={'x': 1})
    assert res['state'] == 'migrated' and res['changed'] is True and not res.get('failed')
    assert execute.call_args.kwargs == {'task_vars': {'x': 1}, 'wrap_async': wrapped}
    # (an async job's directory is its own to clean up)
    assert remove.called is not wrapped


def test_the_evacuate_action_refuses_an_old_name_too():
    from ansible_collections.vmmigration.libvirt.plugins.action import evacuate
    task = Task()
    task.args = {'verify_addresses': {'web1': ['198.18.0.10']}, 'destinations': []}
    loader = DataLoader()
    action = evacuate.ActionModule(task, mock.MagicMock(), mock.MagicMock(), loader, Templar(loader=loader), None)
    with mock.patch.object(evacuate.ActionModule, '_execute_module') as execute:
        res = action.run(task_vars={})
    assert res['failed'] and 'give verify_addresses_by_vm' in res['msg']
    execute.assert_not_called()

# -*- coding: utf-8 -*-
# Copyright (c) vmmigration.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""One vocabulary across the collection: an option given by a name it no longer has is refused, on the
controller and before anything runs, with the name it has now - never ignored, never the bare "Unsupported
parameters" list. The table is the changelog's (a unit test keeps them the same)."""

from ansible.plugins.action import ActionBase

# every module that opens a libvirt connection (connect_retries and connect_retry_delay_s)
CONNECTED = ('cluster_facts', 'cold_migrate', 'cpu_baseline', 'domain_addresses', 'evacuate', 'evacuation_plan', 'host_info',
             'ip_advertise', 'migrate', 'migration_check', 'migration_job_info', 'shared_storage', 'stop_in_place')
MOVES = ('migrate', 'cold_migrate', 'migration_check')
TUNING = ('downtime_steps', 'downtime_step_delay_s', 'downtime_step_delay_s_per_gib', 'timeout_per_gib_s',
          'min_timeout_s', 'stall_iterations', 'dead_link_s', 'dirty_rate_sample_s', 'postcopy_recovery_attempts')

# (old name, modules, what to give instead)
RENAMED = (
    ('connect_retry_delay', CONNECTED, 'connect_retry_delay_s'),
    ('memory_reserve_mib', MOVES, 'headroom_mib (default 1024 everywhere)'),
    ('poll_interval', ('migrate',), 'tuning.poll_interval_s'),
) + tuple((name, ('migrate',), 'tuning.%s' % name) for name in TUNING) + (
    ('allow_cold', ('evacuation_plan',), 'non_live_policy (allow_cold=true is non_live_policy=cold)'),
    ('verify_addresses', ('ip_advertise',), 'check_guest_addresses'),
    ('verify_addresses', ('evacuate',), 'verify_addresses_by_vm (VM name to its list of addresses)'),
    ('uri', ('cpu_baseline',), "nothing - each host's uri is given in hosts"),
)
# the same, for the keys of evacuate's migrate_options and cold_options (the migrate and cold_migrate modules' options
# but the connection's, which they do not take)
RENAMED_IN = {'migrate_options': 'migrate', 'cold_options': 'cold_migrate'}
# and inside migrate's tuning dict
RENAMED_IN_TUNING = (('poll_interval', 'tuning.poll_interval_s'),)


def renamed_problems(module, args, inner=False):
    """What ARGS (a task's arguments for MODULE) gives by an old name: one message each, naming the new name."""
    args = args if isinstance(args, dict) else {}
    problems = []
    for old, modules, new in RENAMED:
        if module in modules and old in args and not (inner and modules is CONNECTED):
            problems.append('%s was renamed: give %s' % (old, new))
    tuning = args.get('tuning') if module == 'migrate' else None
    if isinstance(tuning, dict):
        problems += ['tuning.%s was renamed: give %s' % (old, new) for old, new in RENAMED_IN_TUNING if old in tuning]
    for option, name in sorted(RENAMED_IN.items()) if module == 'evacuate' else ():
        problems += ['%s.%s' % (option, x) for x in renamed_problems(name, args.get(option), inner=True)]
    return problems


class RenamedOptionsAction(ActionBase):
    """A module run as any module is (async and check mode included), after its arguments were looked at for
    options given by an old name."""

    _supports_check_mode = True
    _supports_async = True

    def module_name(self):
        return self._task.action.rsplit('.', 1)[-1]

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        problems = renamed_problems(self.module_name(), self._task.args)
        if problems:
            return dict(result, failed=True, msg='; '.join(problems) + ' (nothing ran)')
        wrap_async = bool(self._task.async_val) and not self._connection.has_native_async
        result.update(self._execute_module(task_vars=task_vars, wrap_async=wrap_async))
        if not wrap_async:
            # (as ansible's own action for modules: the temporary directory goes once the module ran)
            self._remove_tmp_path(self._connection._shell.tmpdir)  # pylint: disable=protected-access
        return result

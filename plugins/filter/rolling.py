# -*- coding: utf-8 -*-
# Copyright (c) vmmigration.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Filters of the rolling_maintenance role: which run a job is, the cluster plan and the run's report (docs:
rolling_run.yml, rolling_plan.yml, rolling_report.yml)."""

from ansible.errors import AnsibleFilterError

from ansible_collections.vmmigration.libvirt.plugins.module_utils.orchestration import rolling as ROLLING
from ansible_collections.vmmigration.libvirt.plugins.module_utils.orchestration import run_record as RUNRECORD


def rolling_plan(host_plans, names, non_live_policy='skip', expected_s=300, return_vms='original', role_overhead_s=0.0,
                 cpu=None, batch=1, anti_affinity=None, unplaceable='refuse', stop_vms=None, not_needed='skip',
                 stop_start_s=60.0, role_overheads=None):
    """The cluster plan from each host's drain plan."""
    if unplaceable not in ('refuse', 'skip', 'stop_in_place'):
        raise AnsibleFilterError('rolling_plan: unplaceable is refuse, skip or stop_in_place (got %r)' % (unplaceable,))
    if not_needed not in ('skip', 'in_place'):
        raise AnsibleFilterError('rolling_plan: not_needed is skip or in_place (got %r)' % (not_needed,))
    if not isinstance(host_plans, list) or not all(isinstance(h, dict) and 'name' in h for h in host_plans):
        raise AnsibleFilterError('rolling_plan expects a list of {name, record, plan} (got %r)' % (host_plans,))
    return ROLLING.cluster_plan(ROLLING.plain(host_plans), list(names), non_live_policy=non_live_policy,
                                expected_s=float(expected_s), return_vms=return_vms,
                                role_overhead_s=float(role_overhead_s or 0.0), cpu=ROLLING.plain(cpu) or None,
                                batch=_int(batch, 'batch'), anti_affinity=ROLLING.plain(anti_affinity) or None,
                                unplaceable=unplaceable, stop_vms=list(stop_vms or []), not_needed=not_needed,
                                stop_start_s=float(stop_start_s), role_overheads=_overheads(role_overheads))


def _overheads(value):
    """ROLE_OVERHEADS checked: {drain, return: {alone, alongside: seconds (0 or more) or None}}, or nothing."""
    value = ROLLING.plain(value) or {}
    ok = isinstance(value, dict) and all(
        ph in ('drain', 'return') and isinstance(kinds, dict) and all(
            kd in ('alone', 'alongside') and (v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)
                                                            and v >= 0))
            for kd, v in kinds.items())
        for ph, kinds in value.items())
    if not ok:
        raise AnsibleFilterError('rolling_plan: role_overheads is {drain, return: {alone, alongside: seconds or null}} '
                                 '(calibrated_plan returns it; got %r)' % (value,))
    return value or None


def rolling_batches(records, names, batch=1):
    """The steps a run would take its hosts in (before their plans are checked): [[host, ...], ...]."""
    if not isinstance(records, dict):
        raise AnsibleFilterError('rolling_batches expects {host: record} (got %r)' % (records,))
    return ROLLING.candidate_batches(list(names), ROLLING.plain(records), _int(batch, 'batch'))


def _int(value, what):
    try:
        value = int(value)
    except (TypeError, ValueError):
        value = 0
    if value < 1:
        raise AnsibleFilterError('%s must be a whole number of hosts, at least 1' % what)
    return value


def rolling_report(records, run_id='', names=None, predicted_total_s=None):
    """The run's report (dict with table and html) from the per-host records."""
    if not isinstance(records, list) or not all(isinstance(r, dict) and 'name' in r for r in records):
        raise AnsibleFilterError('rolling_report expects a list of host records with a name (got %r)' % (records,))
    records = ROLLING.plain(records)
    if names:
        rank = dict((n, i) for i, n in enumerate(names))
        records.sort(key=lambda r: (rank.get(r['name'], len(rank)), r['name']))
    return ROLLING.report(records, run_id=run_id, predicted=predicted_total_s)


def rolling_run(records_by_host, group, run_id='', resume=False, abandon='', names=None, now=None):
    """Which run a job is, from the hosts' records ({host: [record, ...]}): {run_id, mode, abandon, message}; a run
    that cannot be started or resumed fails the task with what to do."""
    if not isinstance(records_by_host, dict):
        raise AnsibleFilterError('rolling_run expects {host: [record, ...]} (got %r)' % (records_by_host,))
    try:
        return RUNRECORD.choose_run(ROLLING.plain(records_by_host), group, run_id=run_id or '',
                                    resume=_bool(resume), abandon=abandon or '', now=now, names=list(names or []))
    except RUNRECORD.RecordError as e:
        raise AnsibleFilterError(str(e))


def _bool(value):
    if isinstance(value, str):
        return value.strip().lower() in ('1', 'true', 'yes', 'on', 'y')
    return bool(value)


class FilterModule:  # pylint: disable=too-few-public-methods
    def filters(self):
        return {'rolling_plan': rolling_plan, 'rolling_report': rolling_report, 'rolling_batches': rolling_batches,
                'rolling_run': rolling_run}

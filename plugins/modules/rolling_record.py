#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) vmmigration.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

DOCUMENTATION = r'''
---
module: rolling_record
short_description: A hypervisor's own record of a rolling maintenance run - read, start, update, abandon
version_added: 0.1.0
description:
  - Each hypervisor of a rolling maintenance run keeps the record of what the run did to it in its own state
    directory (O(state_dir)/runs/RUN_ID.json, readable by its owner only, written atomically) - the run's identity
    (group, run id, hosts), where the host stands, each phase's times, the VMs its drains sent away and where, the
    VMs that came back, its earlier attempts.
  - A later job - another AWX job in a new container, another controller - reads the run from the hosts; the
    controller's report is a view of these records. The rolling_maintenance role writes them; this module is
    public so that a playbook can read where a run stands (O(op=read)).
  - A record that does not parse, or that a newer version of this collection wrote, is refused by path, before
    anything is written.
author:
  - vmmigration.libvirt developers (@vmmigration)
extends_documentation_fragment:
  - vmmigration.libvirt.attributes
attributes:
  check_mode:
    support: full
    details:
      - Writes nothing; returns the record as it would be written, and C(changed) says whether it would differ.
  diff_mode:
    support: none
  idempotent:
    support: full
    details:
      - O(op=start) on a host that already has the run's record leaves it as it is; O(op=abandon) of an abandoned run
        changes nothing. O(op=update) writes what it is given (each phase mark carries its own time).
seealso:
  - module: vmmigration.libvirt.evacuate
  - module: vmmigration.libvirt.evacuation_status
options:
  state_dir:
    description: The host's state directory for rolling maintenance (the records go into its C(runs) subdirectory).
    type: path
    required: true
  op:
    description:
      - V(read) returns every record on the host (O(group) is not needed).
      - V(start) records the run O(run_id) of O(group) over O(hosts) on this host (state V(planned)), unless it is
        recorded already.
      - V(update) applies, in this order, O(begin), O(stopping), O(stopped), O(started), O(moves), O(marks), O(error) and
        O(done) to the run's record.
      - V(abandon) marks the run's record V(abandoned) (where it is not finished) - a new run may then start.
    type: str
    choices: [read, start, update, abandon]
    default: read
  group:
    description: The inventory group the run maintains (required for every O(op) but V(read)).
    type: str
  run_id:
    description: The run (letters, digits, V(_), V(.), V(-)); required for every O(op) but V(read).
    type: str
  host:
    description: This host's inventory name, as the run's records name it (O(op=start)).
    type: str
  hosts:
    description: The run's hosts, in order (O(op=start)).
    type: list
    elements: str
    default: []
  at:
    description: The time to record (seconds since the epoch; the controller's clock, so one run has one clock).
    type: float
  begin:
    description:
      - Start a new attempt at this host with these predicted times (an earlier attempt's phases move into
        C(attempts)).
    type: dict
  moves:
    description:
      - What a drain or the return moved - C(kind) (V(drained) or V(returned)), C(results) (the evacuate module's),
        C(started_at) (its drain's start).
    type: dict
  stopping:
    description:
      - VMs about to be stopped in place (recorded before the stop is asked - a stop cut short never leaves a VM down
        that no record names), or gone down with this host (O(stopping_how=host_restarted)). Each counts as stopped
        until O(started) says it is back.
    type: list
    elements: str
  stopping_how:
    description: V(stopping) (about to be stopped) or V(host_restarted) (went down with the host).
    type: str
    choices: [stopping, host_restarted]
    default: stopping
  stopped:
    description:
      - The VMs stopped in place on this host (the results of M(vmmigration.libvirt.stop_in_place) with
        O(vmmigration.libvirt.stop_in_place#module:state=stopped)); those it found already stopped are not added.
    type: list
    elements: dict
  started:
    description:
      - The VMs started again on this host (its results with O(vmmigration.libvirt.stop_in_place#module:state=running)),
        and those it found running already (back from when they were seen so).
    type: list
    elements: dict
  marks:
    description:
      - Phase marks, each C(phase) (drain, stop, maintenance, gate, start, return), C(mark) (start, end) and C(at) (O(at) when
        not given).
    type: list
    elements: dict
    default: []
  error:
    description: The attempt failed in the phase it is in, with this error.
    type: str
  done:
    description: The host is done in this run.
    type: bool
    default: false
  calibrate:
    description:
      - Add what a drain measured to this host's calibration (O(state_dir)/calibration.json) - C(report) (the
        evacuate module's result), C(role_wall_s) (the wall of the role that ran it), C(default_rate),
        C(drains_alongside) (the other drains that ran at the same time - each sample keeps it, and the moves of its
        drain that ran alongside it), C(phase) (the rolling phase it was - V(drain) or V(return)). The next plan, from
        any controller, reads it back (O(op=read)) and predicts from the samples of the concurrency it will run at,
        each phase from its own.
    type: dict
'''

EXAMPLES = r'''
- name: Where the runs stand on this hypervisor
  vmmigration.libvirt.rolling_record:
    state_dir: /var/lib/vmmigration/rolling
  register: records

- name: Record that this host's maintenance starts
  vmmigration.libvirt.rolling_record:
    state_dir: /var/lib/vmmigration/rolling
    op: update
    group: hypervisors
    run_id: hypervisors-20261204T150000Z
    marks:
      - {phase: maintenance, mark: start, at: "{{ now().timestamp() }}"}
'''

RETURN = r'''
records:
  description: Every run record on the host, oldest first (O(op=read)).
  returned: when O(op=read)
  type: list
  elements: dict
calibration:
  description: What this host's drains measured, for the predictions (C({}) when nothing yet, or when unreadable).
  returned: when O(op=read)
  type: dict
record:
  description: The run's record on this host as written (or as it would be, in check mode).
  returned: when O(op) is not V(read) and the host has the run's record
  type: dict
path:
  description: The record's file.
  returned: when O(op) is not V(read)
  type: str
still_stopped:
  description: The VMs stopped in place on this host by the run and not started again yet, in the order they stopped.
  returned: when O(op) is V(start) or V(update)
  type: list
  elements: str
  sample: [db01]
'''

import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vmmigration.libvirt.plugins.module_utils.decide import calibration as CAL
from ansible_collections.vmmigration.libvirt.plugins.module_utils.orchestration import run_record as R


def _time(value, default):
    try:
        return float(value)
    except (TypeError, ValueError):
        return default if default is not None else time.time()


def _apply(record, p):
    if p['begin'] is not None:
        record = R.begin(record, p['begin'].get('predicted', p['begin']))
    if p['stopping']:
        record = R.add_stopping(record, p['stopping'], p['at'] or time.time(), p['stopping_how'])
    for kind in ('stopped', 'started'):
        if p[kind]:
            record = R.add_power(record, kind, p[kind], p['at'] or time.time())
    if p['moves']:
        record = R.add_moves(record, p['moves'].get('kind'), p['moves'].get('results') or [],
                             p['moves'].get('started_at'))
    for m in p['marks']:
        record = R.mark(record, m.get('phase'), m.get('mark'), _time(m.get('at'), p['at']))
    if p['error']:
        record = R.fail(record, p['error'], p['at'] or time.time())
    if p['done']:
        record = dict(record, state='done')
    return record


def main():
    module = AnsibleModule(argument_spec=dict(
        state_dir=dict(type='path', required=True),
        op=dict(type='str', default='read', choices=['read', 'start', 'update', 'abandon']),
        group=dict(type='str'),
        run_id=dict(type='str'),
        host=dict(type='str'),
        hosts=dict(type='list', elements='str', default=[]),
        at=dict(type='float'),
        begin=dict(type='dict'),
        moves=dict(type='dict'),
        stopping=dict(type='list', elements='str'),
        stopping_how=dict(type='str', default='stopping', choices=['stopping', 'host_restarted']),
        stopped=dict(type='list', elements='dict'),
        started=dict(type='list', elements='dict'),
        marks=dict(type='list', elements='dict', default=[]),
        error=dict(type='str'),
        done=dict(type='bool', default=False),
        calibrate=dict(type='dict'),
    ), required_if=[('op', 'start', ('group', 'run_id', 'host')), ('op', 'update', ('group', 'run_id')),
                    ('op', 'abandon', ('group', 'run_id'))], supports_check_mode=True)
    p = module.params
    try:
        records = R.load_all(p['state_dir'])
        if p['op'] == 'read':
            cal, warning = R.load_calibration(p['state_dir'])
            if warning:
                module.warn(warning)
            module.exit_json(changed=False, records=records, calibration=cal)
        if not R.RUN_ID.match(p['run_id']):
            raise R.RecordError('a run id is letters, digits, _, . and - (got %r)' % p['run_id'])
        path = R.record_path(p['state_dir'], p['run_id'])
        old = dict((r['run_id'], r) for r in records).get(p['run_id'])
        if old is not None and old.get('group') != p['group']:
            raise R.RecordError('%s records run %s of group %s, not of %s' % (path, p['run_id'], old.get('group'),
                                                                              p['group']))
        if p['op'] == 'start':
            new = old or R.new_record(p['group'], p['run_id'], p['host'], p['hosts'], p['at'] or time.time())
        elif old is None:
            if p['op'] == 'abandon':
                module.exit_json(changed=False, path=path)
            raise R.RecordError('%s: this host has no record of run %s (start the run first)' % (path, p['run_id']))
        elif p['op'] == 'abandon':
            new = old if old.get('state') in R.FINISHED else dict(old, state='abandoned', abandoned_at=p['at'] or time.time(),
                                                                  abandoned_in=old.get('state'))
        else:
            new = _apply(old, p)
        changed = new != old
        if changed and not module.check_mode:
            R.save(p['state_dir'], new)
        if p['calibrate'] and p['op'] == 'update':
            c = p['calibrate']
            cal = CAL.update(R.load_calibration(p['state_dir'])[0], c.get('report') or {},
                             role_wall_s=c.get('role_wall_s'), default_rate=int(c.get('default_rate') or 1000),
                             now=p['at'] or time.time(), drains_alongside=c.get('drains_alongside'),
                             phase=c.get('phase') if c.get('phase') in CAL.PHASES else None)
            changed = True
            if not module.check_mode:
                R.save_json(R.calibration_path(p['state_dir']), cal)
    except R.RecordError as e:
        module.fail_json(msg=str(e))
    module.exit_json(changed=changed, record=new, path=path, still_stopped=R.still_stopped(new))


if __name__ == '__main__':
    main()

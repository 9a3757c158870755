#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) vmmigration.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

DOCUMENTATION = r'''
---
module: evacuate
short_description: Drain a hypervisor - move every VM away under concurrency limits, verify, report
version_added: 0.1.0
description:
  - Runs on the hypervisor to drain (O(uri)). Plans like M(vmmigration.libvirt.evacuation_plan), then runs
    the moves in parallel threads, longest first, never more than O(max_outbound) (and O(max_total)) at
    once and never more than O(max_inbound) into one destination. Each live migration is
    M(vmmigration.libvirt.migrate)'s engine (with O(migrate_options)), with O(per_vm_timeout_s) as its hard
    deadline; each cold one is M(vmmigration.libvirt.cold_migrate)'s (with O(cold_options)).
  - VMs that can only move cold follow O(non_live_policy) - V(skip) (left running, reported), V(shutdown)
    (shut down on the source - the collection's one shutdown policy - ACPI pressed every 5 s for O(cold_options)'s
    C(shutdown_timeout_s), powered off after that only with its C(force); a guest that did not stop is said so and
    still runs there) or V(cold) (cold-migrated). VMs no destination can take are left and reported.
  - One VM failing does not stop the others unless O(stop_on_failure); after O(timeout_s) no new move starts.
    A failed live migration is rolled back by the engine - the VM keeps running on the source.
  - Progress goes to O(status_file) (read it with M(vmmigration.libvirt.evacuation_status)); every plan,
    start, end and shutdown is appended to O(journal) as one JSON line, so an interrupted run can be
    read back, resumed (run again - what is still on the source is planned anew) or rolled back.
  - After the drain the source's running domains are compared with what the policy left there. A drain that
    leaves any VM running on the source ends in state V(incomplete) and B(fails), naming each VM left and why,
    unless O(allow_incomplete) (then it returns V(incomplete) with a warning).
  - A run in which any VM's move failed (RV(failed_vms)) B(fails) too, naming each failed VM with what it ended as
    and its error - also when nothing runs on the source any more (state V(evacuated)), for a VM whose move failed
    may have ended shut down, or moved with an error - unless O(allow_failed_vms) (then it returns with a warning).
  - A destination that is the source itself (the same libvirt host UUID, under another name or URI) is
    refused before anything changes.
author:
  - vmmigration.libvirt developers (@vmmigration)
extends_documentation_fragment:
  - vmmigration.libvirt.connection
  - vmmigration.libvirt.connection.retries
  - vmmigration.libvirt.attributes
  - vmmigration.libvirt.evacuation
attributes:
  action:
    description: Indicates this has a corresponding action plugin so some parts of the options can be executed on the controller.
    support: full
    details:
      - O(background) - the whole drain in one task, its report and calibration written on the controller.
  check_mode:
    support: full
    details:
      - Returns the plan (destinations, methods, predicted times, refusals) and moves nothing.
  diff_mode:
    support: none
  idempotent:
    support: full
    details:
      - A host with nothing left to move reports no change.
seealso:
  - module: vmmigration.libvirt.evacuation_plan
  - module: vmmigration.libvirt.evacuation_status
  - module: vmmigration.libvirt.migrate
  - module: vmmigration.libvirt.cold_migrate
options:
  per_vm_timeout_s:
    description: Hard deadline of each live migration (the engine then aborts it, leaving the VM on the source).
    type: float
    default: 600
  timeout_s:
    description: After this many seconds no new migration starts (running ones finish or hit their own deadline).
    type: float
    default: 3600
  stop_on_failure:
    description: Start no new migration after one failed.
    type: bool
    default: false
  announce:
    description: Have QEMU announce each moved VM's NICs again on the destination (QMP announce-self through libvirt).
    type: bool
    default: true
  verify_addresses_by_vm:
    description:
      - Addresses to verify per VM (VM name to a list of IPv4/IPv6 addresses). After a VM moved (and was
        announced), this host sends ICMP echo to its addresses until they answer or O(verify_timeout_s) passes -
        the same step M(vmmigration.libvirt.migrate) runs with its O(vmmigration.libvirt.migrate#module:verify_addresses).
      - Each result says when they answered (C(answering)); VMs that moved but stayed silent are listed in
        RV(silent_vms) with a warning (the move is not undone). Needs root on this host (raw ICMP sockets).
    type: dict
    default: {}
  verify_timeout_s:
    description: Seconds each VM's addresses have to answer after its move (a cold move's VM boots first - allow for it).
    type: float
    default: 10
  migrate_options:
    description:
      - Options of the live migrations, as M(vmmigration.libvirt.migrate) takes them (for example
        V(allow_postcopy), V(bandwidth_mibps), V(max_downtime_ms), V(completion)); the rest keep that module's defaults.
      - Its V(tls) (default V(auto)) and V(allow_plaintext) decide each move's transport before the drain starts; a
        move that would send a guest's memory in the clear without V(allow_plaintext=true) stops the drain
        before anything moves, naming what to configure. Each planned move says its C(transport).
      - Typed as that module types its options (V(tuning) included), before anything moves. Not V(headroom_mib)
        (the drain's O(headroom_mib) is every move's), V(hard_timeout_s) (O(per_vm_timeout_s)) or V(status_file) -
        the drain sets them.
    type: dict
    default: {}
  cold_options:
    description:
      - Options of the cold migrations, as M(vmmigration.libvirt.cold_migrate) takes them (typed as it types them),
        but V(headroom_mib) - the drain's O(headroom_mib) is every move's.
    type: dict
    default: {}
  journal:
    description:
      - Journal file on this host (JSON lines, appended), locked while the drain writes it.
      - Two drains of one host never run at once whatever journal each names, the host's own lock
        (C(/run/lock/vmmigration-drain-<host uuid>.lock)) refuses the second before it changes anything.
    type: path
  status_file:
    description: Progress file on this host, rewritten while the drain runs.
    type: path
  status_tag:
    description:
      - Written into O(status_file) as C(tag), so that a reader tells this drain's progress from an earlier drain's
        (O(background) sets it).
    type: str
  source_name:
    description: Name of the source in the report (for example its inventory name). Default - O(uri).
    type: str
  return_home:
    description:
      - Instead of draining, bring back every VM that O(journal) says a drain moved away and no return has
        brought back yet, each from where it went (the URI the drain used), under the same limits.
      - There is no plan for the way back - each move checks this host as it starts, counting the memory of the VMs
        still on their way here (from the drain's journal); one that does not fit stays where it is, with nothing
        changed, and a later return brings it back.
      - Needs O(journal) and O(return_uri).
    type: bool
    default: false
  return_uri:
    description: This host's libvirt URI as the destinations reach it (the target of the migrations back).
    type: str
  plan:
    description:
      - An approved plan - RV(vmmigration.libvirt.evacuation_plan#module:plan), for example saved by the preflight
        role - to run as it is instead of planning anew. Without it the drain makes its own plan.
      - When the drain starts only what can have changed since is checked again - each VM still running here
        with the same UUID, each destination reachable, without a domain of that name or UUID and with the free
        memory the plan's moves to it need (with the plan's headroom), and VMs started since (they stay). A move
        that no longer holds is left, with the change as its reason (RV(changes)); the moves themselves do not
        check again (no second round of checks and storage probes).
      - Refused, before anything happens, when it is of another version, for another host or was made for
        another O(non_live_policy) (cold moves planned or not).
    type: dict
  allow_incomplete:
    description:
      - Return without failing when VMs are still running on the source after the drain (state V(incomplete),
        with a warning), for example when O(non_live_policy=skip) is meant to leave some behind.
      - By default such a drain fails, so that a host is never taken for empty when it is not.
    type: bool
    default: false
  make_dirs:
    description:
      - Make the missing directories of O(journal) and O(status_file) (mode C(0700)) before the drain starts, instead
        of refusing. Not in check mode.
    type: bool
    default: false
  background:
    description:
      - Run the whole drain in one task, as the C(vmmigration.libvirt.evacuate_host) role does - done by the action
        plugin on the controller; the module itself ignores this option.
      - The drain starts in the background on this host (as C(async) runs a module - it goes on if the controller
        is lost, and a later run finds it with M(vmmigration.libvirt.evacuation_status)); its progress lines are
        printed on the controller as they change (the task is never minutes silent); its result is read back
        when it ends and returned as this task's result, with its report and calibration written on the
        controller when asked.
      - Needs O(status_file). In check mode the module runs as without it (a plan; nothing in the background).
    type: dict
    suboptions:
      async_s:
        description:
          - The drain's bound in the background, in seconds (it is ended after it).
          - Default - O(timeout_s) + the longest move (twice O(per_vm_timeout_s), at least 1920) + 900.
        type: int
      follow_interval_s:
        description: Each read of the status waits up to this long for news.
        type: float
        default: 10
      report_dir:
        description: Directory on the controller for the drain's C(report.json), C(report.txt) and C(timeline.html) (0600).
        type: path
      calibration_file:
        description:
          - Calibration file on the controller that this drain's samples are added to (read, updated and replaced
            under a lock - hosts draining side by side all add theirs).
        type: path
      started_at:
        description: When the caller's own work around the drain started (UNIX time) - its wall is calibrated too.
        type: float
      default_rate_mibps:
        description: The copy rate the calibration assumes until it has measured one.
        type: float
        default: 1000
  allow_failed_vms:
    description:
      - Return without failing when VMs failed to move (RV(failed_vms)), with a warning naming each failed VM, what
        it ended as and its error - for example when the caller reports and handles failures itself, as the
        C(vmmigration.libvirt.evacuate_host) role does.
      - By default a run with any failed VM fails with that message, whatever its state - a drain that leaves
        nothing running on the source (V(evacuated)) too, and a O(return_home) with VMs that failed to come back.
        O(allow_incomplete) does not cover failed VMs.
    type: bool
    default: false
'''

EXAMPLES = r'''
- name: Drain hv1 onto hv2 and hv3, cold-migrating what cannot move live
  vmmigration.libvirt.evacuate:
    destinations:
      - {name: hv2, uri: qemu+tls://hv2.example.com/system}
      - {name: hv3, uri: qemu+tls://hv3.example.com/system}
    non_live_policy: cold
    max_outbound: 2
    max_inbound: 1
    migrate_options:
      allow_postcopy: true
      max_downtime_ms: 300
    journal: /var/lib/vmmigration/evacuate.journal
    status_file: /run/vmmigration-evacuate.json
  delegate_to: hv1
  async: 7200
  poll: 0
  register: drain

- name: The whole drain in one task - in the background on hv1, its progress shown, its report kept here
  vmmigration.libvirt.evacuate:
    destinations:
      - {name: hv2, uri: qemu+tls://hv2.example.com/system}
    journal: /var/lib/vmmigration/evacuate.journal
    status_file: /var/lib/vmmigration/evacuate.status.json
    make_dirs: true
    background:
      follow_interval_s: 5
      report_dir: /var/tmp/vmmigration-reports/hv1
  delegate_to: hv1
  register: drain
'''

RETURN = r'''
state:
  description:
    - V(planned) (check mode), V(evacuated) (no VM runs on the source) or V(incomplete) (VMs still run on
      the source - the module fails unless O(allow_incomplete)); with O(return_home), V(returned_home) or V(nothing_moved).
    - V(unverified) when the source cannot be read after the moves (a lost connection) - the module fails; RV(results)
      still say what each move did.
    - The module also fails when a VM failed (RV(failed_vms)), in state V(evacuated) too, unless O(allow_failed_vms).
  returned: always
  type: str
plan:
  description: The plan, as M(vmmigration.libvirt.evacuation_plan) returns it.
  returned: always
  type: dict
to_do:
  description: How many VMs the run moves or shuts down (0 - nothing to do).
  returned: always
  type: int
plan_lines:
  description: The plan as readable lines, with what the policy does to VMs that can only move cold.
  returned: always
  type: list
  elements: str
results:
  description:
    - One entry per VM moved or tried - name, destination, method, state, strategy, total_time_s,
      downtime_ms, bytes_transferred, postcopy, paused, announced (true, or why QEMU's announce-self
      failed; with O(announce)), error, start_s and end_s (from the drain's start), slot_s (when it got its
      migration slot - after start_s for a move checked and planned ahead while others migrated; null for one that
      ended before it got one), moved_s (when it
      ran on its destination and gave its migration slot to the next move - its announce and verification go on to
      end_s; null when it did not move), and the engine's decisions.
    - A VM that went to an alternate (RV(rerouted)) also has instead_of (the destination the plan had) and
      rerouted_because.
  returned: when the drain ran
  type: list
  elements: dict
rerouted:
  description:
    - VMs whose destination refused them or could not be reached during the drain, with nothing changed (the
      guest kept running on the source alone, the destination left with nothing of it), sent to the next of
      their alternates (ranked when the plan was made, allowed by the same checks) that still held - reachable,
      no domain of that name or UUID, the free memory beside the headroom and the moves still going there, no VM
      of its anti-affinity group there - under the same concurrency limits. Each - name, from, to, why (the
      refusal), at_s.
    - A failure that changed anything (a post-copy, a state that could not be read back) is never retried
      elsewhere; a VM with no alternate left that holds ends failed, as its move did.
  returned: when the drain ran
  type: list
  elements: dict
left:
  description: VMs not moved - name, action (skip, shutdown, not_started), reason, and the shutdown's result.
  returned: always
  type: list
  elements: dict
changes:
  description:
    - With O(plan), what changed since the plan was approved, one line per VM - each such VM stays, or goes to
      the first of its alternates that still holds (the line says which).
  returned: always
  type: list
  elements: str
approved_plan:
  description: Whether the drain ran an approved O(plan) (else it made its own).
  returned: always
  type: bool
moved:
  description: VMs that left the source.
  returned: when the drain ran
  type: list
  elements: str
journal_errors:
  description:
    - Journal entries that could not be written on the source host (a full disk). The drain never abandons a move
      for it; the module fails when this is not empty, since a later O(return_home) reads the journal.
  returned: when the drain ran
  type: list
  elements: str
overran:
  description:
    - VMs whose move was still running when the drain reached its own limit (O(timeout_s) plus the time its moves
      are expected to take). Nothing more starts then, but a running move is never abandoned - the drain waits for
      its engine, which ends it by its own deadlines (a cold copy's grows with the disk).
  returned: when the drain overran
  type: list
  elements: str
failed_vms:
  description:
    - VMs whose move failed - each with its state in RV(results) (V(rolled_back) - it runs on the source;
      V(rolled_back_unconfirmed) - it runs on the source again, but its destination could not be read and may run it
      too (it is never tried elsewhere; check that host first); V(destination_unknown) or V(destination_not_running) -
      libvirt ended the job but the destination's guest is not confirmed running, the source definition kept;
      C(source_) and its state there - not running on the source, not on the destination either;
      V(migrated) with an error - it moved but its source cleanup failed; V(postcopy_failed) or
      V(postcopy_running) - split between both hosts, never destroyed; V(stopped_on_source) - a cold move that failed
      and left the guest shut down on the source; V(unknown) - the move failed and where the guest runs could not be
      read back, so nothing was resumed or started; check both hosts before starting it), and its C(error).
    - Not empty - the module fails, naming each with what it ended as and its error, unless O(allow_failed_vms).
  returned: when the drain ran
  type: list
  elements: str
still_running_on_source:
  description: Domains running on the source after the drain.
  returned: when the drain ran
  type: list
  elements: str
silent_vms:
  description: VMs that moved but whose O(verify_addresses_by_vm) did not answer within O(verify_timeout_s).
  returned: when the drain ran
  type: list
  elements: str
verified:
  description: Whether what still runs on the source is exactly what the policy and failures left there.
  returned: when the drain ran
  type: bool
started_at:
  description: Epoch time at which the drain started (each result's C(start_s) and C(end_s) count from it).
  returned: always
  type: float
wall_s:
  description: Seconds the drain took.
  returned: when the drain ran
  type: float
report:
  description:
    - The report's text lines (RV(report.table)) and its title. The HTML timeline of the migrations is drawn on the
      controller from RV(results) - into C(timeline.html) with O(background.report_dir) - never carried in the result.
  returned: when the drain ran
  type: dict
  contains:
    table:
      description: One aligned line per VM - destination, method, strategy, state, start, time, downtime, MiB moved.
      type: list
      elements: str
    title:
      description: The timeline's title - C(Evacuation of SOURCE), or C(Return to SOURCE).
      type: str
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver.connection import (
    CONNECTION_ARGSPEC,
    ClientCache,
    libvirt_session,
    require_libvirt,
    start_event_loop,
)
from ansible_collections.vmmigration.libvirt.plugins.module_utils.engines.drain import Evacuation, PlaintextRefused
from ansible_collections.vmmigration.libvirt.plugins.module_utils.engines.drain_files import EvacuationRunning
from ansible_collections.vmmigration.libvirt.plugins.module_utils.engines.drain_plan import (
    PLAN_ARGSPEC,
    drain_move_options,
    validate_plan_options,
)
from ansible_collections.vmmigration.libvirt.plugins.module_utils.engines.live import file_option_problems, make_dirs
from ansible_collections.vmmigration.libvirt.plugins.module_utils.engines.pipeline import check_addresses


def main():
    argument_spec = dict(
        per_vm_timeout_s=dict(type='float', default=600),
        timeout_s=dict(type='float', default=3600),
        stop_on_failure=dict(type='bool', default=False),
        announce=dict(type='bool', default=True),
        verify_addresses_by_vm=dict(type='dict', default={}),
        verify_timeout_s=dict(type='float', default=10),
        migrate_options=dict(type='dict', default={}),
        cold_options=dict(type='dict', default={}),
        journal=dict(type='path'),
        status_file=dict(type='path'),
        status_tag=dict(type='str'),
        source_name=dict(type='str'),
        return_home=dict(type='bool', default=False),
        return_uri=dict(type='str'),
        allow_incomplete=dict(type='bool', default=False),
        allow_failed_vms=dict(type='bool', default=False),
        plan=dict(type='dict'),
        make_dirs=dict(type='bool', default=False),
        # (done by the action plugin on the controller: never reaches the host)
        background=dict(type='dict', options=dict(
            async_s=dict(type='int'), follow_interval_s=dict(type='float', default=10),
            report_dir=dict(type='path'), calibration_file=dict(type='path'), started_at=dict(type='float'),
            default_rate_mibps=dict(type='float', default=1000))),
    )
    argument_spec.update(PLAN_ARGSPEC)
    argument_spec.update(CONNECTION_ARGSPEC)
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    require_libvirt(module)
    problems = validate_plan_options(p)
    found, p['migrate_options'], p['cold_options'] = drain_move_options(p['migrate_options'], p['cold_options'])
    problems += found
    if p['return_home'] and p['plan']:
        problems.append('return_home runs the journal, not a plan: give one or the other')
    if p['return_home'] and not (p['journal'] and p['return_uri']):
        problems.append('return_home needs journal and return_uri')
    if p['per_vm_timeout_s'] <= 0 or p['timeout_s'] <= 0:
        problems.append('per_vm_timeout_s and timeout_s must be greater than 0')
    problems += verify_option_problems(p)
    if problems:
        module.fail_json(msg='; '.join(problems))
    if not module.check_mode:
        # (check mode writes neither; a role makes their directory after its check-mode look, or asks make_dirs -
        # only for input found good: bad input changes nothing)
        problems = make_dirs(p, ('journal', 'status_file')) if p['make_dirs'] else []
        problems += file_option_problems(p, ('journal', 'status_file'))
        if problems:
            module.fail_json(msg='; '.join(problems))
    start_event_loop()
    with libvirt_session(module, errors=(EvacuationRunning, PlaintextRefused)) as cache:
        cache.get(p['uri']).host_uuid()
        result = Evacuation(cache, p, lambda: ClientCache(p['connect_retries'], p['connect_retry_delay_s'])).run(
            check_mode=module.check_mode)
    if result.get('results') is not None:
        result['silent_vms'] = [r['name'] for r in result['results']
                                if r.get('answering') and not r['answering'].get('all_answered')]
        if result['silent_vms']:
            module.warn('moved, but their addresses did not answer within %s s: %s (see answering in results)'
                        % (p['verify_timeout_s'], ', '.join(result['silent_vms'])))
    if result.get('state') == 'unverified':
        module.fail_json(msg='the drain ran (%d moved, %d failed) but %s: see results and the journal' % (
            len(result['moved']), len(result['failed_vms']), result['unverified_because']), **result)
    if result.get('journal_errors'):
        # a later return of the VMs (return_home) reads the journal: a drain it cannot trust is never a success
        module.fail_json(msg='the drain ran (%d moved, %d failed) but its journal is incomplete: %s - where each VM '
                         'went is in results; a return home from this journal would miss what it lacks' % (
                             len(result.get('moved') or []), len(result.get('failed_vms') or []),
                             '; '.join(result['journal_errors'])), **result)
    failures, notes = end_messages(result, p)
    for note in notes:
        module.warn(note)
    if failures:
        module.fail_json(msg=' | '.join(failures), **result)
    module.exit_json(**result)


def verify_option_problems(p):
    """verify_addresses_by_vm: VM name -> list of IP addresses; verify_timeout_s positive."""
    problems = []
    for name, addresses in sorted((p['verify_addresses_by_vm'] or {}).items()):
        if not isinstance(addresses, list) or not addresses:
            problems.append('verify_addresses_by_vm: %s needs a non-empty list of addresses' % name)
            continue
        problems += ['verify_addresses_by_vm: %s: %s' % (name, x) for x in check_addresses([str(a) for a in addresses])]
    if p['verify_timeout_s'] <= 0:
        problems.append('verify_timeout_s must be greater than 0')
    return problems


def end_messages(result, p):
    """What the end of a run fails with (empty: it does not fail) and what it warns about: VMs still running on
    the source (state incomplete, allowed by allow_incomplete) and VMs whose move failed, whatever the state
    (allowed by allow_failed_vms). A failed VM is named once: not again when the incomplete message names it
    (it still runs on the source), unless that message is allowed and the failures are not.
    """
    fail, warn = [], []
    named = set()
    if result.get('state') == 'incomplete':
        left = incomplete_message(result)
        if p['allow_incomplete']:
            warn.append('the drain is incomplete (allow_incomplete): %s' % left)
        else:
            fail.append('the drain is incomplete: %s' % left)
        if not p['allow_incomplete'] or p['allow_failed_vms']:
            named = set(result.get('still_running_on_source') or [])
    rest = [r for r in result.get('results') or [] if r.get('error') and r['name'] not in named]
    if rest:
        if any(r.get('error') and r['name'] in named for r in result.get('results') or []):
            lead = 'besides those still on the source, %d VM(s) failed' % len(rest)
        else:
            lead = 'the %s ended in state %s, but %d VM(s) failed' % (
                'return home' if p.get('return_home') else 'drain', result.get('state'), len(rest))
        text = '%s%s - %s' % (lead, ' (allow_failed_vms)' if p['allow_failed_vms'] else '', failed_message(rest))
        (warn if p['allow_failed_vms'] else fail).append(text)
    return fail, warn


def failed_message(results):
    """Each failed VM of RESULTS with what it ended as and its error."""
    return '; '.join('%s (%s: %s)' % (r['name'], r.get('state') or 'failed', r['error']) for r in results)


def incomplete_message(result):
    """Each VM still on the source, and why (failed, left by the policy, never started)."""
    why = dict((x['name'], '%s: %s' % (x['action'], x.get('reason') or x.get('result') or '')) for x in result['left'])
    why.update((r['name'], 'failed: %s' % r['error']) for r in result.get('results') or [] if r.get('error'))
    return '%d VM(s) still run on the source - %s' % (
        len(result['still_running_on_source']),
        '; '.join('%s (%s)' % (n, why.get(n, 'not in the plan: started during the drain?'))
                  for n in result['still_running_on_source']))


if __name__ == '__main__':
    main()

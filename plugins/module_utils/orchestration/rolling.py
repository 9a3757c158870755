# -*- coding: utf-8 -*-
# Copyright (c) vmmigration.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The rolling maintenance's cluster plan and report (pure functions; private: may change in any release).

The rolling_maintenance role plans each host's drain with the evacuate_host role (in check mode), then hands
the per-host plans here: which hosts the cluster can take out one at a time (N+1), in what order, with what
predicted times; and, as the run goes, turns the per-host records it keeps on the controller into one report
(JSON-able dict, text table, HTML timeline).
"""

from html import escape

from ansible_collections.vmmigration.libvirt.plugins.module_utils.decide.calibration import median
from ansible_collections.vmmigration.libvirt.plugins.module_utils.orchestration.report import render_timeline
from ansible_collections.vmmigration.libvirt.plugins.module_utils.orchestration import run_record as RR
from ansible_collections.vmmigration.libvirt.plugins.module_utils.orchestration.run_record import downtimes

PHASES = ('drain', 'stop', 'maintenance', 'gate', 'start', 'return')
# (the phases every host has a column for; stop and start only when a host of the run stopped VMs in place)
BASE_PHASES = ('drain', 'maintenance', 'gate', 'return')


def plain(value):
    """Ansible's lazy containers as plain dicts and lists (for the filters: the pure functions index them freely)."""
    if isinstance(value, dict):
        return dict((k, plain(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


DONE = 'done'


def started(state):
    """A host's state in a run, '' when the run has not started on it (no record, or recorded as planned)."""
    return '' if state in (None, '', 'planned') else state


def _num(value, default=0.0):
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def _fmt_s(value):
    return '-' if value is None else '%.1f s' % value


def unplaceable_vms(plan, non_live_policy):
    """{vm: reason} of a host's plan that its drain would leave on it (the shutdown policy stops the
    VMs that only a cold move could take: those do not keep the host busy)."""
    left = dict((plan or {}).get('left') or {})
    if non_live_policy == 'shutdown':
        for name in (plan or {}).get('cold_only') or []:
            left.pop(name, None)
    return left


def cpu_bound_vms(cpu, host):
    """{vm: reason} of HOST's running VMs whose CPU no other host of the group can run: CPU is the cpu_baseline
    module's result over the group (each VM's verdict names the hosts that can run it)."""
    out = {}
    for d in (cpu or {}).get('domains') or []:
        if d.get('host') != host or not d.get('active'):
            continue
        if not [h for h in d.get('can_run_on') or [] if h != host]:
            out[d['name']] = 'its CPU runs only on %s - %s' % (host, d.get('why') or 'no other host can run it')
    return out


def cpu_lines(cpu, names):
    """The plan's lines on the group's CPU baseline: the model every host runs, and the VMs not within it."""
    if not cpu:
        return []
    base = cpu.get('baseline') or {}
    lines = ['  CPU every host can run (baseline): %s (%s)' % (base.get('model') or '?', base.get('vendor') or '?')]
    for d in cpu.get('domains') or []:
        if d.get('host') in names and d.get('active') and d.get('stranded'):
            lines.append('    %s on %s runs on %s only: %s' % (d['name'], d['host'], ', '.join(d.get('can_run_on') or [])
                                                               or 'no host', d.get('why') or ''))
    return lines


def candidate_batches(names, records, size=1):
    """The hosts a run takes, in steps of at most SIZE hosts at once, before the plans are checked: a host an
    earlier run left half done first and alone (its VMs may be on the hosts that would share its step), then the
    others in the order asked for, in consecutive groups of SIZE; hosts done by an earlier run left out.
    RECORDS: {host: record}. Returns [[host, ...], ...]."""
    state = dict((n, started(((records or {}).get(n) or {}).get('state'))) for n in names)
    resume = [[n] for n in names if state[n] not in ('', DONE)]
    todo = [n for n in names if state[n] == '']
    size = max(1, int(size or 1))
    return resume + [todo[i:i + size] for i in range(0, len(todo), size)]


def batch_conflicts(batch, plans, non_live_policy='skip', anti_affinity=None, cpu=None, stops=None):
    """Why the hosts of BATCH cannot be out at the same time ([] when they can): PLANS {host: its drain plan against
    the hosts outside the batch}. Each must place all its VMs there, and together they must fit: each destination
    keeps its headroom under what all of them put on it, no two VMs of one anti-affinity group (ANTI_AFFINITY
    {group: [vms]}) land on one host, and no VM's CPU (CPU: the cpu_baseline result) runs only inside the batch.
    STOPS: {host: VMs stopped in place there} (they stay: no conflict)."""
    stops = stops or {}
    why = []
    placed, groups = {}, {}
    group_of = dict((vm, g) for g, vms in (anti_affinity or {}).items() for vm in vms or [])
    for h in batch:
        plan = plans.get(h)
        if not plan:
            why.append('%s was not planned against the hosts outside the step' % h)
            continue
        why += [x for x in plan.get('inbound_over') or [] if x not in why]
        for vm, reason in sorted(unplaceable_vms(plan, non_live_policy).items()):
            if vm in stops.get(h, ()):
                continue
            why.append('%s cannot move with %s out too (%s)' % (vm, ' + '.join(x for x in batch if x != h), reason))
        for m in plan.get('moves') or []:
            if m.get('destination') in batch:
                why.append('%s would go to %s, which is out at the same time' % (m['name'], m['destination']))
            placed.setdefault(m.get('destination'), {}).setdefault(h, 0.0)
            placed[m.get('destination')][h] += _num(m.get('memory_mib'))
            if m['name'] in group_of:
                groups.setdefault((m.get('destination'), group_of[m['name']]), []).append((m['name'], h))
    # (plans made together for this step - the cluster plan's - already count what each other put on a destination,
    # memory and anti-affinity: checked by construction, not subtracted twice)
    joint = all(set((plans.get(h) or {}).get('planned_with') or ()) == set(batch) for h in batch)
    for d, by_host in sorted(placed.items()) if not joint else ():
        for h in by_host:
            plan = plans.get(h) or {}
            others = sum(v for o, v in by_host.items() if o != h)
            left = _num((plan.get('free_after_mib') or {}).get(d), 0.0) - others
            if others and left < _num(plan.get('headroom_mib')):
                why.append('%s would keep %.0f MiB free with the VMs of %s, below the headroom of %.0f MiB' % (
                    d, left, ' + '.join(sorted(by_host)), _num(plan.get('headroom_mib'))))
                break
    for (d, g), vms in sorted(groups.items()) if not joint else ():
        if len(set(h for _vm, h in vms)) > 1:
            why.append('%s of anti-affinity group %s would all go to %s' % (
                ', '.join('%s (%s)' % x for x in sorted(vms)), g, d))
    for d in (cpu or {}).get('domains') or []:
        if d.get('host') in batch and d.get('active') and not [x for x in d.get('can_run_on') or [] if x not in batch] \
                and d['name'] not in stops.get(d['host'], ()):
            why.append('the CPU of %s runs only on %s' % (d['name'], ', '.join(d.get('can_run_on') or []) or 'no host'))
    return why


LEARN_LAST = 3


def learned_phases(records, last=LEARN_LAST):
    """What this host's earlier maintenance and health gates took (pure): RECORDS, the host's run records (every
    run it keeps, this one's earlier attempts too). The median of the last LAST of each phase that ended without
    failing, drained and maintained in place apart (a maintenance with VMs running is another kind). Returns
    {'maintenance_s', 'maintenance_in_place_s', 'gate_s': seconds or None, 'samples': {phase: n}}."""
    seen = {'maintenance': [], 'maintenance_in_place': [], 'gate': []}
    for r in (r for r in records or [] if isinstance(r, dict)):
        for a in attempts(r):
            for ph in ('maintenance', 'gate'):
                p = (a.get('phases') or {}).get(ph) or {}
                took = _phase_s(a, ph)
                if took is None or p.get('failed') or a.get('failed_phase') == ph:
                    continue
                kind = 'maintenance_in_place' if ph == 'maintenance' and (a.get('predicted') or {}).get('in_place') \
                    else ph
                seen[kind].append((_num(p['start']), took))
    # (the last ones by when they ran, whatever order the records come in)
    seen = dict((k, [took for _t, took in sorted(v)]) for k, v in seen.items())
    out = dict(('%s_s' % k, round(median(v[-last:]), 1) if v else None) for k, v in seen.items())
    out['samples'] = dict((k, len(v)) for k, v in seen.items())
    return out


def _overhead(role_overhead_s, role_overheads, phase, alongside):
    """What the role costs beyond a PHASE's (drain, return) moves: its own measure at this concurrency (ALONGSIDE:
    the host is out with others) when there is one, else ROLE_OVERHEAD_S."""
    got = ((role_overheads or {}).get(phase) or {}).get('alongside' if alongside else 'alone')
    return float(role_overhead_s or 0.0) if got is None else float(got)


def _host_entry(name, state, plan, non_live_policy, expected_s, return_vms, role_overhead_s, cpu, calibrated=False,
                stop_vms=(), unplaceable='refuse', stop_start_s=60.0, learned=None, role_overheads=None,
                alongside=False):
    entry = {'name': name, 'moves': [dict((k, m.get(k)) for k in ('name', 'destination', 'method', 'memory_mib'))
                                     for m in (plan or {}).get('moves') or []],
             'unplaceable': {}, 'stop': {}, 'record_state': state, 'batch': [name], 'plan_kind': 'single',
             'decision': 'drain', 'why': ''}
    left = unplaceable_vms(plan, non_live_policy)
    for vm, why in cpu_bound_vms(cpu, name).items():
        left.setdefault(vm, why)
    for vm, why in sorted(left.items()):
        if vm in stop_vms:
            entry['stop'][vm] = 'listed to stop in place (rolling_maintenance_stop_in_place_vms)'
        elif unplaceable == 'stop_in_place':
            entry['stop'][vm] = 'cannot move: %s' % why
        else:
            entry['unplaceable'][vm] = why
    # the drain role's own cost (planning, reports) beyond the drain, as measured: the calibration - each phase's and
    # concurrency's own where measured (a step's drains run in lockstep; a return plans where a drain follows a plan)
    moves_s = _num((plan or {}).get('predicted_total_s'))
    drain = moves_s + _overhead(role_overhead_s, role_overheads, 'drain', alongside)
    back = 0.0
    if return_vms == 'original':
        back = moves_s + _overhead(role_overhead_s, role_overheads, 'return', alongside)
    stops = float(stop_start_s) if entry['stop'] else 0.0
    # (this host's own maintenance and gate, as its earlier runs measured them; the configured guess until then)
    learned = learned or {}
    upkeep = learned.get('maintenance_s')
    upkeep = float(expected_s) if upkeep is None else float(upkeep)
    gate = float(learned.get('gate_s') or 0.0)
    entry['predicted'] = {'drain_s': round(drain, 1), 'maintenance_s': round(upkeep, 1), 'gate_s': round(gate, 1),
                          'return_s': round(back, 1), 'total_s': round(drain + upkeep + gate + back + stops, 1),
                          'calibrated': bool(calibrated),
                          'learned': sorted(k for k in ('maintenance_s', 'gate_s') if learned.get(k) is not None)}
    # (a VM stopped in place is down from its shutdown, after the drain, until it runs again after the gate)
    entry['downtime_s'] = round(float(expected_s) + float(stop_start_s), 1)
    if entry['stop']:
        entry['predicted'].update(stop_start_s=stops, downtime_s=entry['downtime_s'])
    return entry


def running_vms(plan):
    """The VMs a host's plan saw running there (those it moves and those it leaves)."""
    return sorted(set(m.get('name') for m in (plan or {}).get('moves') or []) | set((plan or {}).get('left') or {}))


def cluster_plan(host_plans, names, non_live_policy='skip', expected_s=300, return_vms='original', role_overhead_s=0.0,
                 cpu=None, batch=1, anti_affinity=None, unplaceable='refuse', stop_vms=(), not_needed='skip',
                 stop_start_s=60.0, role_overheads=None):
    """The cluster plan from each host's drain plan.

    HOST_PLANS: [{'name', 'record' (what an earlier run of this id recorded, {} when none), 'calibrated' (its
    predictions rest on measured drains), 'need' ({'need': drain or none, 'why'}: whether the host needs the drain,
    by the need check; missing: drain), 'plan' (the host's
    evacuation_plan result against all the other hosts - N+1 -, None when not planned), 'batch_plan' (with BATCH >
    1: its plan against the hosts outside its step of candidate_batches, None when alone)}]; NAMES: the hosts in
    the order asked for.
    Returns {'hosts': [{'name', 'status' (to_do, resume, done, unplaceable, in_place, skipped), 'decision' (drain,
    in_place, skip, done), 'why', 'moves', 'unplaceable', 'stop' ({vm: why} stopped in place), 'running' (in place:
    the VMs that keep running), 'downtime_s' (each stopped VM's, predicted), 'batch' (the hosts out with it),
    'plan_kind' (single, batch), 'predicted': {'drain_s', 'maintenance_s', 'return_s', 'total_s'; with VMs stopped in
    place 'stop_start_s' and each one's 'downtime_s'}}],
    'order', 'batches' [[host, ...]], 'serial' (their sizes: the play's serial), 'unplaceable' {host: {vm:
    reason}}, 'unplaceable_lines', 'stop' {host: [vm]}, 'in_place' {host: [running vm]}, 'skipped' {host: why},
    'downtime_lines' (what the operator approves: the VMs to stop, the hosts maintained with VMs on them),
    'downtime_vms' (the same as 'VM on HOST' words),
    'batch_notes', 'predicted_total_s', 'lines'}.
    ROLE_OVERHEAD_S: what the drain role costs beyond the drain (the calibration's measure), added to each drain and
    return; ROLE_OVERHEADS ({drain, return: {alone, alongside: seconds or None}}, calibration.role_overheads): each
    phase's own at the concurrency the host runs at (out alone, or in a step with others), where measured.
    CPU: the cpu_baseline module's result over the group (None: not checked); a running VM whose CPU only its own
    host can run cannot be moved by that host's drain. UNPLACEABLE: what the run does with the VMs a drain
    cannot move - refuse or skip (the host is unplaceable: the role refuses the run or leaves the host out), or
    stop_in_place (stopped on their host before its maintenance, started after its gate). STOP_VMS: VMs the operator
    lists to stop in place whatever they could do (their drains leave them: exclude_domains). NOT_NEEDED: a host whose
    need check says no drain is needed is left out (skip) or maintained with its VMs running (in_place).
    STOP_START_S: what a guest's shutdown and boot add to its downtime beyond the maintenance (predicted).
    BATCH: at most that many hosts out at once, where their plans together allow it (batch_conflicts); a step that
    does not fit is taken one host at a time, and the plan says why; a host maintained in place is a step alone."""
    by_name = dict((h['name'], h) for h in host_plans)
    hosts, unplaceable_by_host, learned_by = [], {}, {}
    stop_vms = set(stop_vms or ())
    for name in names:
        h = by_name.get(name) or {'name': name, 'record': {}, 'plan': None}
        state = started((h.get('record') or {}).get('state'))
        need = (h.get('need') or {}).get('need') or 'drain'
        learned = learned_by[name] = learned_phases(h.get('history'))
        entry = _host_entry(name, state, h.get('plan') or {}, non_live_policy, expected_s, return_vms, role_overhead_s,
                            cpu, h.get('calibrated'), stop_vms, unplaceable, stop_start_s, learned, role_overheads)
        entry['why'] = (h.get('need') or {}).get('why') or ''
        if state == DONE:
            entry.update(status='done', decision='done', unplaceable={}, stop={},
                         predicted={'drain_s': 0.0, 'maintenance_s': 0.0, 'return_s': 0.0, 'total_s': 0.0})
        elif need == 'none' and not state:
            # (a host half done by an earlier attempt is taken up again whatever its check says: VMs may be away)
            entry.update(unplaceable={}, stop={}, moves=[], running=running_vms(h.get('plan')))
            if not_needed == 'in_place':
                upkeep = learned.get('maintenance_in_place_s')
                upkeep = float(expected_s) if upkeep is None else float(upkeep)
                gate = float(learned.get('gate_s') or 0.0)
                entry.update(status='in_place', decision='in_place',
                             predicted={'drain_s': 0.0, 'maintenance_s': upkeep, 'gate_s': gate, 'return_s': 0.0,
                                        'total_s': round(upkeep + gate, 1), 'in_place': True,
                                        'calibrated': entry['predicted']['calibrated'],
                                        'learned': sorted(k for k, v in (('maintenance_s', learned.get(
                                            'maintenance_in_place_s')), ('gate_s', learned.get('gate_s'))) if v is not None)})
            else:
                entry.update(status='skipped', decision='skip',
                             predicted={'drain_s': 0.0, 'maintenance_s': 0.0, 'return_s': 0.0, 'total_s': 0.0})
        elif (h.get('record') or {}).get('failed_phase') == 'start':
            # (its maintenance and gate are done: the resumed attempt starts again what it stopped, then goes on)
            entry.update(status='resume', resume_at='start', stop={}, unplaceable={}, moves=[],
                         still_stopped=RR.still_stopped(h.get('record')))
            entry['predicted'] = dict(entry['predicted'], drain_s=0.0, maintenance_s=0.0,
                                      total_s=round(entry['predicted']['return_s'], 1))
        elif entry['unplaceable']:
            entry['status'] = 'unplaceable'
            unplaceable_by_host[name] = entry['unplaceable']
        else:
            entry['status'] = 'resume' if state else 'to_do'
        hosts.append(entry)
    by_entry = dict((h['name'], h) for h in hosts)
    # the steps: candidate groups of the hosts to take (a host the cluster cannot empty alone is in none); a group
    # whose plans together do not fit is taken one host at a time
    # (the same steps the role planned each host's batch_plan for, less the hosts left out)
    takes = [h['name'] for h in hosts if h['status'] in ('resume', 'to_do', 'in_place')]
    records = dict((n, (by_name.get(n) or {}).get('record') or {}) for n in names)
    batches, notes = [], []
    for cand in candidate_batches(names, records, batch):
        batches.extend([n] for n in cand if n in takes and by_entry[n]['status'] == 'in_place')
        cand = [n for n in cand if n in takes and by_entry[n]['status'] != 'in_place']
        if not cand:
            continue
        why = batch_conflicts(cand, dict((n, (by_name.get(n) or {}).get('batch_plan')) for n in cand),
                              non_live_policy, anti_affinity, cpu,
                              dict((n, set(by_entry[n]['stop'])) for n in cand)) if len(cand) > 1 else []
        if why:
            notes.append('%s cannot be out at once (%s): one at a time' % (' + '.join(cand), '; '.join(why)))
            batches.extend([n] for n in cand)
            continue
        batches.append(cand)
        if len(cand) > 1:
            for n in cand:
                e = _host_entry(n, by_entry[n]['record_state'], by_name[n]['batch_plan'], non_live_policy,
                                expected_s, return_vms, role_overhead_s, cpu, by_name[n].get('calibrated'), stop_vms,
                                unplaceable, stop_start_s, learned_by[n], role_overheads, alongside=True)
                e.update(status=by_entry[n]['status'], batch=list(cand), plan_kind='batch', why=by_entry[n]['why'])
                by_entry[n].update(e)
    order = [n for b in batches for n in b]
    # the hosts of a step run side by side: the step takes as long as its longest host
    total = round(sum(max(by_entry[n]['predicted']['total_s'] for n in b) for b in batches), 1)
    unplaceable_lines = ['%s: %s' % (host, ', '.join('%s (%s)' % (vm, why) for vm, why in sorted(vms.items())))
                         for host, vms in sorted(unplaceable_by_host.items())]
    stop = dict((h['name'], sorted(h['stop'])) for h in hosts if h['name'] in order and h['stop'])
    in_place = dict((h['name'], h.get('running') or []) for h in hosts if h['status'] == 'in_place')
    skipped = dict((h['name'], h['why'] or 'no drain needed') for h in hosts if h['status'] == 'skipped')
    downtime_lines = ['%s on %s: stopped in place (%s), predicted down %s' % (
        vm, h['name'], h['stop'][vm], _fmt_s(h['downtime_s'])) for h in hosts if h['name'] in stop
        for vm in sorted(h['stop'])]
    # (what an approval approves - the Plan job of a workflow publishes it, the run refuses anything beyond it)
    downtime_vms = sorted(['%s on %s' % (vm, host) for host, vms in stop.items() for vm in vms]
                          + ['%s on %s' % (vm, host) for host, vms in in_place.items() for vm in vms])
    downtime_lines += ['%s: maintained in place with %s running on it (%s) - if its maintenance restarts the host, '
                       'they go down with it' % (host, ', '.join(vms), by_entry[host]['why'] or 'no drain needed')
                       for host, vms in sorted(in_place.items()) if vms]
    if max([len(b) for b in batches] or [1]) > 1:
        how = 'in %d step(s) of up to %d hosts at once, each step drained into the hosts outside it' % (
            len(batches), max(len(b) for b in batches))
    else:
        how = 'one at a time, each drained into the others'
    lines = ['cluster plan: %d host(s) to maintain, %s; predicted %s in total' % (len(order), how, _fmt_s(total))]
    if in_place or skipped:
        lines.append('  by their need checks: drained %s; maintained in place %s; skipped %s' % (
            ', '.join(h['name'] for h in hosts if h['status'] in ('to_do', 'resume', 'unplaceable')) or 'none',
            ', '.join(sorted(in_place)) or 'none', ', '.join(sorted(skipped)) or 'none'))
    for h in hosts:
        if h['status'] == 'done':
            lines.append('  %s: done by an earlier run of this id - not taken again' % h['name'])
            continue
        if h['status'] == 'skipped':
            lines.append('  %s: SKIPPED, not drained nor maintained - %s' % (h['name'], h['why'] or 'no drain needed'))
            continue
        p = h['predicted']
        if h.get('resume_at') == 'start':
            again = ', '.join(h['still_stopped']) or 'nothing'
            lines.append('  %s (half done by an earlier run: first): resumes at its start phase - starts again %s, '
                         'then returns its VMs - predicted %s' % (h['name'], again, _fmt_s(p['total_s'])))
            continue
        if h['status'] == 'in_place':
            lines.append('  %s: MAINTAINED IN PLACE, not drained (%s) - predicted maintenance %s%s; %s' % (
                h['name'], h['why'] or 'no drain needed', _fmt_s(p['maintenance_s']),
                ' (learned)' if 'maintenance_s' in (p.get('learned') or ()) else '',
                'its VMs keep running through it: %s' % ', '.join(h['running']) if h.get('running') else 'no VM runs there'))
            continue
        head = '  %s%s: %d VM(s) to move%s - predicted drain %s, maintenance %s%s%s, return %s = %s' % (
            h['name'], ' (half done by an earlier run: first)' if h['status'] == 'resume' else '', len(h['moves']),
            ', %d stopped in place' % len(h['stop']) if h['stop'] else '',
            _fmt_s(p['drain_s']), _fmt_s(p['maintenance_s']),
            ' (learned)' if 'maintenance_s' in (p.get('learned') or ()) else '',
            ', gate %s%s' % (_fmt_s(p['gate_s']), ' (learned)' if 'gate_s' in (p.get('learned') or ()) else '')
            if p.get('gate_s') else '', _fmt_s(p['return_s']), _fmt_s(p['total_s']))
        if h['why']:
            head += ' (%s)' % h['why']
        if len(h['batch']) > 1:
            head += ' - out with %s' % ' + '.join(x for x in h['batch'] if x != h['name'])
        if h['status'] == 'unplaceable':
            head += ' - CANNOT BE EMPTIED'
        lines.append(head)
        for m in h['moves']:
            back = ', back afterwards' if return_vms == 'original' else ''
            lines.append('    %s -> %s (%s, %s MiB)%s' % (m['name'], m['destination'], m['method'], m['memory_mib'], back))
        for vm, why in sorted(h['stop'].items()):
            lines.append('    %s STOPPED IN PLACE on %s - %s; started again after its gate, predicted down %s' % (
                vm, h['name'], why, _fmt_s(h['downtime_s'])))
        for vm, why in sorted(h['unplaceable'].items()):
            lines.append('    %s cannot move: %s' % (vm, why))
    lines.extend(cpu_lines(cpu, names))
    lines.extend('  %s' % n for n in notes)
    if order:
        lines.append('  order: %s' % ' -> '.join(' + '.join(b) for b in batches))
    return {'hosts': hosts, 'order': order, 'batches': batches, 'serial': [len(b) for b in batches] or [1],
            'unplaceable': unplaceable_by_host, 'unplaceable_lines': unplaceable_lines, 'stop': stop,
            'in_place': in_place, 'skipped': skipped, 'downtime_lines': downtime_lines, 'downtime_vms': downtime_vms,
            'batch_notes': notes,
            'predicted_total_s': total, 'lines': lines}


# ---------------------------------------------------------------------------------------------------
# The report: one record per host (written on the controller as each phase ends), one report for the run

def _phase_s(record, phase):
    p = ((record or {}).get('phases') or {}).get(phase) or {}
    if p.get('start') is None or p.get('end') is None:
        return None
    return round(_num(p['end']) - _num(p['start']), 1)


def where_each_vm_ends(records):
    """{vm: host} from the records: where each VM a drain moved is now (back home, or where it went)."""
    ends = {}
    for r in records:
        for m in r.get('drained') or []:
            if m.get('state') in ('migrated', 'migrated_after_recovery'):
                ends[m['name']] = m.get('destination')
        for m in r.get('returned') or []:
            if m.get('state') in ('migrated', 'migrated_after_recovery'):
                ends[m['name']] = r['name']
    return ends


def attempts(record):
    """A host's attempts, oldest first: the earlier ones a resumed host kept (its record's 'attempts': their
    'phases', 'predicted', 'moved' - how many VMs its drains had moved by then -, 'failed_phase', 'error'), then
    the current one."""
    r = record or {}
    current = {'phases': r.get('phases') or {}, 'predicted': r.get('predicted') or {},
               'moved': len(r.get('drained') or []), 'failed_phase': r.get('failed_phase'), 'error': r.get('error'),
               'current': True}
    return [dict(a, current=False) for a in r.get('attempts') or []] + [current]


def drain_errors(records):
    """{host: {'predicted_s', 'actual_s', 'error_pct'}} for each host whose drain moved VMs and ended: the latest
    attempt whose drain moved VMs (a resumed host's drain that found it empty is not a measure of the prediction)."""
    out = {}
    for r in records:
        before = 0
        measured = None
        for a in attempts(r):
            moved = int(a.get('moved') or 0)
            actual = _phase_s(a, 'drain')
            pred = (a.get('predicted') or {}).get('drain_s')
            # (a drain that failed is no measure of the prediction)
            failed = ((a['phases'] or {}).get('drain') or {}).get('failed')
            if moved > before and actual and pred is not None and not failed:
                measured = {'predicted_s': round(float(pred), 1), 'actual_s': actual,
                            'error_pct': round(100.0 * abs(actual - float(pred)) / actual, 1),
                            'calibrated': bool((a.get('predicted') or {}).get('calibrated'))}
            before = max(before, moved)
        if measured:
            out[r['name']] = measured
    return out


ERROR_PHASES = ('drain', 'maintenance', 'gate', 'return')


def phase_errors(records):
    """{host: {phase: {'predicted_s', 'actual_s', 'error_pct', 'calibrated' (drain, return) or 'learned'
    (maintenance, gate)}}}: each phase of the latest attempt of each host that ended without failing, against what
    the plan predicted for it (a phase predicted 0 s or that took under 0.5 s is no measure of a percentage)."""
    out = {}
    for r in records:
        a = attempts(r)[-1]
        pred = a.get('predicted') or {}
        for ph in ERROR_PHASES:
            actual = _phase_s(a, ph)
            want = pred.get('%s_s' % ph)
            if actual is None or not want or actual < 0.5 or ((a.get('phases') or {}).get(ph) or {}).get('failed') \
                    or a.get('failed_phase') == ph:
                continue
            e = {'predicted_s': round(float(want), 1), 'actual_s': actual,
                 'error_pct': round(100.0 * abs(actual - float(want)) / actual, 1)}
            if ph in ('drain', 'return'):
                e['calibrated'] = bool(pred.get('calibrated'))
            else:
                e['learned'] = '%s_s' % ph in (pred.get('learned') or ())
            out.setdefault(r['name'], {})[ph] = e
    return out


def report(records, run_id='', predicted=None):
    """The run's report: {'run_id', 'state' (done, failed, running), 'hosts': the records, 'ends': {vm: host},
    'predicted_total_s', 'actual_total_s', 'table': text lines, 'html': a page with the timeline}."""
    records = [r for r in records if r]
    states = [r.get('state') for r in records]
    state = 'failed' if 'failed' in states else ('done' if states and all(s == DONE for s in states) else 'running')
    phases = [p for r in records for a in attempts(r) for p in a['phases'].values()]
    starts = [_num(p['start']) for p in phases if p.get('start') is not None]
    ends = [_num(p['end']) for p in phases if p.get('end') is not None]
    actual = round(max(ends) - min(starts), 1) if starts and ends else None
    shown = [ph for ph in PHASES if ph in BASE_PHASES or any(
        (a['phases'].get(ph) or {}).get('start') is not None for r in records for a in attempts(r))]
    head = ('HOST', 'STATE') + tuple(ph.upper() for ph in shown) + ('TOTAL', 'PREDICTED', 'VMS')
    rows = [head]
    for r in records:
        phases = [_phase_s(r, ph) for ph in shown]
        took = None
        if all(x is None for x in phases):
            took = None
        else:
            took = round(sum(x for x in phases if x is not None), 1)
        rows.append((r['name'], r.get('state') or '-') + tuple(_fmt_s(x) for x in phases)
                    + (_fmt_s(took), _fmt_s((r.get('predicted') or {}).get('total_s')), str(len(r.get('drained') or []))))
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(head))]
    table = ['  '.join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    down = {}
    for r in records:
        for m in r.get('drained') or []:
            back = dict((x['name'], x) for x in r.get('returned') or []).get(m['name'])
            table.append('  %s: %s -> %s (%s, %s, downtime %s ms)%s' % (
                m['name'], r['name'], m.get('destination'), m.get('state'), _fmt_s(m.get('total_time_s')),
                m.get('downtime_ms') if m.get('downtime_ms') is not None else '-',
                ' -> back to %s (%s, %s, downtime %s ms)' % (
                    r['name'], back.get('state'), _fmt_s(back.get('total_time_s')),
                    back.get('downtime_ms') if back.get('downtime_ms') is not None else '-') if back else ''))
        for d in downtimes(r):
            down[d['name']] = dict(d, host=r['name'], predicted_s=(r.get('predicted') or {}).get('downtime_s'))
            table.append('  %s: stopped in place on %s (%s shutdown), %s' % (
                d['name'], r['name'], d.get('how') or '?',
                'back %s later (predicted %s)' % (_fmt_s(d['downtime_s']),
                                                  _fmt_s((r.get('predicted') or {}).get('downtime_s')))
                if d['downtime_s'] is not None else 'NOT STARTED AGAIN YET (a resumed run starts it)'))
        for i, a in enumerate(attempts(r)[:-1]):
            table.append('  %s attempt %d: %s%s' % (
                r['name'], i + 1, ', '.join('%s %s' % (ph, _fmt_s(_phase_s(a, ph))) for ph in PHASES
                                            if (a['phases'].get(ph) or {}).get('start') is not None) or 'no phase',
                '; %s failed: %s' % (a.get('failed_phase') or '?', a['error']) if a.get('error') else ''))
        if r.get('error'):
            table.append('  %s failed in %s: %s' % (r['name'], r.get('failed_phase') or '?', r['error']))
    errors = drain_errors(records)
    calibrated = [e['error_pct'] for e in errors.values() if e['calibrated']]
    if errors:
        table.append('drain predicted against actual: %s; median error %d %%%s' % (
            ', '.join('%s %.1f s for %.1f s (%d %%%s)' % (
                h, e['predicted_s'], e['actual_s'], e['error_pct'], ', calibrated' if e['calibrated'] else '')
                for h, e in sorted(errors.items())),
            round(median([e['error_pct'] for e in errors.values()])),
            ', once calibrated %d %%' % round(median(calibrated)) if calibrated else ''))
    per_phase = phase_errors(records)
    medians = {}
    for ph in ERROR_PHASES:
        errs = [e[ph]['error_pct'] for e in per_phase.values() if ph in e]
        if errs:
            medians[ph] = round(median(errs), 1)
    if per_phase:
        table.append('predicted against actual, per phase (median error): %s' % ', '.join(
            '%s %d %%' % (ph, medians[ph]) for ph in ERROR_PHASES if ph in medians))
        for h, e in sorted(per_phase.items()):
            table.append('  %s: %s' % (h, ', '.join('%s %s for %s%s' % (
                ph, _fmt_s(e[ph]['predicted_s']), _fmt_s(e[ph]['actual_s']),
                ' (learned)' if e[ph].get('learned') else ' (calibrated)' if e[ph].get('calibrated') else '')
                for ph in ERROR_PHASES if ph in e)))
    where = where_each_vm_ends(records)
    if where:
        table.append('every VM moved ends on: %s' % ', '.join('%s %s' % (vm, h) for vm, h in sorted(where.items())))
    table.append('run %s: %s, took %s (predicted %s)' % (run_id, state, _fmt_s(actual), _fmt_s(predicted)))
    out = {'run_id': run_id, 'state': state, 'hosts': records, 'ends': where, 'predicted_total_s': predicted,
           'stopped_in_place': down,
           'actual_total_s': actual, 'table': table, 'drain_errors': errors, 'phase_errors': per_phase,
           'median_phase_error_pct': medians,
           'median_drain_error_pct': round(median([e['error_pct'] for e in errors.values()]), 1) if errors else None,
           'median_calibrated_drain_error_pct': round(median(calibrated), 1) if calibrated else None}
    out['html'] = timeline_html(records, 'rolling maintenance %s: %s' % (run_id, state), table)
    return out


# ---------------------------------------------------------------------------------------------------
# The timeline: hosts' phases and each VM's moves on one time axis

PHASE_COLOURS = {'drain': '#2e86c1', 'stop': '#c0392b', 'maintenance': '#7f8c8d', 'gate': '#27ae60', 'start': '#d35400',
                 'return': '#8e44ad'}
HOST_COLOURS = ('#2e86c1', '#e67e22', '#16a085', '#8e44ad', '#c0392b', '#2c3e50', '#d4ac0d', '#7f8c8d')


def timeline_html(records, title, table_lines=(), width=960):
    """A rolling run's timeline (report.render_timeline, on the controller): one row per host (its phases) and per VM
    (its moves, coloured by the host it went to; its time stopped in place), from the run's first step; the table
    below."""
    t0s = [_num(p['start']) for r in records for a in attempts(r) for p in a['phases'].values()
           if p.get('start') is not None]
    t0 = min(t0s) if t0s else 0.0
    rows = []
    colour = dict((r['name'], HOST_COLOURS[i % len(HOST_COLOURS)]) for i, r in enumerate(records))
    span = 1.0
    for r in records:
        bars = []
        for i, a in enumerate(attempts(r)):
            # (an earlier attempt of a resumed host: its phases as they ran, paler, said in the tip)
            earlier = '' if a['current'] else ' (attempt %d%s)' % (
                i + 1, ', %s failed' % a['failed_phase'] if a.get('failed_phase') else '')
            for ph in PHASES:
                p = a['phases'].get(ph) or {}
                if p.get('start') is None:
                    continue
                end = _num(p.get('end'), _num(p['start']))
                bars.append((_num(p['start']) - t0, end - t0, PHASE_COLOURS[ph], '%s %s: %.1f s%s' % (
                    r['name'], ph, end - _num(p['start']), earlier), 1.0 if a['current'] else 0.45))
                span = max(span, end - t0)
        rows.append(('host %s' % r['name'], bars))
        for kind, base in (('drained', r.get('drain_started_at')), ('returned', r.get('return_started_at'))):
            for m in r.get(kind) or []:
                if (base is None and m.get('drain_started_at') is None) or m.get('start_s') is None:
                    continue
                # (the same figures as the table: the move's start in its own drain, and its own time)
                s = _num(m.get('drain_started_at'), _num(base)) + _num(m['start_s']) - t0
                e = s + _num(m.get('total_time_s'))
                to = m.get('destination') if kind == 'drained' else r['name']
                rows.append(('%s %s' % (m['name'], 'out' if kind == 'drained' else 'back'), [(s, e, colour.get(to, '#555'), (
                    '%s -> %s: %s, %.1f s, downtime %s ms' % (m['name'], to, m.get('state'), e - s, m.get('downtime_ms'))),
                    1.0)]))
                span = max(span, e)
        for d in downtimes(r):
            if d.get('stopped_at') is None:
                continue
            s = _num(d['stopped_at']) - t0
            e = _num(d['back_at'], s + t0) - t0 if d.get('back_at') is not None else span
            rows.append(('%s down' % d['name'], [(s, e, PHASE_COLOURS['stop'], '%s stopped in place on %s: %s' % (
                d['name'], r['name'], 'down %.1f s' % (e - s) if d.get('back_at') is not None else 'not started again yet'),
                1.0)]))
            span = max(span, e)
    legend = ' '.join('<span style="color:%s">&#9632; %s</span>' % (c, ph) for ph, c in sorted(PHASE_COLOURS.items()))
    legend += ' | VMs coloured by the host they moved to: ' + ' '.join(
        '<span style="color:%s">&#9632; %s</span>' % (c, escape(h)) for h, c in sorted(colour.items()))
    return render_timeline([(label, bars, []) for label, bars in rows], span, title, legend, table_lines, width=width,
                           left=160)

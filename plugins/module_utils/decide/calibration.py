# -*- coding: utf-8 -*-
# Copyright (c) vmmigration.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Predictions calibrated from what drains measured (pure functions; private: may change in any release).

A plan predicts a move of M MiB to take overhead_s + M / rate_mibps seconds (a VM measured before: the median of
its own last moves), a drain its moves' schedule plus fixed_s, and a role's drain that plus role_overhead_s
(planning, reports; a rolling run's drain or return, alone or beside other drains: role_overheads). Out of the box
those are guesses (the configured link rate, 2 s a move, nothing else). After each drain the roles keep its
per-move facts (memory, time, bytes) and its own times in a small calibration file (evacuate_host: on the
controller; rolling_maintenance: on each hypervisor); the next plan for those hosts uses what was measured.
"""

VERSION = 1
KEEP = 60
KEEP_MOVES = 600  # (per-VM history: a cluster's VMs, a few moves each)
MOVED = ('migrated', 'migrated_after_recovery')


def median(values):
    """The median of VALUES (None left out), None when there is none - the collection's one median."""
    values = sorted(v for v in values if v is not None)
    if not values:
        return None
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2.0


def _since(r):
    """When move R began to use the link: its slot (slot_s; a move checked and planned ahead got it later than it
    started; None - never - for one that ended before it got one), or its start in a result without slot_s."""
    return r['slot_s'] if 'slot_s' in r else r.get('start_s')


def moves_alongside(results, r):
    """How many other moves of the drain ran during some of the move R (from its slot to its end, from the drain's
    start): the concurrency its pace was measured at - a move only being checked and planned uses no link."""
    if _since(r) is None or r.get('end_s') is None:
        return None
    return sum(1 for x in results if x is not r and _since(x) is not None and x.get('end_s') is not None
               and _since(x) < r['end_s'] and _since(r) < x['end_s'])


def move_samples(report, drains_alongside=None):
    """Per-move facts of a drain's result: the live moves that completed, with the memory the plan gave them and
    the concurrency they were measured at - the moves of the drain alongside, the other drains running at the same
    time (DRAINS_ALONGSIDE, as the caller knows it: a rolling step's other hosts)."""
    memory = dict((m['name'], m.get('memory_mib')) for m in (report.get('plan') or {}).get('moves') or [])
    results = report.get('results') or []
    out = []
    for r in results:
        mem = memory.get(r.get('name'))
        if r.get('state') in MOVED and r.get('method') != 'cold' and r.get('total_time_s') and mem:
            out.append({'name': r.get('name'), 'memory_mib': float(mem), 'total_s': float(r['total_time_s']),
                        'bytes': r.get('bytes_transferred'), 'moves_alongside': moves_alongside(results, r),
                        'drains_alongside': drains_alongside})
    return out


def drain_sample(report, role_wall_s=None, drains_alongside=None, phase=None):
    """A drain's own times: its wall, the span of its moves, what it cost beyond them (fixed_s), and the wall of
    the role that ran it (role_wall_s, when given), with the drains that ran alongside and the rolling phase it was
    (PHASE: drain, or return - the VMs coming home; None when not known). None for a drain that moved nothing."""
    res = [r for r in report.get('results') or [] if r.get('start_s') is not None and r.get('end_s') is not None]
    if not res or report.get('wall_s') is None:
        return None
    span = max(r['end_s'] for r in res) - min(r['start_s'] for r in res)
    wall = float(report['wall_s'])
    return {'wall_s': wall, 'moves_span_s': round(span, 3), 'fixed_s': round(max(0.0, wall - span), 3),
            'role_wall_s': None if role_wall_s is None else round(float(role_wall_s), 3), 'moves': len(res),
            'drains_alongside': drains_alongside, 'phase': phase}


def fit(moves, default_rate=1000):
    """(overhead_s, rate_mibps) of T = overhead + M / rate over MOVES. A least-squares line when the sizes differ
    enough to tell the two apart; else the configured rate, and the median time beyond it as the overhead."""
    if not moves:
        return None
    xs = [m['memory_mib'] for m in moves]
    ys = [m['total_s'] for m in moves]
    if len(moves) >= 3 and max(xs) >= 1.5 * min(xs):
        n = float(len(moves))
        mx, my = sum(xs) / n, sum(ys) / n
        sxx = sum((x - mx) ** 2 for x in xs)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else 0.0
        intercept = my - slope * mx
        if slope > 0 and intercept >= 0:
            return round(intercept, 3), max(1, int(round(1.0 / slope)))
    rate = float(default_rate)
    return round(max(0.0, median([y - x / rate for x, y in zip(xs, ys)])), 3), int(rate)


def update(calibration, report, role_wall_s=None, default_rate=1000, now=None, drains_alongside=None, phase=None):
    """The calibration after one more drain (REPORT: the evacuate module's result; ROLE_WALL_S: the wall of the
    role that ran it; DRAINS_ALONGSIDE: the other drains running at the same time, when known; PHASE: the rolling
    phase it was, drain or return, when known). Keeps the last KEEP_MOVES moves and KEEP drains; returns a new
    dict."""
    cal = dict(calibration or {})
    moves = list(cal.get('moves') or []) + move_samples(report, drains_alongside)
    drains = list(cal.get('drains') or [])
    d = drain_sample(report, role_wall_s, drains_alongside, phase)
    if d:
        drains.append(d)
    moves, drains = moves[-KEEP_MOVES:], drains[-KEEP:]
    fitted = fit(moves, default_rate)
    role = role_overhead(drains)
    out = {'version': VERSION, 'updated_at': now, 'moves': moves, 'drains': drains, 'samples': len(moves)}
    if fitted:
        out['overhead_s'], out['rate_mibps'] = fitted
    if drains:
        out['fixed_s'] = round(median([x['fixed_s'] for x in drains]), 3)
    if role is not None:
        out['role_overhead_s'] = role
    return out


PER_VM = 3


def move_times(moves, per_vm=PER_VM):
    """{vm: seconds}: the median of each VM's last PER_VM measured moves (its own pace: a VM that rewrites its
    memory takes longer than its size says)."""
    seen = {}
    for m in moves or []:
        if m.get('name') and m.get('total_s'):
            seen.setdefault(m['name'], []).append(float(m['total_s']))
    return dict((n, round(median(t[-per_vm:]), 3)) for n, t in seen.items())


def of_kind(samples, drains_alongside):
    """The SAMPLES taken as the drain to predict will run - alone (DRAINS_ALONGSIDE 0) or beside other drains (more
    than 0) - when there are any; else all of them (a sample of unknown concurrency counts as either)."""
    if drains_alongside is None:
        return list(samples or [])
    want = int(drains_alongside) > 0
    same = [x for x in samples or [] if x.get('drains_alongside') is None or (int(x['drains_alongside']) > 0) == want]
    return same or list(samples or [])


PHASES = ('drain', 'return')
KINDS = ('alone', 'alongside')


def role_overhead(drains, phase=None, kind=None):
    """The median of what the role cost beyond its drain (role_wall_s - wall_s) over the DRAINS of PHASE (drain or
    return) run KIND (alone, or alongside other drains); when none was measured so, those of the phase of any
    kind, then those of the kind of any phase, then all. A sample whose phase is not known (kept before samples
    kept it) stands in for a phase only where none of that phase was measured; one whose concurrency is not known
    counts as either. None when no drain kept its role's wall."""
    def fits(x, ph, kd, strict):
        n = x.get('drains_alongside')
        return (ph is None or x.get('phase') == ph or (not strict and x.get('phase') is None)) and \
            (kd is None or n is None or (int(n) > 0) == (kd == 'alongside'))
    measured = [x for x in drains or [] if x.get('role_wall_s') is not None and x.get('wall_s') is not None]
    for ph, kd in ((phase, kind), (phase, None), (None, kind), (None, None)):
        for strict in (True, False):
            got = [float(x['role_wall_s']) - float(x['wall_s']) for x in measured if fits(x, ph, kd, strict)]
            if got:
                return round(max(0.0, median(got)), 3)
    return None


def role_overheads(drains):
    """{phase: {kind: seconds or None}} for each rolling phase that moves VMs (drain, return) and each concurrency
    (alone, alongside): role_overhead of each. The role's own cost differs by both: a step's drains run their
    tasks in lockstep on the controller, and a return plans its moves where a drain of return original follows an
    approved plan (a drain of return stay, or of a resumed run, plans again: the drain figure mixes both)."""
    return dict((ph, dict((kd, role_overhead(drains, ph, kd)) for kd in KINDS)) for ph in PHASES)


def plan_options(calibration, rate_mibps=1000, overhead_s=2.0, fixed_s=0.0, drains_alongside=None):
    """What a plan uses: the calibrated rate, overhead and fixed cost where measured, else the values given, and
    each measured VM's own move time - from the samples of the kind of the drain to predict (DRAINS_ALONGSIDE: 0, a
    drain alone; more, a drain beside others; None: every sample) when there are any. Returns {'rate_mibps',
    'overhead_s', 'fixed_s', 'role_overhead_s', 'role_overheads' (role_overheads over every drain: each phase's and
    concurrency's own), 'move_times' {vm: s}, 'calibrated' (bool), 'kind' (alone, alongside or any: the samples
    used)}."""
    cal = calibration or {}
    overheads = role_overheads(cal.get('drains'))
    if drains_alongside is not None and (cal.get('moves') or cal.get('drains')):
        moves, drains = of_kind(cal.get('moves'), drains_alongside), of_kind(cal.get('drains'), drains_alongside)
        cal = dict(update({'moves': moves, 'drains': drains}, {}, default_rate=rate_mibps), updated_at=cal.get('updated_at'))
    ok = bool(cal.get('samples'))
    return {'rate_mibps': int(cal['rate_mibps']) if ok and cal.get('rate_mibps') else int(rate_mibps),
            'overhead_s': float(cal['overhead_s']) if ok and cal.get('overhead_s') is not None else float(overhead_s),
            'fixed_s': float(cal['fixed_s']) if cal.get('fixed_s') is not None else float(fixed_s),
            'role_overhead_s': float(cal.get('role_overhead_s') or 0.0), 'role_overheads': overheads,
            'move_times': move_times(cal.get('moves')) if ok else {}, 'calibrated': ok,
            'kind': 'any' if drains_alongside is None else ('alongside' if int(drains_alongside) > 0 else 'alone')}


def merge(calibrations, default_rate=1000, now=None):
    """One calibration from several (each hypervisor keeps its own drains' samples): their moves and drains
    together, refitted."""
    moves, drains = [], []
    for cal in sorted((c for c in calibrations or [] if c), key=lambda c: c.get('updated_at') or 0):
        moves.extend(cal.get('moves') or [])
        drains.extend(cal.get('drains') or [])
    return update({'moves': moves, 'drains': drains}, {}, default_rate=default_rate, now=now)

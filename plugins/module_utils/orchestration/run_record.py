# -*- coding: utf-8 -*-
# Copyright (c) vmmigration.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A rolling maintenance run's records, kept on the hypervisors (private: may change in any release).

Each host of a run keeps its own record of the run in its state directory (runs/RUN_ID.json, 0600, written
atomically): the run's identity (group, run id, its hosts), where the host stands (planned, drain, maintenance,
stop, gate, start, return, failed, done, abandoned), each phase's times, the VMs its drains sent away and where, the
VMs that came back, the VMs stopped in place on it and started again, and its earlier attempts. A controller keeps
nothing a later job needs: any job rebuilds the run from the hosts (choose_run), and the report is a view of the
records.
"""

import json
import os
import re
import time

VERSION = 1
FINISHED = ('done', 'abandoned')
PHASES = ('drain', 'stop', 'maintenance', 'gate', 'start', 'return')
RUN_ID = re.compile(r'^[A-Za-z0-9_.-]+$')


class RecordError(Exception):
    """A record that cannot be used, or a run that cannot be started or resumed: the message says what to do."""


def runs_dir(state_dir):
    return os.path.join(state_dir, 'runs')


def record_path(state_dir, run_id):
    return os.path.join(runs_dir(state_dir), '%s.json' % run_id)


def check(record, where):
    """RECORD as read from WHERE, refused when it is not one of ours or is from a newer version."""
    if not isinstance(record, dict) or not record.get('run_id') or not record.get('group'):
        raise RecordError('%s is not a rolling maintenance record (no run id or group): move it aside, then run again'
                          % where)
    try:
        version = int(record.get('version') or 0)
    except (TypeError, ValueError):
        version = VERSION + 1
    if version > VERSION:
        raise RecordError('%s was written by a newer vmmigration.libvirt (record version %s, this one reads %d): run '
                          'the rolling maintenance with that version' % (where, record.get('version'), VERSION))
    return record


def load_all(state_dir):
    """This host's records, oldest first. A file that does not parse is refused by name (never skipped: it may be
    the record of a run that is not finished)."""
    base = runs_dir(state_dir)
    try:
        names = sorted(n for n in os.listdir(base) if n.endswith('.json'))
    except OSError as e:
        if e.errno == 2:
            return []
        raise RecordError('cannot read the run records in %s: %s' % (base, e.strerror or e))
    out = []
    for n in names:
        path = os.path.join(base, n)
        try:
            with open(path) as f:
                record = json.load(f)
        except ValueError as e:
            raise RecordError('%s is corrupt (%s): move it aside (the run it recorded is then unknown to this host), '
                              'then run again' % (path, e))
        except (IOError, OSError) as e:
            raise RecordError('cannot read %s: %s' % (path, e.strerror or e))
        out.append(check(record, path))
    return sorted(out, key=lambda r: (r.get('created_at') or 0, r['run_id']))


def save(state_dir, record):
    """Write RECORD atomically (a reader sees the old one or the new one), readable by its owner only."""
    return save_json(record_path(state_dir, record['run_id']), record)


def save_json(path, data):
    base = os.path.dirname(path)
    tmp = path + '.tmp'
    try:
        if not os.path.isdir(base):
            os.makedirs(base, 0o700)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, 'w') as f:
            json.dump(data, f, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, path)
    except (IOError, OSError) as e:
        raise RecordError('cannot write %s: %s' % (path, e.strerror or e))
    return path


def calibration_path(state_dir):
    return os.path.join(state_dir, 'calibration.json')


def load_calibration(state_dir):
    """(calibration, warning): what this host's drains measured ({} when nothing yet). Only predictions rest on it:
    one that does not read is set aside with a warning, never a refusal."""
    path = calibration_path(state_dir)
    try:
        with open(path) as f:
            cal = json.load(f)
    except (IOError, OSError) as e:
        return {}, (None if e.errno == 2 else 'cannot read %s (predictions uncalibrated): %s' % (path, e.strerror or e))
    except ValueError as e:
        return {}, '%s is corrupt (predictions uncalibrated until the next drain rewrites it): %s' % (path, e)
    return (cal, None) if isinstance(cal, dict) else ({}, '%s is not a calibration: set aside' % path)


def new_record(group, run_id, host, hosts, at):
    return {'version': VERSION, 'group': group, 'run_id': run_id, 'name': host, 'hosts': list(hosts),
            'state': 'planned', 'created_at': at, 'phases': {}, 'drained': [], 'returned': [], 'attempts': [],
            'error': None, 'failed_phase': None, 'predicted': {}}


def begin(record, predicted):
    """A new attempt at this host: an earlier attempt's phases, what it moved and why it stopped are kept in
    'attempts'; the VMs it sent away stay in 'drained' (they are still away until they come back)."""
    r = dict(record)
    if r.get('phases'):
        r['attempts'] = list(r.get('attempts') or []) + [{
            'phases': r.get('phases') or {}, 'predicted': r.get('predicted') or {},
            'moved': len(r.get('drained') or []), 'state': r.get('state'),
            'failed_phase': r.get('failed_phase'), 'error': r.get('error')}]
        r['phases'] = {}
    r.update(error=None, failed_phase=None, predicted=dict(predicted or {}))
    return r


def mark(record, phase, which, at):
    """A phase starts (the host's state becomes the phase) or ends."""
    if phase not in PHASES or which not in ('start', 'end'):
        raise RecordError('no phase mark %s:%s (phases: %s; marks: start, end)' % (phase, which, ', '.join(PHASES)))
    r = dict(record)
    phases = dict(r.get('phases') or {})
    p = dict(phases.get(phase) or {})
    if which == 'start':
        p.update(start=at, end=None)
        p.pop('failed', None)
        r['state'] = phase
    else:
        p['end'] = at
    phases[phase] = p
    r['phases'] = phases
    return r


def add_moves(record, kind, results, started_at):
    """The moves a drain ('drained') or the return ('returned') made, each with its drain's start."""
    if kind not in ('drained', 'returned'):
        raise RecordError('moves are drained or returned (got %s)' % kind)
    r = dict(record)
    r[kind] = list(r.get(kind) or []) + [dict(m, drain_started_at=started_at) for m in results or []]
    if results:
        r['drain_started_at' if kind == 'drained' else 'return_started_at'] = started_at
    return r


def add_stopping(record, names, at, how='stopping'):
    """VMs about to be stopped in place (HOW stopping: recorded before the stop is asked, so that a stop cut short -
    a lost connection, a lost controller - is never a VM down that no record names), or gone down with their host
    (HOW host_restarted). Each counts as stopped until a later start says it is back."""
    r = dict(record)
    state = 'stopping' if how == 'stopping' else 'stopped'
    r['stopped'] = list(r.get('stopped') or []) + [{'name': n, 'state': state, 'how': how, 'stopped_at': at}
                                                   for n in names or []]
    return r


# a stop's results that say the VM still runs (refused, would not shut down, started again after another would not)
STILL_RUNNING = ('not_stopped', 'did_not_stop', 'started_again')


def add_power(record, kind, results, at=None):
    """The VMs stopped in place ('stopped': the stop_in_place module's results) or started again there ('started').
    A VM found already stopped was recorded by the job that stopped it; one found running (an earlier attempt started
    it, or a person did) counts as back from when it was seen so."""
    if kind not in ('stopped', 'started'):
        raise RecordError('VMs in place are stopped or started (got %s)' % kind)
    states = ('stopped',) if kind == 'stopped' else ('started', 'already_running')
    r = dict(record)
    r[kind] = list(r.get(kind) or []) + [dict(x) for x in results or [] if x.get('state') in states]
    if kind == 'stopped':
        # (not stopped after all, or stopped and started again because another guest would not stop: running - it
        # was recorded as about to stop)
        r['started'] = list(r.get('started') or []) + [
            dict(x, running_at=x.get('running_at') or at) for x in results or [] if x.get('state') in STILL_RUNNING]
    return r


def _back(record, stopped):
    """The first start of the VM STOPPED (a 'stopped' entry) after it stopped, or None."""
    for x in (record or {}).get('started') or []:
        if x.get('name') == stopped.get('name') and \
                float(x.get('started_at') or x.get('running_at') or 0) >= float(stopped.get('stopped_at') or 0):
            return x
    return None


def still_stopped(record):
    """The VMs stopped in place on this host that have not been started again, in the order they were stopped."""
    r = record or {}
    out = []
    for s in r.get('stopped') or []:
        if _back(r, s) is None and s.get('name') not in out:
            out.append(s.get('name'))
    return out


def downtimes(record):
    """[{'name', 'stopped_at', 'back_at', 'downtime_s' (None while it is still stopped), 'how'}] of the VMs stopped
    in place on this host: from seen off to running again (to answering, when addresses were given)."""
    r = record or {}
    out = []
    for s in r.get('stopped') or []:
        if s.get('state') == 'stopping':
            continue    # (the intent: the stop's own entry follows, with its time)
        back = _back(r, s)
        at = (back.get('answered_at') or back.get('running_at')) if back else None
        out.append({'name': s.get('name'), 'stopped_at': s.get('stopped_at'), 'back_at': at, 'how': s.get('how'),
                    'downtime_s': round(float(at) - float(s.get('stopped_at') or 0), 1) if at else None})
    return out


def fail(record, error, at):
    """The host's attempt failed in the phase it was in (that phase ends here, marked failed)."""
    r = dict(record)
    phase = r.get('state')
    phases = dict(r.get('phases') or {})
    if phase in phases and phases[phase].get('start') is not None and phases[phase].get('end') is None:
        phases[phase] = dict(phases[phase], end=at, failed=True)
    r.update(phases=phases, state='failed', failed_phase=phase if phase in PHASES else None, error=error)
    return r


def away(record):
    """The VMs this host's drains sent away that have not come back: [{name, destination}]."""
    back = set(m['name'] for m in (record or {}).get('returned') or []
               if m.get('state') in ('migrated', 'migrated_after_recovery'))
    return [{'name': m['name'], 'destination': m.get('destination')} for m in (record or {}).get('drained') or []
            if m.get('state') in ('migrated', 'migrated_after_recovery') and m['name'] not in back]


def runs(records_by_host, group):
    """{run_id: {host: record}} of GROUP's runs from every host's records ({host: [record, ...]})."""
    out = {}
    for host, records in sorted((records_by_host or {}).items()):
        for r in records or []:
            if r.get('group') == group:
                out.setdefault(r['run_id'], {})[host] = r
    return out


def _unfinished(run):
    return [h for h, r in sorted(run.items()) if r.get('state') not in FINISHED]


def _describe(run_id, run):
    where = ', '.join('%s %s' % (h, r.get('state')) for h, r in sorted(run.items()))
    out = ['%s (%s)' % (run_id, where)]
    gone = ['%s on %s' % (m['name'], m['destination']) for r in run.values() for m in away(r)]
    if gone:
        out.append('VMs away from home: %s' % ', '.join(sorted(gone)))
    down = ['%s on %s' % (vm, h) for h, r in sorted(run.items()) for vm in still_stopped(r)]
    if down:
        out.append('VMs stopped in place, not started again yet: %s' % ', '.join(down))
    return '; '.join(out)


def new_run_id(group, now=None):
    stamp = time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(now if now is not None else time.time()))
    return '%s-%s' % (re.sub(r'[^A-Za-z0-9_.-]', '_', group), stamp)


def choose_run(records_by_host, group, run_id='', resume=False, abandon='', now=None, names=None):
    """Which run this job is, from the hosts' records: {'run_id', 'mode' (new, resume, finished), 'abandon' (the run
    to mark abandoned first, '' for none), 'message'}. NAMES: the hosts this job maintains - a run named by its id
    takes on those it has no record of (a workflow's job per host, one run id). Raises RecordError (before anything
    moves) for: a resume with no unfinished run, a run id that is another group's, a new run while one is
    unfinished, an abandon of a run that is not there."""
    all_runs = dict((h, rs) for h, rs in (records_by_host or {}).items())
    mine = runs(all_runs, group)
    if run_id and not RUN_ID.match(run_id):
        raise RecordError('a run id is letters, digits, _, . and - (got %r)' % run_id)
    others = sorted(set(r.get('group') for rs in all_runs.values() for r in rs or []
                        if r.get('run_id') == run_id and r.get('group') != group)) if run_id else []
    if others and run_id not in mine:
        raise RecordError('run %s is a run of group %s, not of %s: give that group (rolling_maintenance_group), or '
                          'another run id' % (run_id, ', '.join(others), group))
    if abandon:
        if abandon not in mine:
            raise RecordError('no run %s of group %s on its hosts to abandon (runs there: %s)' % (
                abandon, group, ', '.join(sorted(mine)) or 'none'))
        if run_id == abandon or resume:
            raise RecordError('run %s cannot be abandoned and resumed in one job: leave out rolling_maintenance_resume '
                              'and rolling_maintenance_run_id to start a new run after abandoning it' % abandon)
    unfinished = sorted(r for r, run in mine.items() if _unfinished(run) and r != abandon)
    if run_id and run_id in mine:
        if not _unfinished(mine[run_id]) and not [n for n in names or [] if n not in mine[run_id]]:
            return {'run_id': run_id, 'mode': 'finished', 'abandon': abandon,
                    'message': 'run %s finished on every host: nothing to do (a new window: leave out '
                               'rolling_maintenance_run_id)' % run_id}
        return {'run_id': run_id, 'mode': 'resume', 'abandon': abandon,
                'message': 'resuming run %s' % _describe(run_id, mine[run_id])}
    if resume:
        if not unfinished:
            done = sorted(mine, key=lambda x: max(r.get('created_at') or 0 for r in mine[x].values()))
            raise RecordError('no unfinished run of group %s to resume%s: leave out rolling_maintenance_resume to start '
                              'a new run' % (group, ' (the last run, %s, is finished)' % done[-1] if done else ''))
        if len(unfinished) > 1:
            raise RecordError('several unfinished runs of group %s: %s - resume one by its id '
                              '(rolling_maintenance_run_id), abandon the others (rolling_maintenance_abandon)' % (
                                  group, ' | '.join(_describe(r, mine[r]) for r in unfinished)))
        return {'run_id': unfinished[0], 'mode': 'resume', 'abandon': abandon,
                'message': 'resuming run %s' % _describe(unfinished[0], mine[unfinished[0]])}
    if unfinished:
        raise RecordError('run %s is not finished: resume it (rolling_maintenance_resume=true), or abandon it '
                          '(rolling_maintenance_abandon=%s) to start a new run' % (
                              ' | '.join(_describe(r, mine[r]) for r in unfinished), unfinished[0]))
    new_id = run_id or new_run_id(group, now)
    if new_id in mine:
        raise RecordError('run %s is already on the hosts: give another run id' % new_id)
    message = 'a new run: %s' % new_id
    if abandon:
        # (said loudly: what the abandoned run leaves as it is - VMs away from home, VMs stopped in place and down)
        message += ' - run %s abandoned as it stands: %s' % (abandon, _describe(abandon, mine[abandon]))
    return {'run_id': new_id, 'mode': 'new', 'abandon': abandon, 'message': message}

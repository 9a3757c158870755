# -*- coding: utf-8 -*-
# Copyright (c) vmmigration.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What a drain keeps on its host: its journal (each move's start and end, appended and synced as they happen - a
later return home reads from it the VMs still away, each with where it went), its progress files (the drain's status
file and each live move's own) and its locks (one drain per host, one writer per journal).

This module is private to vmmigration.libvirt (leading underscore): its interface may change in
any release.
"""

import contextlib
import errno
import json
import os
import tempfile
import time

try:
    import fcntl
except ImportError:  # pragma: no cover - not a Linux host
    fcntl = None

from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver.connection import LibvirtClientError
from ansible_collections.vmmigration.libvirt.plugins.module_utils.engines.live import write_status as write_json


# Where the drain lock of each host lives on the machine that runs the drain: /run/lock (Debian, Ubuntu, RHEL
# 8+), else the system's temporary directory.
LOCK_DIRS = ('/run/lock', '/var/lock')


def host_lock_path(host_id, dirs=None):
    """The one lock file of a drain of the host HOST_ID (its libvirt host UUID): the same file whatever
    journal or status file a drain names."""
    safe = ''.join(c if c.isalnum() or c in '-_.' else '_' for c in str(host_id))
    for d in (LOCK_DIRS if dirs is None else dirs):
        if os.path.isdir(d) and os.access(d, os.W_OK | os.X_OK):
            return os.path.join(d, 'vmmigration-drain-%s.lock' % safe)
    return os.path.join(tempfile.gettempdir(), 'vmmigration-drain-%s.lock' % safe)


def take_lock(path, now=time.time):
    """The drain's lock on this host: an exclusive flock on PATH (atomic; the kernel drops it when its
    process dies, so a crashed drain leaves no stale lock). Returns the open file descriptor (held until
    release_lock); raises EvacuationRunning naming the holder when another drain has it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.fchmod(fd, 0o600)
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except (IOError, OSError) as e:
        holder = read_json(path) or {}
        os.close(fd)
        if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            raise EvacuationRunning('an evacuation of this host is already running (pid %s, since %s): wait for it, '
                                    'or watch it with the status file' % (holder.get('pid', '?'), holder.get('since', '?')))
        raise
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps({'pid': os.getpid(), 'since': now()}).encode('utf-8'))
    return fd


def release_lock(fd):
    """Drop the lock (the file stays: removing it would let two drains lock two different files)."""
    if fd is None:
        return
    try:
        os.ftruncate(fd, 0)
    finally:
        os.close(fd)


def journal_append(path, entry):
    if not path:
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)   # its owner's only
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, 'a') as f:
        f.write(json.dumps(entry, sort_keys=True) + '\n')
        f.flush()
        os.fsync(f.fileno())


def read_journal(path):
    entries = []
    try:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line:
                    try:
                        entries.append(json.loads(line))
                    except ValueError:
                        pass  # a line cut short by a crash
    except (IOError, OSError):
        pass
    return entries


def pid_alive(pid):
    try:
        os.kill(int(pid), 0)
        return True
    except (OSError, ValueError, TypeError):
        return False


def read_json(path):
    """A JSON file written by write_json, or None (missing, or caught mid-rename)."""
    if not path:
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except (IOError, OSError, ValueError):
        return None


class EvacuationRunning(Exception):
    pass


OK_STATES = ('migrated', 'migrated_after_recovery')


def return_moves(entries, here):
    """From a journal: the VMs that left this host and are still away (pure), as moves back.

    A VM counts as away after an 'end' event of a drain with a successful state, and as back after one
    of a return home. Each move: name, destination (HERE, for the report), method, from_uri (where it is).
    """
    away = {}
    for e in entries:
        if e.get('event') == 'start' and not e.get('return_home'):
            away.setdefault('_starts', {})[e['vm']] = e
        if e.get('event') != 'end' or (e.get('result') or {}).get('state') not in OK_STATES:
            continue
        if e.get('return_home'):
            away.pop(e['vm'], None)
        else:
            start = away.get('_starts', {}).get(e['vm']) or {}
            away[e['vm']] = {'name': e['vm'], 'destination': here, 'method': e['result'].get('method') or 'live',
                             'from_uri': start.get('uri'), 'from': e['result'].get('destination'),
                             'memory_mib': start.get('memory_mib') or 0}
    away.pop('_starts', None)
    return [m for _n, m in sorted(away.items()) if m['from_uri']]


class DrainFiles:
    """The files of one drain as it runs, its errors kept: the journal (an OS error - a full disk - never abandons a
    move: the drain goes on and says the journal is incomplete) and the progress files (best effort: a warning);
    the locks held while it runs. P: the drain's options (journal, status_file, status_tag); LOCK: the drain's
    lock of its own state (the moves' threads write here too); CLOCK: the drain's monotonic clock."""

    def __init__(self, p, lock, clock):
        self.p, self.lock, self.clock = p, lock, clock
        self.journal_errors = []
        self.status_errors = []

    @contextlib.contextmanager
    def locked(self, host_id, now):
        """The drain's locks while it runs: the host's (HOST_ID: its libvirt host UUID) and its journal's (or
        status file's); EvacuationRunning when another drain holds one."""
        fds = [take_lock(host_lock_path(host_id), now)]
        try:
            lock = (self.p.get('journal') or self.p.get('status_file') or '') + '.lock'
            if lock != '.lock':
                fds.append(take_lock(lock, now))
            yield
        finally:
            for fd in fds:
                release_lock(fd)

    def start_journal(self, entry):
        """The journal's first ENTRY (the plan), before anything moves: a journal that cannot be written refuses
        the drain."""
        try:
            journal_append(self.p.get('journal'), entry)
        except OSError as e:
            raise LibvirtClientError('will not drain: the journal %s cannot be written (%s); nothing was moved'
                                     % (self.p.get('journal'), e.strerror or e))

    def journal(self, entry):
        """Append ENTRY to the journal once the drain runs. An OS error (a full disk) never abandons a move: it
        is kept, the drain goes on, and its result says the journal is incomplete (the module then fails)."""
        try:
            journal_append(self.p.get('journal'), entry)
        except OSError as e:
            with self.lock:
                self.journal_errors.append('cannot write the journal %s (%s of %s): %s' % (
                    self.p.get('journal'), entry.get('event'), entry.get('vm', 'the drain'), e.strerror or e))

    def started(self, move, now, uri):
        """The journal's entry for MOVE starting at NOW (time.time), to URI (redacted): where it goes and its memory -
        what a return journey reads."""
        self.journal({'event': 'start', 'time': now, 'vm': move['name'], 'destination': move['destination'],
                      'method': move['method'], 'uri': uri, 'memory_mib': move.get('memory_mib'),
                      'return_home': bool(self.p.get('return_home'))})

    def said(self, out):
        """OUT with what could not be written on this host: journal_errors (the module fails on them: a later
        return of the VMs reads the journal) and warnings."""
        out['journal_errors'] = list(self.journal_errors)
        if self.journal_errors or self.status_errors:
            out['warnings'] = self.journal_errors + ['%s (the drain went on without it)' % e for e in self.status_errors]
        return out

    def write_status(self, data):
        """The progress file, best effort (write_json never raises): its first failure becomes a warning."""
        error = write_json(self.p.get('status_file'), data)
        if error:
            with self.lock:
                if error not in self.status_errors:
                    self.status_errors.append(error)

    def vm_status_path(self, name):
        base = self.p.get('status_file')
        return '%s.%s' % (base, name) if base else None

    def status(self, state, t0, running, results, pending, left, plan):
        """The progress file: what runs (with the engine's phase and percent), what ended, what waits. T0: when the
        drain started (its clock); RUNNING: {name: move} now; RESULTS: the moves' report lines."""
        running_now = []
        for name, move in sorted(running.items()):
            vm = read_json(self.vm_status_path(name)) or {}
            running_now.append({'name': name, 'destination': move['destination'], 'method': move['method'],
                                'phase': vm.get('phase', 'starting'), 'percent': vm.get('percent'),
                                'elapsed_s': round(self.clock() - t0 - move['started_s'], 1)})
        done = [dict((k, v) for k, v in r.items() if k != 'decisions') for r in results]
        return {'state': state, 'pid': os.getpid(), 'tag': self.p.get('status_tag'),
                'elapsed_s': round(self.clock() - t0, 1),
                'running': running_now, 'done': done, 'pending': [m['name'] for m in pending],
                'left': left, 'predicted_total_s': plan.get('predicted_total_s'), 'total': len(plan['moves'])}

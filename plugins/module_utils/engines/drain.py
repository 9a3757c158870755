# -*- coding: utf-8 -*-
# Copyright (c) vmmigration.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The drain of one hypervisor as it runs: the plan's moves (drain_plan) started in threads under the concurrency
limits, each with its own connections and through the per-VM pipeline, a move its destination refused with nothing
changed sent to an alternate, the policy's shutdowns, the drain's own deadline, and the verification and report at
its end; its journal, progress files and locks are drain_files'.

This module is private to vmmigration.libvirt (leading underscore): its interface may change in
any release.
"""

import threading
import time

from ansible_collections.vmmigration.libvirt.plugins.module_utils.decide import planner as P
from ansible_collections.vmmigration.libvirt.plugins.module_utils.orchestration import report as R
from ansible_collections.vmmigration.libvirt.plugins.module_utils.decide import transport as SEC
from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver.connection import LibvirtClientError
from ansible_collections.vmmigration.libvirt.plugins.module_utils.engines.drain_files import DrainFiles
from ansible_collections.vmmigration.libvirt.plugins.module_utils.engines.drain_plan import (
    plan_result,
    plan_to_run,
    read_destination,
    refused_transports,
)
from ansible_collections.vmmigration.libvirt.plugins.module_utils.engines.power import shut_down
from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver.wait import wait_until


def admit(pending, running, limits):
    """Which pending move to start now: planner.admit, the rule the plan's schedule was predicted with
    (one source - this host; PENDING in plan order; RUNNING and PENDING: [{'name', 'destination'}];
    LIMITS: {'max_outbound', 'max_inbound', 'max_total', 'inbound_limits' - this drain's share of a destination
    whose inbound limit the drains of its step share, from its approved plan}). Returns a move or None."""
    return P.admit(pending, running, limits['max_outbound'], limits['max_inbound'], limits['max_total'],
                   source=lambda m: 'source', dest=lambda m: m['destination'],
                   max_in_by=limits.get('inbound_limits'))


def untouched(result, error, method='live'):
    """Whether a failed move changed nothing (pure): the guest runs on the source alone and the destination
    holds nothing of it - refused before it started (a connection that failed, a check or the transport that
    refused), or a live migration rolled back with the destination's copy removed. Only such a move may be
    tried again elsewhere; any other failure (a post-copy, a state not read back, a copy that could not be
    removed, a cold move that shut the guest down and started it again) is reported as it is."""
    if error is None:
        return False
    if result is None:
        return True
    if result.get('changed') is not False:
        return False
    if result.get('state') not in ((None, 'rolled_back') if method != 'cold' else (None,)):
        return False
    return not any(d.get('action') == 'cleanup' and str(d.get('reason', '')).startswith('could not')
                   for d in result.get('decisions') or [])


def summarize_result(name, move, result, error=None):
    """One VM's line of the report."""
    r = result or {}
    plan = r.get('plan') or {}
    return {'name': name, 'destination': move['destination'], 'method': move['method'],
            'state': r.get('state') or ('failed' if error else 'unknown'),
            'strategy': plan.get('strategy'), 'total_time_s': r.get('total_time_s'),
            'downtime_ms': r.get('downtime_ms'), 'bytes_transferred': r.get('bytes_transferred'),
            'postcopy': r.get('postcopy'), 'paused': r.get('paused'), 'announced': r.get('announced'),
            'answering': r.get('answering'), 'phases': r.get('phases'), 'transport': (r.get('transport') or {}).get('transport'), 'error': error}


class MoveSlots:
    """Which of a drain's running moves hold a migration slot (outbound, inbound, total), all under the drain's lock.
    A move started in a slot holds it until its VM runs on its destination (its announce and verification use no
    link). A live move may also start ahead of a slot - its checks, dirty-rate sample and plan run while the moves
    in the slots migrate - and waits in ready() before anything changes (move['slot']: 'held', or 'ahead' then
    'ready' until given one, or 'refused' when the drain stops first)."""

    def __init__(self, drain):
        self.drain = drain

    def holding(self):
        """The running moves that hold a slot: those whose VM has not reached its destination, except a move
        prepared ahead that has not been given one."""
        d = self.drain
        return [m for n, m in d.running.items() if n not in d.finishing and m.get('slot') in (None, 'held')]

    def ready(self, move):
        """MOVE's engine has checked and planned (nothing changed yet): True once it holds a slot - at once for a
        move started in one, else when grant() gives it one; False when the drain stops first (the move then ends
        with nothing changed)."""
        d = self.drain
        with d.lock:
            if move.get('slot') == 'ahead':
                move['slot'] = 'ready'

        def given():
            with d.lock:
                if move.get('slot') in (None, 'held'):
                    return True
                if d.stopping():
                    move['slot'] = 'refused'
                    return 'refused'
            return False
        return wait_until(given, wait_limit_s(d.p), 0.1, d.clock, d.sleep) is True

    def give(self, move):
        """MOVE holds a slot from now on."""
        move['slot'], move['slot_s'] = 'held', round(self.drain.clock() - self.drain.t0, 2)

    def waiting(self):
        """The running moves started ahead that have no slot yet (preparing, or ready), in the order they started."""
        return [m for m in self.drain.running.values() if m.get('slot') in ('ahead', 'ready')]

    def grant(self, limits):
        """Give the slots LIMITS admit to moves prepared ahead, in the order they started: a ready one migrates at
        once, one still preparing holds its slot from now on, as a move started in a slot."""
        while True:
            ahead = self.waiting()
            move = admit(ahead, self.holding(), limits) if ahead else None
            if move is None:
                return
            self.give(move)

    def arriving_mib(self, move):
        """The memory of the moves started before MOVE into its destination and not there yet: its destination's
        free memory, read by its own check, does not count them yet (a move that has arrived it does, or more - on
        the safe side: some of an arriving VM's memory is there before it is)."""
        d = self.drain
        with d.lock:
            before = list(d.running.values())
            before = before[:next((i for i, m in enumerate(before) if m is move), len(before))]
            return sum(m.get('memory_mib') or 0 for m in before
                       if m['destination'] == move['destination'] and m['name'] not in d.finishing)

    def ahead(self, pending):
        """The pending live move to start ahead of a slot: the first in plan order while fewer than one per outbound
        slot are ahead; None otherwise."""
        if len(self.waiting()) >= self.drain.p['max_outbound']:
            return None
        return next((m for m in pending if m['method'] == 'live'), None)


class Evacuation:
    """Drain one hypervisor: plan (drain_plan), run the moves under the limits, verify, report. What it writes on
    this host - its journal, progress files and locks - is its DrainFiles'."""

    def __init__(self, cache, p, cache_factory, clock=time.monotonic, now=time.time, sleep=time.sleep, probe=None):
        self.cache, self.p, self.cache_factory = cache, p, cache_factory
        self.clock, self.now, self.sleep = clock, now, sleep
        self.probe = probe  # the ICMP probe of the addresses to verify (tests give a fake one)
        self.lock = threading.Lock()
        self.results = []
        self.running = {}
        self.finishing = set()  # VMs on their destination, being announced and verified: no slot, but the drain waits
        self.pending = []
        self.done = []          # the moves that ended well (where their anti-affinity groups went)
        self.rerouted = []      # moves its destination refused, with nothing changed, sent to an alternate
        self.stop_flags = {'stop': False}
        self.t0 = None
        self.files = DrainFiles(p, self.lock, clock)  # its journal, progress files and locks
        self.slots = MoveSlots(self)                  # which running moves hold a migration slot

    # -- one move, in its own thread with its own connections ---------------------------------------
    def _move(self, move):
        from ansible_collections.vmmigration.libvirt.plugins.module_utils.engines.cold import COLD_ARGSPEC  # pylint: disable=import-outside-toplevel
        from ansible_collections.vmmigration.libvirt.plugins.module_utils.engines.live import (  # pylint: disable=import-outside-toplevel
            live_options, option_defaults)
        from ansible_collections.vmmigration.libvirt.plugins.module_utils.engines.pipeline import move_vm  # pylint: disable=import-outside-toplevel
        p = self.p
        name = move['name']
        started = self.clock() - self.t0
        cache = self.cache_factory()
        result, error, arrived = None, None, {}
        try:
            src = cache.get(move.get('from_uri') or p['uri'])
            dst = cache.get(move['uri'])
            # the URIs as given (libvirt opens them); results and the journal show them redacted
            where = {'uri': move.get('from_uri') or p['uri'], 'dest_uri': move['uri'], 'domain': name}
            if p.get('plan') and not p.get('return_home') and 'storage' in move:
                # checked when the plan was made, revalidated at the drain's start: not checked again
                where['approved'] = {'storage': move['storage']}
            else:
                # the move's own memory check counts the moves still arriving there
                where['arriving_mib'] = self.slots.arriving_mib(move)
            if move['method'] == 'cold':
                opts = option_defaults(COLD_ARGSPEC)
                opts.update(p.get('cold_options') or {})
                opts['headroom_mib'] = p.get('headroom_mib', opts['headroom_mib'])
            else:
                opts = live_options(p.get('migrate_options'))
                opts['status_file'] = self.files.vm_status_path(name)
                opts['hard_timeout_s'] = p['per_vm_timeout_s']
                # (one headroom per drain: its plan's, and each move's own memory check - a return's too)
                opts['headroom_mib'] = p.get('headroom_mib', opts['headroom_mib'])
            opts.update(where)
            # the same pipeline as the migrate module: move, announce from the destination, verify the addresses
            result = move_vm(src, dst, name, move['method'], opts, clock=self.clock, sleep=self.sleep,
                             hosts_security=self.move_security(move), announce_self=p.get('announce'),
                             addresses=(p.get('verify_addresses_by_vm') or {}).get(name),
                             verify_timeout_s=p.get('verify_timeout_s') or 10.0, probe=self.probe,
                             on_moved=lambda: self.moved(name, arrived), on_ready=lambda: self.slots.ready(move))
        except Exception as e:  # pylint: disable=broad-except
            # One VM failing never stops the drain by itself. What happened to it is the engine's result
            # (rolled back, or moved with its source cleanup failed, or a post-copy left to finish - also when
            # something failed after the engine: move_vm keeps its result on the error); an error without one (a
            # connection that failed before the engine started) changed nothing.
            result = getattr(e, 'result', None)
            error = getattr(e, 'msg', None) or '%s: %s' % (type(e).__name__, e)
            if not isinstance(e, LibvirtClientError):
                error = 'unexpected error (a defect of vmmigration.libvirt; please report it): %s' % error
        finally:
            cache.close()
        line = summarize_result(name, move, result, error)
        line['start_s'] = round(started, 2)
        line['end_s'] = round(self.clock() - self.t0, 2)
        line['slot_s'] = move.get('slot_s')    # when it got its migration slot (a move prepared ahead waits), or None
        line['moved_s'] = arrived.get('s')     # when it ran on the destination (its slot given back), or None
        line['decisions'] = (result or {}).get('decisions')
        if (result or {}).get('status_file_error'):
            with self.lock:
                if result['status_file_error'] not in self.files.status_errors:
                    self.files.status_errors.append(result['status_file_error'])
        if move.get('instead_of'):
            line.update(instead_of=move['instead_of'], rerouted_because=move.get('rerouted_because'))
        # (a move prepared ahead that the drain's stop kept from its slot changed nothing: it was not started)
        refused = move.get('slot') == 'refused' and untouched(result, error, move['method'])
        if refused:
            line['state'] = 'not_started'
        # the journal first: a move is over for the drain only once its end is recorded
        self.files.journal({'event': 'end', 'time': self.now(), 'vm': name, 'return_home': bool(p.get('return_home')),
                            'result': dict((k, v) for k, v in line.items() if k != 'decisions')})
        # (a VM that reached its destination is never tried elsewhere, whatever failed after)
        again = (self.reroute(move, error) if untouched(result, error, move['method']) and not p.get('return_home')
                 and not arrived else None)
        with self.lock:
            if refused:
                # (listed with the moves the stop kept from starting)
                self.pending.append(move)
            elif again is not None:
                # (queued before this move leaves the running ones: the drain never sees neither)
                self.rerouted.append({'name': name, 'from': move['destination'], 'to': again['destination'],
                                      'why': error, 'at_s': line['end_s']})
                self.pending.append(again)
            else:
                self.results.append(line)
                if not error:
                    self.done.append(move)
            self.running.pop(name, None)
            self.finishing.discard(name)
        if again is not None:
            self.files.journal({'event': 'reroute', 'time': self.now(), 'vm': name, 'from': move['destination'],
                                'to': again['destination'], 'why': error})

    def stopping(self):
        return self.stop_flags['stop']

    def moved(self, name, arrived):
        """NAME runs on its destination: its slot goes to the next move; its announce and verification go on."""
        arrived['s'] = round(self.clock() - self.t0, 2)
        with self.lock:
            self.finishing.add(name)

    def reroute(self, move, error):
        """A move its destination refused or could not take, with nothing changed (untouched): the same move to
        the first of its remaining alternates (ranked when the plan was made, allowed by the same checks and
        rules) that holds now - reachable, no domain of its name or UUID, the free memory for it beside the
        headroom and every move of this drain still running or waiting to go there, no VM of its anti-affinity
        group going there - queued under the same admission control; None when none holds, or the drain is
        stopping (the move then ends failed, as it did)."""
        alternates = [a for a in move.get('alternates') or [] if a['destination'] not in move.get('tried', ())]
        if not alternates or self.stopping():
            return None
        with self.lock:
            waiting = list(self.running.values()) + list(self.pending)
            going = waiting + list(self.done)
        cache = self.cache_factory()
        try:
            return alternate_that_holds(cache, self.p, move, alternates, waiting, going, error)
        finally:
            cache.close()

    def source_security(self):
        """This host's TLS state when the module runs on it (a local URI), else None (not known here)."""
        if not hasattr(self, '_source_security'):
            local = SEC.connection_transport(self.p['uri']) == 'local'
            self._source_security = SEC.host_security() if local else None
        return self._source_security

    def move_security(self, move):
        """{'source', 'dest'} TLS states for one move (a return moves back to this host)."""
        by_name = dict((d['name'], d.get('security')) for d in self.p['destinations'])
        if self.p.get('return_home'):
            return {'source': by_name.get(move.get('from')), 'dest': self.source_security()}
        return {'source': self.source_security(), 'dest': by_name.get(move.get('destination'))}

    def progress(self, state, pending, left, plan):
        """The progress file's content now (DrainFiles.status of this drain's moves)."""
        return self.files.status(state, self.t0, self.running, self.results, pending, left, plan)

    # -- the drain ----------------------------------------------------------------------------------
    def run(self, check_mode=False):
        p = self.p
        self.t0 = self.clock()
        started_at = round(self.now(), 3)
        plan, to_run, left, changes, uris = plan_to_run(self.cache, p)
        refused = refused_transports(p, to_run, self.move_security)
        if refused:
            raise PlaintextRefused('will not drain: %s' % ' | '.join(refused))
        out = plan_result(p, plan, to_run, left, changes, started_at)
        if check_mode:
            out['state'] = 'planned'
            return out
        # one drain per host, whatever journal each names (the host's UUID names its lock), and one writer
        # per journal (two hosts' drains must not share one)
        with self.files.locked(self.cache.get(p['uri']).host_uuid() or SEC.redact_uri(p['uri']), self.now):
            return self._drain(plan, to_run, left, uris, out)

    def _drain(self, plan, to_run, left, uris, out):
        p = self.p
        self.files.start_journal({'event': 'plan', 'time': self.now(), 'source': SEC.redact_uri(p['uri']),
                                  'moves': [dict((k, m[k]) for k in ('name', 'destination', 'method'))
                                            for m in to_run], 'left': left})
        src = self.cache.get(p['uri'])
        for item in left:
            if item['action'] != 'shutdown':
                continue
            dom = src.lookup(item['name'])
            item['result'] = policy_shutdown(dom, p.get('cold_options') or {}, self.clock, self.sleep)
            self.files.journal({'event': 'shutdown', 'time': self.now(), 'vm': item['name'], 'result': item['result']})
        pending = self.pending
        pending[:] = [dict(m, uri=uris[m['destination']]) for m in to_run]
        if p.get('return_home'):
            # the engine's source is where the VM is now; the moves' names stay as the journal has them
            pending[:] = [dict(m, uri=p['return_uri']) for m in to_run]
        deadline = self.t0 + p['timeout_s']
        threads = []
        flags = self.stop_flags
        # (an approved plan of a step gives this drain its share of the destinations the step's drains share)
        limits = dict(p, inbound_limits=(plan or {}).get('inbound_limits') or {})

        def step():
            """Start what the limits admit; True once nothing runs and nothing more will start."""
            while True:
                with self.lock:
                    # (read with the slots it gives: a failure recorded just now stops the drain before a slot does)
                    failed = any(r['error'] or r['state'] not in ('migrated', 'migrated_after_recovery', 'already_there',
                                                                  'cold_migrated', 'moved')
                                 for r in self.results)
                    if (p['stop_on_failure'] and failed) or self.clock() > deadline:
                        flags['stop'] = True
                    if flags['stop']:
                        break
                    self.slots.grant(limits)
                    move = admit(pending, self.slots.holding(), limits)
                    if move is not None:
                        self.slots.give(move)
                    else:
                        move = self.slots.ahead(pending)
                        if move is None:
                            break
                        # (a move tried again elsewhere starts afresh: no slot of its earlier try)
                        move['slot'], move['slot_s'] = 'ahead', None
                    pending.remove(move)
                    move['started_s'] = self.clock() - self.t0
                    self.running[move['name']] = move
                self.files.started(move, self.now(), SEC.redact_uri(move['uri']))
                t = threading.Thread(target=self._move, args=(move,))
                t.daemon = True
                t.start()
                threads.append(t)
            with self.lock:
                if not self.running and (flags['stop'] or not pending):
                    return True
            if p.get('status_file'):
                self.files.write_status(self.progress('running', pending, left, plan))
            return False
        abandoned, overran = [], []
        if not wait_until(step, wait_limit_s(p), 0.25, self.clock, self.sleep):
            # Past the drain's own limit nothing more starts, but a move that runs is never abandoned: a drain
            # that exits kills its move threads with it (a cold copy cut half-way leaves the guest shut off).
            # Each engine ends by its own deadlines (a live move's completion deadline and hard timeout, a cold
            # copy's 1 s per 10 MiB, libvirt's keepalive for a hung call): the drain waits for them, and says so.
            flags['stop'] = True
            with self.lock:
                overran = sorted(self.running)
            self.files.journal({'event': 'overrun', 'time': self.now(), 'running': overran})

            def ended():
                with self.lock:
                    if not self.running:
                        return True
                self.files.write_status(self.progress('overrunning', pending, left, plan))
                return False
            if not wait_until(ended, MOVE_OVERRUN_LIMIT_S, 5.0, self.clock, self.sleep):
                # (only a move whose engine broke its own bounds gets here)
                with self.lock:
                    abandoned = sorted(self.running.values(), key=lambda m: m['name'])
                    self.running.clear()
        for t in threads:
            # (a move no longer in self.running has recorded its end: its thread is only returning)
            t.join(0 if abandoned else 10.0)
        for m in abandoned:
            line = summarize_result(m['name'], m, {'state': 'still_running'},
                                    'the drain stopped waiting for this move %d s after its own limit: its engine '
                                    'did not end it within its own deadlines and may still be moving it - see the '
                                    'journal and both hosts before acting' % MOVE_OVERRUN_LIMIT_S)
            line.update(start_s=round(m['started_s'], 2), end_s=None, moved_s=None, decisions=None)
            self.results.append(line)
        # (in plan order: a move prepared ahead that the stop kept from its slot is back among them)
        order = dict((m['name'], i) for i, m in enumerate(to_run))
        not_started = [{'name': m['name'], 'action': 'not_started',
                        'reason': 'the drain stopped: %s' % ('a migration failed (stop_on_failure)'
                                                             if self.clock() <= deadline else 'timeout_s reached')}
                       for m in sorted(pending, key=lambda m: order.get(m['name'], len(order)))]
        left = left + not_started
        if overran:
            out['overran'] = overran
        try:
            still = sorted(d.name() for d in src.call('cannot list domains', src.conn.listAllDomains, 0) if d.isActive())
        except LibvirtClientError as e:
            # the moves ran and their results stand; only the check of what is left cannot be made
            return self._unverified(out, plan, left, e)
        if p.get('return_home'):
            returned_home(out, p, self.results, left, still, round(self.clock() - self.t0, 2))
            self.files.journal({'event': 'done', 'time': self.now(), 'state': out['state'], 'return_home': True})
            self.files.write_status(dict(self.progress('finished', [], left, plan)))
            return self.files.said(out)
        evacuated(out, p, self.results, left, still, round(self.clock() - self.t0, 2), self.rerouted)
        self.files.write_status(dict(self.progress('finished', [], left, plan), summary={
            'state': out['state'], 'wall_s': out['wall_s'], 'still_running_on_source': still}))
        self.files.journal({'event': 'done', 'time': self.now(), 'state': out['state'], 'still_running_on_source': still})
        return self.files.said(out)

    def _unverified(self, out, plan, left, error):
        """The drain ran, but this host cannot be read any more to see what still runs on it."""
        unverified(out, self.p, self.results, left, error, round(self.clock() - self.t0, 2), self.rerouted)
        self.files.journal({'event': 'done', 'time': self.now(), 'state': 'unverified',
                            'return_home': bool(self.p.get('return_home'))})
        self.files.write_status(dict(self.progress('finished', [], left, plan), summary={
            'state': 'unverified', 'wall_s': out['wall_s'], 'still_running_on_source': None}))
        return self.files.said(out)


def alternate_that_holds(cache, p, move, alternates, waiting, going, error):
    """Evacuation.reroute's search: MOVE to the first of ALTERNATES that holds now (WAITING: the moves running or
    queued, GOING: those and the ones done), else None."""
    uris = dict((d['name'], d['uri']) for d in p['destinations'])
    try:
        here = cache.get(p['uri']).host_uuid()
    except LibvirtClientError:
        return None
    for alt in alternates:
        d = alt['destination']
        try:
            now = read_destination(cache, uris, d, here)
        except LibvirtClientError as e:
            now = {'error': e.msg}
        if now.get('error'):
            continue
        if any(x[0] == move['name'] or (move.get('uuid') and x[1] == move['uuid']) for x in now['domains']):
            continue
        # (a move that ended is in the free memory read now; one running or waiting may not be yet)
        need = (p.get('headroom_mib') or 0) + (move.get('memory_mib') or 0) + sum(
            m.get('memory_mib') or 0 for m in waiting if m['destination'] == d and m['name'] != move['name'])
        if need > now['free_mib']:
            continue
        if move.get('group') and any(m['destination'] == d and m.get('group') == move['group']
                                     and m['name'] != move['name'] for m in going):
            continue
        return dict(move, destination=d, uri=uris[d], method=alt['method'], copies_disks=alt['copies_disks'],
                    storage=alt.get('storage') or {}, instead_of=move.get('instead_of') or move['destination'],
                    rerouted_because=error, tried=list(move.get('tried') or []) + [move['destination'], d],
                    alternates=[a for a in alternates if a is not alt])
    return None


def wait_limit_s(p):
    """Seconds after its start at which the drain is overrunning: no move starts after timeout_s, and each
    move's engine is expected to end by per_vm_timeout_s (live) or its shutdown and copy deadlines (cold, at
    least 30 minutes a file) with 10 minutes more. Past it the drain starts nothing and says so, but still
    waits for the moves that run: a cold copy's own deadline grows with the disk (1 s per 10 MiB)."""
    cold = p.get('cold_options') or {}
    cold_s = (cold.get('shutdown_timeout_s') or 120) + (cold.get('copy_timeout_s') or 1800)
    return p['timeout_s'] + max(p['per_vm_timeout_s'], cold_s) + 600


def policy_shutdown(dom, cold, clock, sleep):
    """Policy shutdown: the collection's one shutdown policy (power.shut_down) with the cold options' timeout
    and force - ACPI pressed every 5 s, powered off only with cold_options.force (a guest that did not stop is
    said so, and still runs here). COLD: the drain's cold_options."""
    timeout = cold.get('shutdown_timeout_s') or 120
    try:
        if not dom.isActive():
            return 'already stopped'
        done, stuck = shut_down({'vm': dom}, timeout, bool(cold.get('force')), clock, sleep=sleep)
    except LibvirtClientError as e:
        return 'shutdown failed: %s' % e.msg
    if stuck:
        return ('shutdown failed: did not shut down within %s s (cold_options.force=true powers it off); it still '
                'runs here' % timeout)
    return 'shut down' if done['vm']['how'] == 'clean' else 'powered off after %s s (cold_options.force)' % timeout


def returned_home(out, p, results, left, still, wall_s):
    """OUT with the result of a return home that ran: RESULTS its moves' lines, STILL what runs here now."""
    back = [r['name'] for r in results if not r['error']]
    out.update(results=sorted(results, key=lambda r: r['start_s']), left=left, wall_s=wall_s,
               changed=bool(back), failed_vms=[r['name'] for r in results if r['error']],
               still_running_on_source=still, verified=set(back) <= set(still),
               state='returned_home' if back else 'nothing_moved')
    # (data, not HTML: the controller draws the timeline from the results - report.timeline_html)
    out['report'] = {'table': R.table(out['results'], left),
                     'title': 'Return to %s' % (p.get('source_name') or SEC.redact_uri(p['uri']))}


def evacuated(out, p, results, left, still, wall_s, rerouted):
    """OUT with the result of a drain that ran: RESULTS its moves' lines, STILL what runs here now (verified
    against what was left and what failed), REROUTED the moves sent to an alternate."""
    expected = sorted(x['name'] for x in left if x['action'] in ('skip', 'not_started')) + \
        sorted(r['name'] for r in results if r['error'])
    results = sorted(results, key=lambda r: r['start_s'])
    out.update(results=results, left=left, still_running_on_source=still,
               verified=set(still) <= set(expected),
               wall_s=wall_s,
               changed=bool(results) or any(x['action'] == 'shutdown' for x in left))
    out['failed_vms'] = [r['name'] for r in results if r['error']]
    out['rerouted'] = list(rerouted)
    out['report'] = {'table': R.table(results, left),
                     'title': 'Evacuation of %s' % (p.get('source_name') or SEC.redact_uri(p['uri']))}
    # a drain that leaves VMs on the host is never a quiet success: 'incomplete' (the module fails
    # unless allow_incomplete), with each VM left and why
    out['state'] = 'evacuated' if not still else 'incomplete'
    out['moved'] = sorted(r['name'] for r in results if not r['error'])


def unverified(out, p, results, left, error, wall_s, rerouted):
    """OUT with the result of a drain that ran, but this host cannot be read any more (ERROR) to see what still
    runs on it."""
    results = sorted(results, key=lambda r: r['start_s'])
    out.update(results=results, left=left, still_running_on_source=None, verified=False, state='unverified',
               wall_s=wall_s, changed=bool(results),
               failed_vms=[r['name'] for r in results if r['error']],
               moved=sorted(r['name'] for r in results if not r['error']),
               unverified_because='cannot list the domains of the source after the drain: %s' % error.msg,
               rerouted=list(rerouted))
    out['report'] = {'table': R.table(results, left),
                     'title': 'Evacuation of %s' % (p.get('source_name') or SEC.redact_uri(p['uri']))}


# Seconds past its own limit a drain waits for moves that still run before it hands them over (reported as
# still running): only an engine that broke its own bounds (a day) gets there.
MOVE_OVERRUN_LIMIT_S = 86400


class PlaintextRefused(Exception):
    """A move of the plan would send a guest's memory in the clear and nobody allowed it; nothing was done."""

    def __init__(self, msg):
        Exception.__init__(self, msg)
        self.msg = msg

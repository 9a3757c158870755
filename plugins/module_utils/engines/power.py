# -*- coding: utf-8 -*-
# Copyright (c) vmmigration.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""VMs stopped on their own host and started again there, and the collection's one shutdown policy (private: may
change in any release).

The rolling maintenance's stop-in-place policy: the VMs that cannot move (and those the operator lists) are shut
down gracefully on their host before its maintenance and started again there after its health gate, in order,
each waited for until it runs and, when addresses are given, answers.

The shutdown policy (shut_down - cold moves, the drain's non_live_policy=shutdown and stop in place all use it): an
ACPI shutdown, pressed again every PRESS_EVERY_S seconds (an early press can be lost while a guest boots or is busy)
until the guest is off or the timeout passed; then, only with FORCE, a power-off. Without FORCE a guest that did not
stop is never powered off: the caller says so (stop in place starts again the VMs it stopped - the host is left as
it was - and fails naming it).
"""

import time

from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver.connection import LibvirtClientError, domain_state
from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver.wait import wait_until

PRESS_EVERY_S = 5.0


class PowerError(Exception):
    """Stopping or starting failed; RESULT: what was done (the module returns it with the message)."""

    def __init__(self, msg, result=None):
        Exception.__init__(self, msg)
        self.msg = msg
        self.result = result or {}


def refusals(client, names, state, refuse_others=False):
    """Why NAMES cannot be stopped (STATE stopped) or started (running) here - [] when they can - and {name: dom}.
    Each must be defined on this host and persistent (a transient domain is gone once stopped: it could never be
    started again); with REFUSE_OTHERS, no other VM may run here (the drain was to move every other one)."""
    why, doms = [], {}
    seen = set()
    for name in names:
        if name in seen:
            why.append('%s is named twice' % name)
            continue
        seen.add(name)
        dom = client.lookup(name)
        if dom is None:
            why.append('%s is not defined on %s' % (name, client.uri))
            continue
        if not client.call('cannot read whether %s is persistent' % name, dom.isPersistent):
            why.append('%s is transient on %s: once stopped, libvirt forgets it and it could not be started again '
                       '(define it persistently - virsh dumpxml, virsh define - or let it move)' % (name, client.uri))
            continue
        doms[name] = dom
    if refuse_others and state == 'stopped':
        others = sorted(d.name() for d in client.call('cannot list the domains of %s' % client.uri,
                                                      client.conn.listAllDomains, 0)
                        if d.isActive() and d.name() not in seen)
        if others:
            why.append('%s still run%s on %s and %s not to be stopped in place (the drain was to move %s)' % (
                ', '.join(others), 's' if len(others) == 1 else '', client.uri, 'is' if len(others) == 1 else 'are',
                'it' if len(others) == 1 else 'them'))
    return why, doms


def shut_down(doms, timeout_s, force=False, clock=time.monotonic, now=time.time, sleep=time.sleep, done=None):
    """The shutdown policy over DOMS {name: domain} (all at once). Fills DONE (and returns it, with the names still
    running - not forced): {name: {'how' (clean, forced), 'stopped_at' (epoch), 'shutdown_s'}} of those now off - so
    that a caller whose connection fails half-way knows what did stop. A domain already off counts as clean at once.
    A press refused (a guest between states) is pressed again at the next turn."""
    t0 = clock()
    done = {} if done is None else done
    pressed = {}

    def all_off():
        for n, dom in sorted(doms.items()):
            if n in done:
                continue
            if not dom.isActive():
                done[n] = {'how': 'clean', 'stopped_at': round(now(), 3), 'shutdown_s': round(clock() - t0, 1)}
                continue
            if clock() >= pressed.get(n, 0.0):
                try:
                    dom.shutdown()
                except LibvirtClientError:
                    pass
                pressed[n] = clock() + PRESS_EVERY_S
        return len(done) == len(doms)

    wait_until(all_off, timeout_s, 0.2, clock, sleep)
    stuck = sorted(n for n in doms if n not in done)
    if stuck and force:
        for n in stuck:
            doms[n].destroy()
            done[n] = {'how': 'forced', 'stopped_at': round(now(), 3), 'shutdown_s': round(clock() - t0, 1)}
        stuck = []
    return done, stuck


def stop(client, names, shutdown_timeout_s=120.0, force=False, check_mode=False, clock=time.monotonic,
         now=time.time, sleep=time.sleep, refuse_others=False):
    """Shut NAMES down on this host, all at once (shut_down). Returns [{'name', 'state' (stopped, already_stopped,
    would_stop), 'how' (clean, forced), 'stopped_at' (epoch), 'shutdown_s'}]. Refused, before any press, by
    refusals(). A guest still running at the timeout: powered off with FORCE; else the ones this call stopped are
    started again (state started_again; one that would not start stays stopped) and PowerError names it."""
    why, doms = refusals(client, names, 'stopped', refuse_others)
    if why:
        raise PowerError('nothing was stopped: %s' % '; '.join(why),
                         {'results': [{'name': n, 'state': 'not_stopped'} for n in names], 'changed': False})
    results = dict((n, {'name': n}) for n in names)
    to_stop = []
    for n in names:
        if client.call('cannot read the state of %s' % n, doms[n].isActive):
            to_stop.append(n)
            results[n]['state'] = 'would_stop'
        else:
            results[n]['state'] = 'already_stopped'
    if check_mode or not to_stop:
        return [results[n] for n in names]
    done = {}
    try:
        done, stuck = shut_down(dict((n, doms[n]) for n in to_stop), shutdown_timeout_s, force, clock, now, sleep, done)
    except LibvirtClientError as e:
        for n, how in done.items():
            results[n].update(how, state='stopped')
        raise PowerError('%s - stopped by then: %s (recorded as stopped)' % (e.msg, ', '.join(sorted(done)) or 'none'),
                         {'results': [results[n] for n in names], 'changed': bool(done)})
    for n, how in done.items():
        results[n].update(how, state='stopped')
    if not stuck:
        # (a VM set to start with its host would be started by libvirt as the host comes back from its maintenance -
        # before its gate, out of order: off while it is stopped in place, on again once it is back - start())
        for n in sorted(done):
            try:
                if client.call('cannot read the autostart of %s' % n, doms[n].autostart):
                    client.call('cannot turn off the autostart of %s' % n, doms[n].setAutostart, 0)
                    results[n]['autostart'] = True
            except LibvirtClientError as e:
                results[n]['autostart_error'] = e.msg
    if stuck:
        for n in stuck:
            results[n]['state'] = 'did_not_stop'
        stopped = [n for n in to_stop if 'stopped_at' in results[n]]
        back, failed = [], []
        for n in stopped:
            try:
                client.call('cannot start %s again' % n, doms[n].create)
                back.append(n)
                # (down a moment, running again: not a VM stopped in place - the record counts it back)
                results[n].update(state='started_again', started_at=round(now(), 3), running_at=round(now(), 3))
            except LibvirtClientError as e:
                failed.append('%s (%s)' % (n, e.msg))
        raise PowerError('%s did not shut down within %s s (force=true powers a guest off after that); %s' % (
            ', '.join(stuck), shutdown_timeout_s,
            'nothing stays stopped: %s started again' % ', '.join(back) if back and not failed else
            'nothing else was stopped' if not failed else
            'started again: %s; COULD NOT START AGAIN: %s' % (', '.join(back) or 'none', ', '.join(failed))),
            {'results': [results[n] for n in names], 'stuck': stuck, 'changed': bool(stopped)})
    return [results[n] for n in names]


def running_elsewhere(dom, peers):
    """Where else the domain DOM (its UUID) runs: ([peer URI] of PEERS - clients of the group's other hosts - that run
    a domain with its UUID, ['URI: why' of those that cannot be asked]). A start is refused on the first (never two
    copies of one guest on one disk); the second are said (a host down or rebooting in the same step cannot answer,
    and does not keep the VM down)."""
    uuid = dom.UUIDString()
    there_too, unasked = [], []
    for peer in peers:
        try:
            there = peer.lookup_uuid(uuid)
            if there is not None and there.isActive():
                there_too.append(peer.uri)
        except LibvirtClientError as e:
            unasked.append('%s: %s' % (peer.uri, e.msg))
    return there_too, unasked


def start(client, names, start_timeout_s=300.0, addresses_by_vm=None, check_mode=False, clock=time.monotonic,
          now=time.time, sleep=time.sleep, probe=None, peers=(), restore_autostart=()):
    """Start NAMES on this host in their order, each waited for until it runs and, when ADDRESSES_BY_VM {vm:
    [address]} names some, until they answer (PROBE(addresses, timeout_s) -> {address: seconds or None}), within
    START_TIMEOUT_S each. Never a second copy: a VM that runs on one of PEERS (clients of the group's other hosts) is
    not started (a peer that cannot be asked is said in 'unasked'). A VM that does not come back - not defined here, transient,
    running elsewhere, failing to start, silent - does not keep the others down: all are tried, then PowerError names
    those that failed. A VM found running already (an earlier attempt started it, and its addresses did not answer
    then) is checked the same way. RESTORE_AUTOSTART: VMs whose autostart the stop turned off - on again once each
    is back ('autostart': True). Returns [{'name', 'state' (started, already_running, would_start, failed),
    'started_at', 'running_at' (for one found running: when it was seen so), 'answered_at' (epoch), 'boot_s',
    'error'}]."""
    addresses_by_vm = addresses_by_vm or {}
    results, failed = [], []
    for n in names:
        r = {'name': n}
        results.append(r)
        why, doms = refusals(client, [n], 'running')
        if n in [x['name'] for x in results[:-1]]:
            why = ['%s is named twice' % n]
        if why:
            r.update(state='failed', error='; '.join(why))
            failed.append('%s (%s)' % (n, r['error']))
            continue
        dom = doms[n]
        t0 = clock()
        if domain_state(dom) == 'running':
            # (started by an earlier attempt whose check of its addresses failed, or by hand: seen running now)
            r.update(state='already_running', running_at=round(now(), 3))
        else:
            elsewhere, unasked = running_elsewhere(dom, peers)
            if unasked:
                r['unasked'] = unasked
            if elsewhere:
                r.update(state='failed', error='not started here: it runs on %s (same UUID) - never two copies of one '
                                               'guest' % ', '.join(elsewhere))
                failed.append('%s (%s)' % (n, r['error']))
                continue
            if check_mode:
                r['state'] = 'would_start'
                continue
            r['started_at'] = round(now(), 3)
            if not _started(client, n, dom, r, failed, start_timeout_s, clock, now, sleep, t0):
                continue
        addresses = list(addresses_by_vm.get(n) or [])
        if addresses and probe is not None and not check_mode:
            left = max(1.0, start_timeout_s - (clock() - t0))
            try:
                answered = probe(addresses, left)
            except PowerError as e:
                r.update(state='failed', error='runs, but its addresses could not be probed: %s' % e.msg)
                failed.append('%s (%s)' % (n, r['error']))
                continue
            silent = sorted(a for a, s in answered.items() if s is None)
            if silent:
                r.update(state='failed', error='runs, but %s did not answer within %.0f s of its start' % (
                    ', '.join(silent), start_timeout_s))
                failed.append('%s (%s)' % (n, r['error']))
                continue
            r.update(answered_at=round(now(), 3), boot_s=round(clock() - t0, 1))
        if n in (restore_autostart or ()) and not check_mode:
            try:
                if not client.call('cannot read the autostart of %s' % n, dom.autostart):
                    client.call('cannot turn on the autostart of %s again' % n, dom.setAutostart, 1)
                r['autostart'] = True
            except LibvirtClientError as e:
                r.update(state='failed', error='back, but %s' % e.msg)
                failed.append('%s (%s)' % (n, r['error']))
    if failed:
        raise PowerError('did not come back: %s' % '; '.join(failed), {
            'results': results, 'changed': any(r.get('started_at') for r in results)})
    return results


def _started(client, n, dom, r, failed, start_timeout_s, clock, now, sleep, t0):
    """Start N (DOM) and wait until it runs: True, or False with R and FAILED saying why."""
    try:
        if not client.call('cannot read the state of %s' % n, dom.isActive):
            client.call('cannot start %s' % n, dom.create)
        else:
            # (paused, say: what runs it again)
            client.call('cannot resume %s' % n, dom.resume)
    except LibvirtClientError as e:
        r.update(state='failed', error=e.msg)
        failed.append('%s (%s)' % (n, e.msg))
        return False
    if not wait_until(lambda: domain_state(dom) == 'running', start_timeout_s, 0.5, clock, sleep):
        r.update(state='failed', error='not running %s s after its start (%s)' % (start_timeout_s, domain_state(dom)))
        failed.append('%s (%s)' % (n, r['error']))
        return False
    r.update(state='started', running_at=round(now(), 3), boot_s=round(clock() - t0, 1))
    return True

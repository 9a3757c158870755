# -*- coding: utf-8 -*-
# Copyright (c) vmmigration.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The per-VM pipeline, one code path for the migrate module and the drain (private: may change in any release).

move (the live or cold engine) -> advertise (QEMU's announce-self from the destination) -> verify (the VM's
addresses answer ICMP echo from where this runs). The migrate module, the cold_migrate module and every move
of a drain go through :func:`move_vm`; the migrate_vm role adds only what must run on another host (gratuitous
ARP / unsolicited NA frames sent from the destination, host routes, a probe from a third vantage point).
"""

import ipaddress
import time

MOVED = ('migrated', 'migrated_after_recovery')

# the verification step's options (the migrate modules; the drain takes its addresses per VM)
VERIFY_ARGSPEC = dict(
    verify_addresses=dict(type='list', elements='str', default=[]),
    verify_timeout_s=dict(type='float', default=10),
)


def check_addresses(addresses):
    """The problems of a list of addresses to verify (empty when they are all IP addresses)."""
    problems = []
    for a in addresses or []:
        try:
            ipaddress.ip_address(a)
        except ValueError:
            problems.append('not an IP address: %s' % a)
    return problems


def verify_problems(p):
    """The problems of the verification options P (verify_addresses, verify_timeout_s)."""
    problems = check_addresses(p.get('verify_addresses'))
    if p.get('verify_timeout_s') is not None and p['verify_timeout_s'] <= 0:
        problems.append('verify_timeout_s must be greater than 0')
    return problems


def silent_message(result):
    """Why a move's verification failed (its addresses silent, or no probe), else None."""
    a = result.get('answering')
    if not a or a.get('all_answered'):
        return None
    silent = sorted(k for k, v in (a.get('addresses') or {}).items() if v is None)
    return '%s moved (state %s), but %s did not answer%s' % (
        result.get('domain') or 'the VM', result.get('state'), ', '.join(silent) or 'its addresses',
        ': %s' % a['error'] if a.get('error') else '')


def announce(dst, name):
    """QEMU's announce-self for NAME on the destination: True, or why it failed (never fatal: the VM moved)."""
    from ansible_collections.vmmigration.libvirt.plugins.module_utils.engines import advertise as A  # pylint: disable=import-outside-toplevel
    from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver.connection import LibvirtClientError  # pylint: disable=import-outside-toplevel
    try:
        dom = dst.lookup(name)
        if dom is None:
            return 'not found on the destination'
        A.announce_self(dom)
        return True
    except A.AdvertiseError as e:
        return str(e)
    except LibvirtClientError as e:
        # (a destination lost after the move: the VM moved all the same, and the result says so)
        return 'QEMU announce-self not sent: %s' % e.msg


def verify(addresses, timeout_s, probe=None, moved_at=None, now=time.time):
    """Whether ADDRESSES answer ICMP echo within TIMEOUT_S, from where this runs.

    Returns {'addresses': {address: seconds from the start of the probe to its first reply, or None},
    'all_answered', 'since_move_s' (from MOVED_AT, the time the VM ran on the destination, to the last first
    reply), 'error' (why the probe could not run)}."""
    from ansible_collections.vmmigration.libvirt.plugins.module_utils.engines import advertise as A  # pylint: disable=import-outside-toplevel
    probe = probe or A.wait_reachable
    started = now()
    try:
        first = probe(addresses, timeout_s)
    except (A.AdvertiseError, OSError) as e:
        return {'addresses': dict((a, None) for a in addresses), 'all_answered': False, 'since_move_s': None,
                'error': str(e)}
    done = all(t is not None for t in first.values())
    since = None
    if done and moved_at is not None and first:
        since = round(max(0.0, started + max(first.values()) - moved_at), 3)
    return {'addresses': first, 'all_answered': done, 'since_move_s': since, 'error': None}


def finish(dst, name, result, announce_self=False, addresses=None, verify_timeout_s=10.0, probe=None):
    """The steps after a move, once the VM runs on the destination (nothing when it did not move): announce,
    verify. Adds 'announced' and 'answering' to RESULT; a failure of either is reported there, not raised."""
    if result.get('state') not in MOVED or result.get('check_mode'):
        return result
    if announce_self:
        result['announced'] = announce(dst, name)
    if addresses:
        result['answering'] = verify(addresses, verify_timeout_s, probe=probe,
                                     moved_at=result.get('running_on_destination_at'))
    return result


def move_vm(src, dst, name, method, opts, check_mode=False, clock=time.monotonic, sleep=time.sleep,
            hosts_security=None, announce_self=False, addresses=None, verify_timeout_s=10.0, probe=None,
            on_moved=None, on_ready=None):
    """Move NAME from SRC to DST (METHOD 'live' or 'cold', OPTS the engine's options), then finish it.
    ON_MOVED() is called once the VM runs on the destination, before the announce and the verification (which use
    no migration link: a drain gives the move's slot to the next move then). ON_READY() (live moves) is called once
    the checks, the dirty-rate sample and the plan are done, before anything changes: a drain lets a move prepare
    before a slot is free, and ON_READY waits for it (False: not to start)."""
    from ansible_collections.vmmigration.libvirt.plugins.module_utils.engines.cold import ColdMigration  # pylint: disable=import-outside-toplevel
    from ansible_collections.vmmigration.libvirt.plugins.module_utils.engines.live import LiveMigration  # pylint: disable=import-outside-toplevel
    if method == 'cold':
        result = ColdMigration(src, dst, name, opts, clock=clock, sleep=sleep).run(check_mode=check_mode)
    else:
        result = LiveMigration(src, dst, name, opts, clock=clock, sleep=sleep, hosts_security=hosts_security,
                               on_ready=on_ready).run(check_mode=check_mode)
    if check_mode:
        return result
    try:
        if on_moved is not None and result.get('state') in MOVED:
            on_moved()
        return finish(dst, name, result, announce_self=announce_self and method != 'cold', addresses=addresses,
                      verify_timeout_s=verify_timeout_s, probe=probe)
    except Exception as e:
        # whatever fails after the engine returned, what the engine did stays known: a caller must never take a VM
        # that moved for one that did not (a drain would try it elsewhere)
        if getattr(e, 'result', None) is None:
            e.result = result
        raise

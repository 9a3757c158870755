# -*- coding: utf-8 -*-
# Copyright (c) vmmigration.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The one bounded wait of vmmigration.libvirt (private: may change in any release).

Every loop that waits for something - a guest to stop, a domain to show up, a job to end, a drain's
moves - goes through :func:`wait_until`: it has a deadline (no wait without one), never sleeps past it,
and takes the clock and sleep it uses, so unit tests run it on a fake clock without waiting.
"""

import math
import time


class WaitTimeout(Exception):
    """A wait reached its deadline; LAST is the predicate's last (falsy) answer."""

    def __init__(self, msg, last=None):
        super().__init__(msg)
        self.msg = msg
        self.last = last


def check_timeout(timeout):
    """TIMEOUT as a float, refusing a wait without an end (None, infinite, NaN, negative)."""
    if timeout is None or isinstance(timeout, bool):
        raise ValueError('a wait needs a deadline: timeout is %r' % (timeout,))
    timeout = float(timeout)
    if math.isnan(timeout) or math.isinf(timeout) or timeout < 0:
        raise ValueError('a wait needs a finite, non-negative timeout (got %r)' % (timeout,))
    return timeout


def wait_until(predicate, timeout, interval=0.2, clock=time.monotonic, sleep=time.sleep, what=None):
    """Call PREDICATE until it returns something true, and return that; at most TIMEOUT seconds.

    PREDICATE runs at least once, then every INTERVAL seconds (the last sleep is cut to the deadline, and
    the predicate gets one last call there). At the deadline: raises WaitTimeout naming WHAT when WHAT
    is given, else returns the predicate's last (falsy) answer.
    """
    timeout = check_timeout(timeout)
    if interval <= 0:
        raise ValueError('a wait needs a positive interval (got %r)' % (interval,))
    deadline = clock() + timeout
    while True:
        value = predicate()
        if value:
            return value
        left = deadline - clock()
        if left <= 0:
            if what:
                raise WaitTimeout('%s: not done after %.1f s' % (what, timeout), value)
            return value
        sleep(min(interval, left))


class FakeClock:
    """A clock for tests and simulations: sleep() moves time on instead of waiting."""

    def __init__(self, start=0.0):
        self.now = float(start)
        self.slept = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.now += max(0.0, seconds)

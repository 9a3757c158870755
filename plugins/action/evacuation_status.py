# -*- coding: utf-8 -*-
# Copyright (c) vmmigration.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""evacuation_status with follow=true: runs the module again and again on the drained host and
prints its progress lines on the controller as they change, until the drain ends (one task, no
minutes of silence)."""

import time

from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver.wait import wait_until

display = Display()

MODULE = 'vmmigration.libvirt.evacuation_status'


def follow(run_status, args, host, timeout, job_done=None, stale=None, clock=time.monotonic):
    """Read a drain's status (RUN_STATUS(args): one evacuation_status round on the host, waiting up to
    ARGS' wait_s for news) again and again, printing its progress lines on the controller as they change,
    until the drain ends; returns the last round's result.

    JOB_DONE (optional): called when the status file shows no drain running (absent, finished, dead, or
    the file of an earlier drain: STALE(result) is true): True once the drain's own process has ended - then
    following ends even if the drain never wrote its status (it failed before it began).
    """
    started = clock()
    seen = {'last': None, 'res': {}, 'shown': set()}

    def round_done():
        """One round: the module waits up to wait_s on the host for news; True when following ends."""
        res = seen['res'] = run_status(args)
        if res.get('failed'):
            return True
        earlier = stale is not None and res.get('state') != 'absent' and stale(res)
        lines = [] if earlier else (res.get('lines') or [])
        if lines and lines != seen['last'] and (job_done is None or res.get('state') != 'absent'):
            # a VM's "done" line is shown once; the summary and the running VMs at every change
            fresh = [line for line in lines if not (line.startswith('  done ') and line in seen['shown'])]
            seen['shown'].update(lines)
            display.display('\n'.join('[%s] %s' % (host, line) for line in fresh))
            seen['last'] = lines
        if job_done is not None:
            if res.get('state') == 'running' and not earlier:
                return False
            return job_done()
        if res.get('state') in ('finished', 'dead'):
            return True
        return res.get('state') == 'absent' and \
            clock() - started > float(args.get('absent_timeout_s') or 120)
    # the rounds' pace is the module's own wait (wait_s): no sleep between them
    wait_until(round_done, timeout, 0.01, clock, lambda _s: None)
    return seen['res']


class ActionModule(ActionBase):
    """Follow a drain's progress from the controller."""

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        args = dict(self._task.args)
        if not args.get('follow'):
            result.update(self._execute_module(module_name=MODULE, module_args=args, task_vars=task_vars))
            return result
        if not args.get('wait_s'):
            args['wait_s'] = 10
        host = task_vars.get('inventory_hostname') if task_vars else ''
        result.update(follow(lambda a: self._execute_module(module_name=MODULE, module_args=a, task_vars=task_vars),
                             args, host, float(args.get('follow_timeout_s') or 86400)))
        return result

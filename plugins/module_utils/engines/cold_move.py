# -*- coding: utf-8 -*-
# Copyright (c) vmmigration.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""One cold move's shared context: the two connections, the options, the steps and result it reports, the
volumes it made on the destination and the transient pools it opened - what the cold engine's parts (ColdCopy,
ColdCommit, and ColdMigration that runs them) all read and add to - and the engine's one error type.

This module is private to vmmigration.libvirt: its interface may change in any release.
"""

import time

from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver import typed as driver
from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver.connection import LibvirtClientError
from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver.storage_proof import pool_for_dir


class ColdMigrationError(LibvirtClientError):
    def __init__(self, msg, result=None):
        super().__init__(msg)
        self.result = result or {}


class ColdMove:
    """What one cold move's parts share (built once per move by ColdMigration)."""

    def __init__(self, src, dst, name, opts, clock=time.monotonic, sleep=time.sleep):
        self.src, self.dst, self.name, self.o = src, dst, name, opts
        self.clock, self.sleep = clock, sleep
        self.steps = []
        self.created = []          # (directory, name) of each volume made (or asked for) on the destination
        self.transient = []        # transient pools to destroy at the end
        self.result = {'domain': name, 'changed': False}
        self.t0 = clock()

    def step(self, action, detail):
        self.steps.append({'t': round(self.clock() - self.t0, 3), 'action': action, 'detail': detail})

    def pool(self, client, path, create=True):
        pool, transient = pool_for_dir(client, path, create, build=client is self.dst)
        if transient:
            self.transient.append(pool)
        return pool

    @staticmethod
    def volume(pool, name):
        """The volume NAME of POOL, None when the pool has none (any other failure is raised)."""
        return driver.volume(pool, name)

    def drop_transient(self):
        for pool in self.transient:
            try:
                pool.destroy()
            except LibvirtClientError:
                pass
        self.transient = []

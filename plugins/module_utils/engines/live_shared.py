# -*- coding: utf-8 -*-
# Copyright (c) vmmigration.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What the parts of one live migration share (live.py and its live_*.py parts): the error a move raises,
and the facts its result gives of a host. Kept apart so that the parts import it without importing live.py.

This module is private to vmmigration.libvirt: its interface may change in any release.
"""

from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver.connection import LibvirtClientError


class MigrationError(LibvirtClientError):
    """A migration that did not happen (or failed and was rolled back); RESULT says what was done."""

    def __init__(self, msg, result=None):
        super().__init__(msg)
        self.result = result or {}


def host_facts(client):
    facts = {'uri': client.uri}
    try:
        facts['hostname'] = client.conn.getHostname()
        facts['uuid'] = client.host_uuid()
    except LibvirtClientError:
        pass
    return facts

# -*- coding: utf-8 -*-
# Copyright (c) vmmigration.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""cluster_facts: the module, run as any module is, after an option given by a name it no longer has was refused naming
the new one (plugin_utils/renamed.py)."""

from ansible_collections.vmmigration.libvirt.plugins.plugin_utils.renamed import RenamedOptionsAction


class ActionModule(RenamedOptionsAction):
    """The cluster_facts module."""

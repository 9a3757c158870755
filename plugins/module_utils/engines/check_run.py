# -*- coding: utf-8 -*-
# Copyright (c) vmmigration.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Runs every pre-migration check of domains on a source against one destination. Read-only,
except for the shared-storage markers, which it always removes.

This module is private to vmmigration.libvirt (leading underscore): its interface may change in
any release.
"""

import xml.etree.ElementTree as ET

from ansible_collections.vmmigration.libvirt.plugins.module_utils.decide import checks as C
from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver import typed as driver
from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver.connection import LibvirtClientError
from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver.facts import domain_facts, gather
from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver.storage_proof import probe_disks


def compare_cpu(dst_client, dom_facts, cpu_xml):
    """libvirt's hypervisor CPU comparison on the destination: (error or None, compared?)."""
    if cpu_xml is None or not dom_facts['cpu'].get('model') or dom_facts['cpu'].get('mode') != 'custom':
        return None, False
    try:
        driver.compare_cpu(dst_client.conn, dom_facts['arch'], dom_facts['machine'], dom_facts['domain_type'],
                           cpu_xml)
    except LibvirtClientError as e:
        return e.detail, True
    return None, True


def migratable_cpu_xml(dom):
    """The domain's <cpu> element as the migration would send it (for a running domain, the live CPU)."""
    try:
        root = ET.fromstring(driver.definition(dom, migratable=True))
    except LibvirtClientError:
        root = ET.fromstring(driver.definition(dom))
    cpu = root.find('cpu')
    return ET.tostring(cpu, encoding='unicode') if cpu is not None else None


def check_domains(src_client, dst_client, names, reserve_mib=0, planned_mib=0, allow_storage_copy=True,
                  probe_storage=True):
    """Check each domain of NAMES on the source against the destination.

    Memory of domains checked earlier in the same call counts as planned for the later ones.
    Returns {'source': host facts, 'destination': host facts or None, 'domains': [report, ...]}.
    """
    src = gather(src_client, include_domains=False)['host']
    dst, dst_error = None, None
    try:
        dst = gather(dst_client, include_domains=False)['host']
    except LibvirtClientError as e:
        dst_error = e.msg
    dst_domains = []
    if dst:
        for d in dst_client.call('cannot list domains on the destination', dst_client.conn.listAllDomains, 0):
            dst_domains.append((d.name(), d.UUIDString(), bool(d.isActive())))
    reports = []
    planned = planned_mib
    for name in names:
        dom = src_client.lookup(name)
        there = [d for d in dst_domains if d[0] == name]
        if dom is None:
            if there and there[0][2]:
                reports.append({'name': name, 'verdict': C.PASS, 'recommended': 'already_there', 'active': True,
                                'checks': [C.verdict('already_there', C.PASS,
                                                     '%s is not on the source and runs on the destination' % name)],
                                'storage': {}, 'memory_mib': None})
                continue
            raise LibvirtClientError('no domain named %s on %s' % (name, src_client.uri))
        facts = domain_facts(src_client, dom)
        storage = {}
        if dst:
            err, compared = compare_cpu(dst_client, facts, migratable_cpu_xml(dom))
            if probe_storage and src['uuid'] != dst['uuid']:
                storage = probe_disks(src_client, dst_client, C.relevant_disks(facts['disks']))
            checks, _copy, rec = C.judge(src, facts, dst, dst_domains, err, compared, storage, allow_storage_copy,
                                         reserve_mib, planned)
        else:
            checks = [C.check_reachable(dst_error)]
            copy_needed = any(not d.get('readonly') for d in C.relevant_disks(facts['disks']))
            rec = C.recommend(checks, facts['active'], copy_needed)
        if rec != 'none':
            planned += C.kib_to_mib(facts['memory_kib'])
        reports.append({'name': name, 'uuid': facts['uuid'], 'verdict': C.overall(checks), 'recommended': rec,
                        'active': facts['active'],
                        'checks': checks, 'storage': storage, 'memory_mib': C.kib_to_mib(facts['memory_kib']),
                        # a cold move copies these through volume streams too (TPM state always, NVRAM unless shared)
                        'state_files': bool(facts.get('tpm') or facts.get('nvram'))})
    return {'source': src, 'destination': dst, 'domains': reports}

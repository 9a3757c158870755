# -*- coding: utf-8 -*-
# Copyright (c) vmmigration.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""One hypervisor's part of a cluster plan (the cluster_facts module): its facts read once, then its answers to
the group's distinct questions (cluster.questions), then its markers removed.

This module is private to vmmigration.libvirt (leading underscore): its interface may change in any release.
"""

import os
import random
import uuid

from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver import typed as driver
from ansible_collections.vmmigration.libvirt.plugins.module_utils.decide import transport as SEC
from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver.connection import LibvirtClientError
from ansible_collections.vmmigration.libvirt.plugins.module_utils.decide.cluster import READ_VERSION, cpu_question, unasked
from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver.facts import domain_facts, gather
from ansible_collections.vmmigration.libvirt.plugins.module_utils.engines.check_run import migratable_cpu_xml
from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver.storage_proof import (
    DEFAULT_PORTS,
    MARKER_PREFIX,
    _Dir,
    _volume_path,
    probe_network,
)


def server_key(disk):
    """A network disk's storage server, as one key (protocol://host:port,...)."""
    hosts = []
    for h in disk.get('hosts') or []:
        if h.get('socket') or h.get('transport') == 'unix':
            hosts.append('unix:%s' % h.get('socket'))
        else:
            hosts.append('%s:%s' % (h.get('name'), h.get('port') or DEFAULT_PORTS.get(disk.get('protocol'), 0)))
    return '%s://%s' % (disk.get('protocol'), ','.join(hosts)) if hosts else None


def read(client, rand=random.randint):
    """The host's facts, every domain's, the distinct CPU questions - each answered here too, for this host (so a
    group whose hosts run VMs of the same CPU definitions asks them nothing more) -, and a marker in each disk
    directory."""
    facts = gather(client, include_domains=False)
    host = facts['host']
    host['uri'] = SEC.redact_uri(host.get('uri'))
    domains, cpus, dirs = [], {}, set()
    for dom in sorted(client.call('cannot list domains', client.conn.listAllDomains, 0), key=lambda d: d.name()):
        try:
            vm = domain_facts(client, dom)
        except LibvirtClientError:
            if client.lookup(dom.name()) is None:
                continue        # gone while read
            raise
        vm['cpu_question'] = None
        if vm['cpu'].get('model') and vm['cpu'].get('mode') == 'custom':
            xml = migratable_cpu_xml(dom)
            if xml:
                q = cpu_question(vm['arch'], vm['machine'], vm['domain_type'], xml)
                cpus[q] = {'arch': vm['arch'], 'machine': vm['machine'], 'domain_type': vm['domain_type'], 'xml': xml}
                vm['cpu_question'] = q
        for d in vm['disks']:
            path = d.get('source')
            if d.get('type') == 'volume':
                path = _volume_path(client, d)
            if d.get('type') in ('file', 'volume') and path:
                d['dir'] = os.path.dirname(path)
                dirs.add(d['dir'])
            elif d.get('type') == 'network':
                d['server'] = server_key(d)
        domains.append(vm)
    # (answered before any marker is written: a read that fails leaves none behind)
    cpu_answers = dict((q, cpu_answer(client, cpu)) for q, cpu in sorted(cpus.items()))
    markers = {}
    for path in sorted(dirs):
        markers[path] = write_marker(client, path, rand)
    return {'version': READ_VERSION, 'host': host, 'domains': domains, 'cpu_questions': cpus,
            'cpu_answers': cpu_answers, 'markers': markers}


def write_marker(client, path, rand=random.randint):
    """A marker of a random size in PATH, through libvirt: {'name', 'size'}, or {'error'}."""
    where = _Dir(client, path)
    try:
        err = where.open()
        if err:
            return {'error': 'cannot open %s: %s' % (path, err)}
        name = '%s%s.marker' % (MARKER_PREFIX, uuid.uuid4().hex)
        size = 512 * rand(1, 4095)
        xml = ("<volume><name>%s</name><capacity unit='bytes'>%d</capacity><allocation>0</allocation>"
               "<target><format type='raw'/></target></volume>" % (name, size))
        try:
            where.pool.createXML(xml, 0)
        except LibvirtClientError as e:
            return {'error': 'cannot write a marker in %s: %s' % (path, e.detail)}
        return {'name': name, 'size': size}
    finally:
        where.close()


def cpu_answer(client, cpu):
    """None when this host runs the CPU definition CPU ({arch, machine, domain_type, xml}), else libvirt's reason."""
    try:
        driver.compare_cpu(client.conn, cpu.get('arch'), cpu.get('machine'), cpu.get('domain_type'), cpu['xml'])
        return None
    except LibvirtClientError as e:
        return e.detail or e.msg


def answer(client, questions):
    """This host's answers: per CPU id None (it runs it) or libvirt's reason; per directory the markers seen there
    ({'seen': {name: size}}) or {'error'}; per storage server {} or {'error'}."""
    out = unasked()
    for q, cpu in sorted((questions.get('cpus') or {}).items()):
        out['cpus'][q] = cpu_answer(client, cpu)
    for path in sorted(questions.get('dirs') or []):
        where = _Dir(client, path)
        try:
            err = where.open()
            if err:
                out['dirs'][path] = {'error': err}
                continue
            seen = {}
            for vol in where.pool.listAllVolumes(0):
                if vol.name().startswith(MARKER_PREFIX) and vol.name().endswith('.marker'):
                    seen[vol.name()] = vol.info()[1]
            out['dirs'][path] = {'seen': seen}
        except LibvirtClientError as e:
            out['dirs'][path] = {'error': e.detail or e.msg}
        finally:
            where.close()
    for key, server in sorted((questions.get('servers') or {}).items()):
        state, reason = probe_network(server)
        out['servers'][key] = {} if state == 'shared' else {'error': reason}
    return out


def clean(client, markers):
    """Remove the markers this host wrote (MARKERS {dir: {'name'}} or {dir: name}); returns what it removed and
    what it could not remove, with why ('kept')."""
    removed, kept = [], []
    for path, mark in sorted((markers or {}).items()):
        name = mark.get('name') if isinstance(mark, dict) else mark
        if not name or not str(name).startswith(MARKER_PREFIX):
            continue
        where = _Dir(client, path)
        try:
            err = where.open()
            if err:
                kept.append('%s: %s' % (os.path.join(path, name), err))
                continue
            try:
                where.pool.storageVolLookupByName(name).delete(0)
                removed.append(os.path.join(path, name))
            except LibvirtClientError as e:
                kept.append('%s: %s' % (os.path.join(path, name), e.detail or e.msg))
        finally:
            where.close()
    return {'version': READ_VERSION, 'removed': removed, 'kept': kept}

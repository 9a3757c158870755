# -*- coding: utf-8 -*-
# Copyright (c) vmmigration.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The CPU a group of hosts can all provide, and whether a VM's CPU is within it (private: may change in any release).

libvirt does the CPU model arithmetic (its CPU map knows what each named model means): each host's domain
capabilities give the CPU it offers guests (the host-model CPU: a named model plus features added and removed);
libvirt's baseline of those is the CPU every host of the group can run; libvirt's expansion of a CPU gives the full
feature set behind a model. What is decided here, on those feature sets: a VM fits the baseline when every feature
its CPU requires is in it (same vendor); the hosts that can run it are those whose CPU has every such feature.
"""

import re
import xml.etree.ElementTree as ET

from xml.sax.saxutils import escape as _xml_escape

# libvirt's CPU baseline flags (expand features, migratable) and its compare flag (fail when incompatible), as
# numbers: the CPU logic runs without the binding (unit tests); the driver passes them on unchanged
EXPAND_FEATURES = 1
MIGRATABLE = 2
COMPARE_FAIL_INCOMPATIBLE = 1
MISSING_FEATURES = re.compile(r"does not provide required features: ([A-Za-z0-9_.,\s-]+)")
UNKNOWN_FEATURE = re.compile(r"[Uu]nknown CPU feature ['\"]?([A-Za-z0-9_.-]+)")
MAX_UNKNOWN = 32


class CpuError(Exception):
    """A CPU definition that cannot be read or baselined."""


def _esc(text):
    return _xml_escape(text, {"'": '&apos;', '"': '&quot;'})


def host_cpu(domcaps_xml, name=None):
    """What a host offers guests, from its domain capabilities: {'name', 'arch', 'virttype', 'emulator', 'machine',
    'vendor', 'model', 'required' [features], 'disabled' [features], 'usable_models' [names], 'host_model' (bool:
    whether the host-model mode is supported)}."""
    try:
        root = ET.fromstring(domcaps_xml)
    except ET.ParseError as e:
        raise CpuError('%s: domain capabilities do not parse: %s' % (name or 'host', e))
    out = {'name': name, 'arch': root.findtext('arch'), 'virttype': root.findtext('domain'),
           'emulator': root.findtext('path'), 'machine': root.findtext('machine'), 'vendor': None, 'model': None,
           'required': [], 'disabled': [], 'usable_models': [], 'host_model': False}
    for mode in root.findall('./cpu/mode'):
        if mode.get('name') == 'host-model' and mode.get('supported') == 'yes':
            out['host_model'] = True
            out['model'] = mode.findtext('model')
            out['vendor'] = mode.findtext('vendor')
            for f in mode.findall('feature'):
                (out['disabled'] if f.get('policy') == 'disable' else out['required']).append(f.get('name'))
        elif mode.get('name') == 'custom' and mode.get('supported') == 'yes':
            out['usable_models'] = [m.text for m in mode.findall('model') if m.get('usable') == 'yes']
    if not out['model']:
        raise CpuError('%s: its domain capabilities offer no host-model CPU (libvirt could not read the host CPU '
                       'for this hypervisor type)' % (name or 'host'))
    return out


def definition(arch, vendor, model, features):
    """A CPU as libvirt's baseline and expansion take it (a host CPU definition: no mode, no policies)."""
    parts = ['<cpu>']
    if arch:
        parts.append('<arch>%s</arch>' % _esc(arch))
    parts.append('<model>%s</model>' % _esc(model))
    if vendor:
        parts.append('<vendor>%s</vendor>' % _esc(vendor))
    parts += ["<feature name='%s'/>" % _esc(f) for f in sorted(set(features))]
    parts.append('</cpu>')
    return ''.join(parts)


def parse_cpu(xml_text):
    """{'model', 'vendor', 'required' [...], 'disabled' [...], 'mode', 'match', 'check'} of a <cpu> element."""
    root = ET.fromstring(xml_text) if isinstance(xml_text, str) else xml_text
    req, dis = [], []
    for f in root.findall('feature'):
        (dis if f.get('policy') in ('disable', 'forbid') else req).append(f.get('name'))
    return {'model': root.findtext('model'), 'vendor': root.findtext('vendor'), 'required': req, 'disabled': dis,
            'mode': root.get('mode'), 'match': root.get('match'), 'check': root.get('check')}


def _call_dropping_unknown(call, cpus, flags):
    """CALL(xmls, flags) on CPUS ([(arch, vendor, model, required)]); a feature the baselining libvirt does not know
    (a host newer than it) is dropped from every input and the call made again. Returns (xml, dropped)."""
    dropped = []
    for _attempt in range(MAX_UNKNOWN + 1):
        xmls = [definition(a, v, m, [f for f in req if f not in dropped]) for a, v, m, req in cpus]
        try:
            return call(xmls, flags), dropped
        except Exception as e:  # pylint: disable=broad-except
            # (the caller's driver wraps libvirt's error; its text names the feature)
            m = UNKNOWN_FEATURE.search(str(getattr(e, 'msg', None) or e))
            if not m or m.group(1) in dropped:
                raise CpuError('libvirt could not baseline these CPUs: %s' % (getattr(e, 'msg', None) or e))
            dropped.append(m.group(1))
    raise CpuError('libvirt could not baseline these CPUs: too many unknown features (%s)' % ', '.join(dropped))


def expand(call, arch, vendor, model, required=(), disabled=()):
    """The full set of features behind MODEL plus REQUIRED minus DISABLED (libvirt's expansion of one CPU).
    Returns (features, dropped - features the expanding libvirt does not know)."""
    xml_text, dropped = _call_dropping_unknown(call, [(arch, vendor, model, list(required))], EXPAND_FEATURES)
    got = parse_cpu(xml_text)
    return set(got['required']) - set(disabled), dropped


def baseline(call, hosts, migratable=True):
    """The CPU every host of HOSTS (host_cpu results) can provide: {'model', 'vendor', 'features' (the full set,
    expanded), 'extra' (the features named on top of the model), 'dropped' (features some host has that the
    baselining libvirt does not know: none of the group's baseline), 'xml' (the baseline as libvirt returned it)}.
    Refuses hosts of different vendors (no CPU model runs on both) with what each is."""
    vendors = dict((h['name'], h['vendor']) for h in hosts)
    if len(set(v for v in vendors.values() if v)) > 1:
        raise CpuError('the hosts have CPUs of different vendors (%s): no CPU model runs on all of them - maintain or '
                       'baseline them as separate groups' % ', '.join('%s %s' % (n, v) for n, v in sorted(vendors.items())))
    cpus = [(h['arch'], h['vendor'], h['model'], [f for f in h['required'] if f not in h['disabled']]) for h in hosts]
    flags = MIGRATABLE if migratable else 0
    named_xml, dropped = _call_dropping_unknown(call, cpus, flags)
    full_xml, dropped2 = _call_dropping_unknown(call, cpus, flags | EXPAND_FEATURES)
    named, full = parse_cpu(named_xml), parse_cpu(full_xml)
    return {'model': named['model'], 'vendor': named['vendor'] or hosts[0]['vendor'],
            'features': sorted(set(full['required']) - set(full['disabled'])),
            'extra': sorted(named['required']), 'disabled': sorted(named['disabled']),
            'dropped': sorted(set(dropped) | set(dropped2)), 'xml': named_xml}


def guest_cpu_xml(base):
    """The baseline as a guest CPU definition (what a VM set to it gets)."""
    parts = ["<cpu mode='custom' match='exact' check='partial'>", "<model fallback='forbid'>%s</model>" % _esc(base['model'])]
    if base.get('vendor'):
        parts.append('<vendor>%s</vendor>' % _esc(base['vendor']))
    parts += ["<feature policy='require' name='%s'/>" % _esc(f) for f in base.get('extra') or []]
    parts += ["<feature policy='disable' name='%s'/>" % _esc(f) for f in base.get('disabled') or []]
    parts.append('</cpu>')
    return ''.join(parts)


def runnable_everywhere(base, compares, rounds=8):
    """The baseline adjusted until every host's hypervisor accepts it as a guest CPU.

    COMPARES: {host: compare(guest_cpu_xml)} - libvirt's hypervisor CPU comparison on that host, raising when the
    host cannot run it ("... does not provide required features: a, b"). A feature a host's hypervisor cannot
    provide although its CPU model names it (an emulator without it) is disabled in the baseline, and said in
    'not_provided' {feature: [hosts]}. Returns the adjusted baseline."""
    base = dict(base, extra=list(base.get('extra') or []), disabled=list(base.get('disabled') or []),
                not_provided={})
    for _round in range(rounds):
        missing = {}
        for host, compare in sorted(compares.items()):
            try:
                compare(guest_cpu_xml(base))
            except Exception as e:  # pylint: disable=broad-except
                text = str(getattr(e, 'msg', None) or e)
                m = MISSING_FEATURES.search(text)
                if not m:
                    raise CpuError('%s cannot run the baseline CPU %s: %s' % (host, base['model'], text))
                for f in (x.strip() for x in m.group(1).split(',')):
                    if f:
                        missing.setdefault(f, []).append(host)
        if not missing:
            return base
        for f, hosts in missing.items():
            base['not_provided'][f] = sorted(set(base['not_provided'].get(f, []) + hosts))
            if f in base['extra']:
                base['extra'].remove(f)
            elif f not in base['disabled']:
                base['disabled'].append(f)
        base['features'] = sorted(set(base['features']) - set(missing))
        base['disabled'].sort()
    raise CpuError('the hosts still refuse the baseline CPU after disabling %s' % ', '.join(sorted(base['not_provided'])))


def host_features(call, host):
    """The full feature set of what HOST offers guests (its host-model CPU expanded)."""
    feats, _dropped = expand(call, host['arch'], host['vendor'], host['model'], host['required'], host['disabled'])
    return feats


def domain_type(domain_xmls):
    """The hypervisor type (kvm, qemu) the domains DOMAIN_XMLS run as, when they all share one; else None. Their
    CPUs are judged against what that hypervisor type offers (QEMU's emulator offers other features than KVM)."""
    types = set(ET.fromstring(x).get('type') for x in domain_xmls or ())
    return types.pop() if len(types) == 1 else None


def vm_cpu(domain_xml):
    """The CPU a domain's definition asks for: {'mode' (custom, host-model, host-passthrough, maximum, or None when
    the definition has no <cpu> - the hypervisor's default model), 'model', 'vendor', 'required', 'disabled'}."""
    root = ET.fromstring(domain_xml)
    cpu = root.find('cpu')
    if cpu is None or (cpu.get('mode') in (None, 'custom') and cpu.findtext('model') is None):
        return {'mode': None, 'model': None, 'vendor': None, 'required': [], 'disabled': []}
    out = parse_cpu(cpu)
    out['mode'] = cpu.get('mode') or 'custom'
    return out


def fit(cpu, vm_features, base, hosts_features, where=None):
    """Whether a VM's CPU is within the baseline, and which hosts can run it.

    CPU: vm_cpu() of the definition that runs (the live one for a running VM: libvirt has expanded host-model
    there); VM_FEATURES: its expanded features (None for host-passthrough / maximum - the host's own CPU);
    BASE: baseline(); HOSTS_FEATURES: {host: features}; WHERE: the host it runs on.
    Returns {'fits', 'missing' (features beyond the baseline), 'can_run_on' [hosts], 'stranded' (runs on fewer
    hosts than the group), 'why'}."""
    hosts = sorted(hosts_features)
    if cpu['mode'] in ('host-passthrough', 'maximum'):
        # the guest sees its host's own CPU: only hosts offering at least the same run it
        mine = hosts_features.get(where) or set()
        able = sorted(h for h in hosts if hosts_features[h] >= mine) if where in hosts_features else [where]
        return {'fits': False, 'missing': [], 'can_run_on': able, 'stranded': len(able) < len(hosts),
                'why': '%s: the guest sees the CPU of the host it boots on - it can move only to hosts offering at '
                       'least as much (%s); set the baseline as its CPU to run anywhere in the group (next cold boot)'
                       % (cpu['mode'], ', '.join(able) or 'none')}
    if cpu['mode'] is None:
        return {'fits': True, 'missing': [], 'can_run_on': hosts, 'stranded': False,
                'why': "no CPU model given: the hypervisor's default model, which every host runs"}
    if cpu.get('vendor') and base.get('vendor') and cpu['vendor'] != base['vendor']:
        return {'fits': False, 'missing': [], 'can_run_on': [], 'stranded': True,
                'why': 'a %s CPU on %s hosts' % (cpu['vendor'], base['vendor'])}
    need = set(vm_features or ())
    missing = sorted(need - set(base['features']))
    able = sorted(h for h in hosts if need <= hosts_features[h])
    if not missing:
        why = 'within the baseline (%s): every host of the group can run it' % base['model']
    else:
        why = 'needs %s beyond the baseline (%s): only %s can run it' % (
            ', '.join(missing), base['model'], ', '.join(able) or 'no host of the group')
    return {'fits': not missing, 'missing': missing, 'can_run_on': able, 'stranded': len(able) < len(hosts),
            'why': why}


def with_baseline_cpu(domain_xml, base):
    """DOMAIN_XML with its <cpu> set to the baseline (custom model, the baseline's vendor and features; the
    topology, NUMA cells and cache settings kept). Returns (new xml, old cpu xml, new cpu xml)."""
    root = ET.fromstring(domain_xml)
    cpu = root.find('cpu')
    old = ET.tostring(cpu, encoding='unicode').strip() if cpu is not None else ''
    if cpu is None:
        cpu = ET.Element('cpu')
        vcpu = root.find('vcpu')
        root.insert(list(root).index(vcpu) + 1 if vcpu is not None else len(root), cpu)
    kept = [c for c in list(cpu) if c.tag in ('topology', 'numa', 'cache', 'maxphysaddr')]
    for c in list(cpu):
        cpu.remove(c)
    cpu.attrib.clear()
    cpu.text = None
    cpu.set('mode', 'custom')
    cpu.set('match', 'exact')
    cpu.set('check', 'partial')
    model = ET.SubElement(cpu, 'model')
    model.set('fallback', 'forbid')
    model.text = base['model']
    if base.get('vendor'):
        ET.SubElement(cpu, 'vendor').text = base['vendor']
    for c in kept:
        cpu.append(c)
    for name in base.get('extra') or []:
        f = ET.SubElement(cpu, 'feature')
        f.set('policy', 'require')
        f.set('name', name)
    for name in base.get('disabled') or []:
        f = ET.SubElement(cpu, 'feature')
        f.set('policy', 'disable')
        f.set('name', name)
    new = ET.tostring(cpu, encoding='unicode').strip()
    return ET.tostring(root, encoding='unicode'), old, new


def same_cpu(cpu, base):
    """Whether a definition's CPU already is the baseline (custom mode, model, vendor, features)."""
    return (cpu.get('mode') == 'custom' and cpu.get('model') == base['model']
            and (cpu.get('vendor') or None) == (base.get('vendor') or None)
            and sorted(cpu.get('required') or []) == sorted(base.get('extra') or [])
            and sorted(cpu.get('disabled') or []) == sorted(base.get('disabled') or []))

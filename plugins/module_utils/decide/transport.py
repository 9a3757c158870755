# -*- coding: utf-8 -*-
# Copyright (c) vmmigration.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Transport security: is a host set up for TLS (libvirtd and QEMU's migration), what do its
certificates say, and will a move cross the network in the clear.

A guest's memory is sent by QEMU's migration stream; libvirt encrypts it with TLS (the driver's 'tls' migration flag)
when both QEMUs have x509 material in the directory qemu.conf names. Disk copies of a cold move travel
over the libvirt connections instead, so for them the connection's transport decides.

Pure functions and file reads, no libvirt calls. The X.509 reader is a minimal DER walker (validity and
names only), so hosts need no Python crypto library.

This module is private to vmmigration.libvirt (leading underscore): its interface may change in
any release.
"""

import base64
import calendar
import errno
import os
import re
import socket
import time

from urllib.parse import urlparse

from ansible.module_utils.parsing.convert_bool import boolean

from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver.connection import redact_uri

LIBVIRTD_CONF = '/etc/libvirt/libvirtd.conf'
# modular daemons (virtqemud for QEMU, virtproxyd for remote connections - the RHEL 9 and Fedora default): the TLS
# listener's settings are virtproxyd's; told apart by virtqemud's socket (its socket unit listens while enabled)
VIRTPROXYD_CONF = '/etc/libvirt/virtproxyd.conf'
MODULAR_SIGNS = ('/run/libvirt/virtqemud-sock',)
QEMU_CONF = '/etc/libvirt/qemu.conf'
QEMU_DEFAULT_CERT_DIR = '/etc/pki/qemu'
MIGRATION_FILES = ('ca-cert.pem', 'server-cert.pem', 'server-key.pem', 'client-cert.pem', 'client-key.pem')
LIBVIRTD_DEFAULTS = {'cert_file': '/etc/pki/libvirt/servercert.pem',
                     'key_file': '/etc/pki/libvirt/private/serverkey.pem',
                     'ca_file': '/etc/pki/CA/cacert.pem'}
LIBVIRT_TLS_PORT = 16514
WARN_DAYS = 30
MODES = ('auto', 'required', 'disabled')
# the transport security options (doc_fragments/transport.py) of migrate, cold_migrate, migration_check
TRANSPORT_ARGSPEC = dict(
    tls=dict(type='str', choices=list(MODES), default='auto'),
    allow_plaintext=dict(type='bool', default=False),
)
FIX_TLS = ("set up TLS on both hosts: QEMU's migration certificates (ca-cert.pem, server-cert.pem, server-key.pem, "
           "client-cert.pem, client-key.pem) in the directory qemu.conf's migrate_tls_x509_cert_dir names (see the "
           "collection's security guide)")
FIX = FIX_TLS + ", or, only on a trusted dedicated migration network, set allow_plaintext: true"


# --- libvirt configuration files -------------------------------------------------------------------

def _value(text):
    text = text.strip()
    if text.startswith('['):
        return [_value(v) for v in re.findall(r'"[^"]*"|[^,\[\]\s]+', text)]
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return text[1:-1]
    try:
        return int(text)
    except ValueError:
        return text


def parse_conf(text):
    """libvirt's configuration syntax (key = "string" | number | [list]) as a dict; comments dropped."""
    out, pending = {}, None
    for raw in text.splitlines():
        line = raw.split('#', 1)[0] if '"' not in raw else re.sub(r'#[^"]*$', '', raw)
        line = line.strip()
        if not line:
            continue
        if pending is not None:
            pending = (pending[0], pending[1] + ' ' + line)
            if ']' in line:
                out[pending[0]] = _value(pending[1])
                pending = None
            continue
        m = re.match(r'^([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$', line)
        if not m:
            continue
        key, val = m.group(1), m.group(2)
        if val.startswith('[') and ']' not in val:
            pending = (key, val)
            continue
        out[key] = _value(val)
    return out


def read_conf(path):
    """A libvirt configuration file as a dict: {} when it does not exist, None when it cannot be read
    (then what it says is unknown, not absent)."""
    try:
        with open(path) as f:
            return parse_conf(f.read())
    except (IOError, OSError) as e:
        return {} if e.errno == errno.ENOENT else None
    except ValueError:      # not text
        return None


# --- X.509, the parts we need -----------------------------------------------------------------------

OID_CN = b'\x55\x04\x03'
OID_SAN = b'\x55\x1d\x11'


def _tlv(data, pos):
    """(tag, value start, value end) of the DER element at POS."""
    tag = data[pos]
    length = data[pos + 1]
    pos += 2
    if length & 0x80:
        n = length & 0x7f
        if not 0 < n <= 4:
            raise ValueError('bad DER length')
        length = int.from_bytes(data[pos:pos + n], 'big')
        pos += n
    if pos + length > len(data):
        raise ValueError('DER element runs past the end')
    return tag, pos, pos + length


def _children(data, start, end):
    pos = start
    while pos < end:
        tag, s, e = _tlv(data, pos)
        yield tag, s, e
        pos = e


def _time(tag, raw):
    text = raw.decode('ascii').rstrip('Z')
    if tag == 0x17:   # UTCTime YYMMDDHHMMSS
        year = int(text[:2])
        text = ('19' if year >= 50 else '20') + text
    return calendar.timegm(time.strptime(text[:14], '%Y%m%d%H%M%S'))


def pem_blocks(text):
    """The DER bytes of every certificate in a PEM text."""
    return [base64.b64decode(''.join(m.split()))
            for m in re.findall(r'-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----', text, re.S)]


def cert_info(der):
    """{'subject_cn', 'issuer_cn', 'names': DNS names and IP addresses, 'not_before', 'not_after' (epoch)}."""
    data = bytearray(der)
    _t, s, e = _tlv(data, 0)                      # Certificate
    _t, s, e = _tlv(data, s)                      # TBSCertificate
    parts = list(_children(data, s, e))
    if parts and parts[0][0] == 0xa0:             # [0] version
        parts = parts[1:]
    issuer, validity, subject = parts[2], parts[3], parts[4]
    times = list(_children(data, validity[1], validity[2]))
    info = {'subject_cn': _cn(data, subject), 'issuer_cn': _cn(data, issuer),
            'not_before': _time(times[0][0], bytes(data[times[0][1]:times[0][2]])),
            'not_after': _time(times[1][0], bytes(data[times[1][1]:times[1][2]])), 'names': []}
    for tag, ps, pe in parts[5:]:
        if tag != 0xa3:                           # [3] extensions
            continue
        _t, xs, xe = _tlv(data, ps)
        for _tag, es, ee in _children(data, xs, xe):
            fields = list(_children(data, es, ee))
            if bytes(data[fields[0][1]:fields[0][2]]) != OID_SAN:
                continue
            octets = fields[-1]
            _t, ns, ne = _tlv(data, octets[1])
            for ntag, vs, ve in _children(data, ns, ne):
                raw = bytes(data[vs:ve])
                if ntag == 0x82:
                    info['names'].append(raw.decode('ascii'))
                elif ntag == 0x87 and len(raw) in (4, 16):
                    info['names'].append(socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, raw))
    return info


def _cn(data, name):
    for _t, rs, re_ in _children(data, name[1], name[2]):          # SET
        for _t2, as_, ae in _children(data, rs, re_):                # SEQUENCE {oid, value}
            oid, val = list(_children(data, as_, ae))[:2]
            if bytes(data[oid[1]:oid[2]]) == OID_CN:
                return bytes(data[val[1]:val[2]]).decode('utf-8', 'replace')
    return None


def read_cert(path, now):
    """What a certificate file says, with days left; {'error': ...} when it cannot be read."""
    try:
        with open(path) as f:
            blocks = pem_blocks(f.read())
        if not blocks:
            return {'path': path, 'error': 'no PEM certificate in the file'}
        info = cert_info(blocks[0])
    except (IOError, OSError) as e:
        return {'path': path, 'error': str(e)}
    except (ValueError, IndexError, TypeError) as e:
        return {'path': path, 'error': 'not a certificate we can read: %s' % e}
    info['path'] = path
    info['days_left'] = round((info['not_after'] - now) / 86400.0, 1)
    info['expires'] = time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(info['not_after']))
    return info


# --- a host's state ---------------------------------------------------------------------------------

def listening_ports(paths=('/proc/net/tcp', '/proc/net/tcp6')):
    """TCP ports something listens on in this network namespace (from /proc)."""
    ports = set()
    for path in paths:
        try:
            with open(path) as f:
                next(f, None)
                for line in f:
                    fields = line.split()
                    if len(fields) > 3 and fields[3] == '0A':
                        ports.add(int(fields[1].rsplit(':', 1)[1], 16))
        except (IOError, OSError):
            continue
    return ports


def daemons(signs=MODULAR_SIGNS):
    """How libvirt runs here: ('modular', virtproxyd.conf) or ('monolithic', libvirtd.conf) - the tls role's rule."""
    if any(os.path.exists(s) for s in signs):
        return 'modular', VIRTPROXYD_CONF
    return 'monolithic', LIBVIRTD_CONF


def host_security(libvirtd_conf=None, qemu_conf=QEMU_CONF, now=None, warn_days=WARN_DAYS, ports=None,
                  peer_addresses=()):
    """Whether this host is set up for TLS: QEMU's migration (the guest's memory) and libvirtd (the
    connection a cold move copies disks over), with what its certificates say (and whether its server
    certificates name PEER_ADDRESSES, the addresses other hosts reach it by)."""
    now = time.time() if now is None else now
    kind = None
    if libvirtd_conf is None:
        kind, libvirtd_conf = daemons()
    qconf, lconf = read_conf(qemu_conf), read_conf(libvirtd_conf)
    unreadable = [p for p, c in ((qemu_conf, qconf), (libvirtd_conf, lconf)) if c is None]
    qconf, lconf = qconf or {}, lconf or {}
    cert_dir = qconf.get('migrate_tls_x509_cert_dir') or qconf.get('default_tls_x509_cert_dir') or QEMU_DEFAULT_CERT_DIR
    verify = qconf.get('migrate_tls_x509_verify', qconf.get('default_tls_x509_verify', 1))
    missing = [f for f in MIGRATION_FILES if not os.path.isfile(os.path.join(cert_dir, f))]
    migration = {'ready': not missing, 'cert_dir': cert_dir, 'missing': missing, 'verify_peer': bool(verify),
                 'force': bool(qconf.get('migrate_tls_force', 0)),
                 'certificates': dict((f[:-len('-cert.pem')], read_cert(os.path.join(cert_dir, f), now))
                                      for f in ('ca-cert.pem', 'server-cert.pem', 'client-cert.pem')
                                      if f not in missing)}
    files = dict((k, lconf.get(k) or v) for k, v in LIBVIRTD_DEFAULTS.items())
    ports = listening_ports() if ports is None else ports
    lmissing = [v for v in files.values() if not os.path.isfile(v)]
    libvirtd = {'listening': LIBVIRT_TLS_PORT in ports, 'missing': lmissing,
                'ready': LIBVIRT_TLS_PORT in ports and not lmissing,
                'certificates': dict(({'cert_file': 'server', 'ca_file': 'ca'}[k], read_cert(v, now)) for k, v in files.items()
                                     if k != 'key_file' and v not in lmissing)}
    if qemu_conf in unreadable:
        # the directory qemu.conf names is unknown: ready or not cannot be told here (libvirt checks it)
        migration['ready'] = None
    if libvirtd_conf in unreadable:
        libvirtd['ready'] = None
    libvirtd['conf'] = libvirtd_conf
    if kind:
        libvirtd['daemons'] = kind
    state = {'migration_tls': migration, 'libvirt_tls': libvirtd, 'unreadable': unreadable,
             'migration_host': qconf.get('migration_host')}
    state['problems'], state['warnings'] = certificate_findings(state, addresses=peer_addresses, now=now,
                                                                warn_days=warn_days)
    state['warnings'] += ['cannot read %s (run with become): whether this host is set up for TLS is not known here'
                          % p for p in unreadable]
    return state


def certificate_findings(state, addresses=(), now=None, warn_days=WARN_DAYS, label=''):
    """(problems, warnings) about a host's certificates: expired or unreadable is a problem (the handshake
    will fail), expiring within WARN_DAYS or not naming an address a peer will use is a warning."""
    now = time.time() if now is None else now
    problems, warnings = [], []
    for part, title in (('migration_tls', "QEMU's migration"), ('libvirt_tls', 'libvirtd')):
        certificates = _section(state, part).get('certificates')
        for role, info in sorted(certificates.items() if isinstance(certificates, dict) else []):
            if not isinstance(info, dict):
                continue
            where = ('%s %s %s certificate %s' % (label, title, role, info.get('path'))).strip()
            if info.get('error'):
                problems.append('%s: %s' % (where, info['error']))
                continue
            left = (info['not_after'] - now) / 86400.0
            if left <= 0:
                problems.append('%s expired on %s' % (where, info['expires']))
            elif left < warn_days:
                warnings.append('%s expires in %.0f days (%s)' % (where, left, info['expires']))
            if info.get('not_before', 0) > now:
                problems.append('%s is not valid before %s' % (where, time.strftime(
                    '%Y-%m-%dT%H:%M:%SZ', time.gmtime(info['not_before']))))
            if role == 'server':
                for address in addresses:
                    if address and not names_address(info, address):
                        warnings.append('%s does not name %s, the address its peers use (it names %s)'
                                        % (where, address, ', '.join(info['names'] or [info['subject_cn'] or '-'])))
    return problems, warnings


def names_address(info, address):
    """Whether a certificate's names (subjectAltName, or the CN when it has none) cover ADDRESS."""
    address = address.strip('[]').lower()
    names = [n.lower() for n in info.get('names') or []] or [(info.get('subject_cn') or '').lower()]
    for name in names:
        if name == address:
            return True
        if name.startswith('*.') and '.' in address and address.split('.', 1)[1] == name[2:]:
            return True
    return False


# --- one move's transport ---------------------------------------------------------------------------

def normalize_mode(value):
    """tls as given: auto, required or disabled (None is auto). Words only - a YAML boolean is refused."""
    if value is None:
        return 'auto'
    if isinstance(value, str) and value in MODES:
        return value
    raise ValueError('tls must be one of auto, required, disabled - words, not YAML booleans (got %r)' % (value,))


def connection_transport(uri):
    """How a libvirt URI's connection travels: local, tls, ssh or tcp (in the clear)."""
    parsed = urlparse(uri or '')
    scheme = parsed.scheme.lower()
    transport = scheme.split('+', 1)[1] if '+' in scheme else ''
    if transport in ('unix', 'ext') or (not transport and not parsed.hostname):
        return 'local'
    if transport in ('ssh', 'libssh', 'libssh2'):
        return 'ssh'
    if transport in ('', 'tls'):
        return 'tls'
    return 'tcp'


def _section(state, part):
    """STATE[PART] when it is a mapping (states come from the hosts, or from the user), else {}."""
    info = state.get(part) if isinstance(state, dict) else None
    return info if isinstance(info, dict) else {}


def _ready(state, part):
    """True / False when the host's state says so, None when it is not known."""
    ready = _section(state, part).get('ready')
    return None if ready is None else bool(ready)


def _why_not(state, part, label):
    info = _section(state, part)
    if part == 'migration_tls':
        return "%s is not set up for TLS migration (missing %s in %s)" % (
            label, ', '.join(info.get('missing') or ['?']), info.get('cert_dir'))
    return '%s' % label


def plan_transport(mode, allow_plaintext, source=None, dest=None, copies_over=None, src_label='the source',
                   dest_label='the destination'):
    """How one move travels, decided before anything changes.

    MODE is auto, required or off; SOURCE and DEST are host_security() states (None: not known here).
    COPIES_OVER is None for a live move (QEMU's stream carries the memory) or the list of libvirt URIs
    a cold move copies disks over. Returns {'tls': ask libvirt for TLS, 'encrypted': bool or None
    (unknown until libvirt checks), 'transport': 'tls' | 'ssh' | 'plaintext' | 'none', 'why': text,
    'refused': None or the message saying what to configure}."""
    mode = normalize_mode(mode)
    allow_plaintext = boolean(allow_plaintext, strict=False) if allow_plaintext is not None else False
    if copies_over is not None:
        return _plan_copies(mode, allow_plaintext, copies_over)
    src_ok, dst_ok = _ready(source, 'migration_tls'), _ready(dest, 'migration_tls')
    not_ready = [_why_not(s, 'migration_tls', label) for s, ok, label in
                 ((source, src_ok, src_label), (dest, dst_ok, dest_label)) if ok is False]
    out = {'tls': False, 'encrypted': False, 'transport': 'plaintext', 'refused': None, 'why': ''}
    if mode == 'disabled':
        out['why'] = 'tls=disabled'
        if not allow_plaintext:
            out['refused'] = ("tls=disabled would send the guest's memory across the network in the clear; set "
                              "allow_plaintext: true to confirm this is a trusted dedicated migration network, or "
                              "use tls: auto")
        return out
    if mode == 'required' and not_ready:
        out.update(tls=True, encrypted=None, transport='tls', why='tls=required',
                   refused='tls=required but %s: %s' % ('; '.join(not_ready), FIX_TLS))
        return out
    if not_ready:
        out['why'] = '; '.join(not_ready)
        if not allow_plaintext:
            out['refused'] = ("the guest's memory would cross the network in the clear: %s. Fix: %s"
                              % ('; '.join(not_ready), FIX))
        else:
            out['why'] += '; plaintext allowed by allow_plaintext'
        return out
    known = src_ok and dst_ok
    out.update(tls=True, encrypted=True if known else None, transport='tls',
               why='both hosts are set up for TLS migration' if known else
               'TLS asked for; libvirt checks both hosts\' certificates when the move starts')
    return out


def _plan_copies(mode, allow_plaintext, uris):
    clear = [redact_uri(u) for u in uris if connection_transport(u) == 'tcp']
    if not uris:
        return {'tls': False, 'encrypted': None, 'transport': 'none', 'refused': None,
                'why': 'no data crosses the network (shared storage)'}
    if not clear:
        kinds = sorted(set(connection_transport(u) for u in uris) - set(['local']))
        return {'tls': False, 'encrypted': True, 'transport': '+'.join(kinds) or 'local', 'refused': None,
                'why': 'disk copies travel over %s libvirt connections' % ('/'.join(kinds) or 'local')}
    out = {'tls': False, 'encrypted': False, 'transport': 'plaintext', 'refused': None,
           'why': 'disk copies would travel in the clear over %s' % ', '.join(clear)}
    fix = ('use a qemu+tls:// (or qemu+ssh://) URI for the destination (host variable libvirt_migration_uri; '
           'libvirtd then needs listen_tls and its certificates: see the collection\'s security guide)')
    if mode == 'required':
        out['refused'] = 'tls=required but %s: %s' % (out['why'], fix)
    elif not allow_plaintext:
        out['refused'] = "%s. Fix: %s, or, only on a trusted dedicated network, set allow_plaintext: true" % (out['why'], fix)
    else:
        out['why'] += '; plaintext allowed by allow_plaintext'
    return out

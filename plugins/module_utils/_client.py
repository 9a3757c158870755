# -*- coding: utf-8 -*-
# Copyright (c) vmmigration.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The one libvirt connection wrapper of vmmigration.libvirt.

This module is private to the collection (leading underscore): its interface may change in any
release. It owns opening connections by URI, the shared connection options, the single error type
(:class:`LibvirtClientError`) every libvirt failure is turned into, and retries for errors that are
known to be transient (never for invalid-operation errors).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # pylint: disable=invalid-name

import contextlib
import random
import socket
import threading
import time
import traceback
import xml.etree.ElementTree as ET

from ansible.module_utils.basic import missing_required_lib
from ansible.module_utils.six.moves.urllib.parse import urlparse

from ansible_collections.vmmigration.libvirt.plugins.module_utils._security import redact_uri

LIBVIRT_IMPORT_ERROR = None
try:
    import libvirt
except ImportError:
    libvirt = None
    LIBVIRT_IMPORT_ERROR = traceback.format_exc()

INSTALL_HINT = (
    "the libvirt Python binding (libvirt-python) is not importable by the Python that runs this module "
    "on the host: install it there (Debian/Ubuntu: apt-get install python3-libvirt; or pip install "
    "libvirt-python with libvirt-dev and pkg-config present) or point ansible_python_interpreter at a "
    "Python that has it"
)

# Options every module that talks to libvirt accepts; documented once in the
# vmmigration.libvirt.connection doc fragment.
CONNECTION_ARGSPEC = dict(
    uri=dict(type='str', default='qemu:///system'),
    connect_retries=dict(type='int', default=2),
    connect_retry_delay=dict(type='float', default=0.5),
)

# libvirt error codes that say "try again": the daemon or the network hiccuped.
_TRANSIENT_CODES = (
    'VIR_ERR_SYSTEM_ERROR',
    'VIR_ERR_RPC',
    'VIR_ERR_NO_CONNECT',
    'VIR_ERR_AUTH_UNAVAILABLE',
    'VIR_ERR_AGENT_UNRESPONSIVE',
    'VIR_ERR_OPERATION_TIMEOUT',
)


_EVENTS = {'started': False}


def start_event_loop():
    """libvirt's default event loop in a daemon thread: job-completed events, and keepalive, which ends
    a call to a peer that stopped answering (about interval x (count + 1) seconds) instead of waiting
    for ever. Must run before the first connection is opened; safe to call more than once."""
    if _EVENTS['started'] or libvirt is None:
        return
    libvirt.virEventRegisterDefaultImpl()

    def loop():
        while True:
            libvirt.virEventRunDefaultImpl()
    t = threading.Thread(target=loop, name='libvirt-events')
    t.daemon = True
    t.start()
    _EVENTS['started'] = True


class LibvirtClientError(Exception):
    """Every libvirt failure of this collection, with a readable message (what was being done: what
    libvirt said), libvirt's own text (DETAIL) and its error code (compare it with error_code('VIR_ERR_...'))."""

    def __init__(self, msg, code=None, transient=False, detail=None):
        super(LibvirtClientError, self).__init__(msg)
        self.msg = msg
        self.code = code
        self.transient = transient
        self.detail = detail if detail is not None else msg


def error_code(name):
    """libvirt's numeric code for the error NAME (e.g. 'VIR_ERR_NO_DOMAIN'); None without the binding."""
    return getattr(libvirt, name, None) if libvirt is not None else None


def _silence_libvirt_stderr():
    if libvirt is not None:
        libvirt.registerErrorHandler(lambda ctx, err: None, None)


def is_transient(code):
    """True for libvirt error codes worth a retry (connection and timeout trouble)."""
    if libvirt is None or code is None:
        return False
    return code in [getattr(libvirt, name) for name in _TRANSIENT_CODES if hasattr(libvirt, name)]


def backoff_delays(retries, delay, jitter=0.25, rand=random.random):
    """Delays before each retry: exponential from DELAY, each stretched by up to JITTER."""
    return [delay * (2 ** i) * (1 + jitter * rand()) for i in range(max(0, retries))]


def wrap_error(exc, what):
    """Turn a libvirt.libvirtError (or an OSError of the binding, or a LibvirtClientError raised below)
    into a LibvirtClientError that says what was being done."""
    if isinstance(exc, LibvirtClientError):
        return LibvirtClientError('%s: %s' % (what, exc.detail), code=exc.code, transient=exc.transient,
                                  detail=exc.detail)
    code = exc.get_error_code() if hasattr(exc, 'get_error_code') else None
    text = exc.get_error_message() if hasattr(exc, 'get_error_message') else None
    text = text or str(exc) or type(exc).__name__
    return LibvirtClientError('%s: %s' % (what, text), code=code, transient=is_transient(code), detail=text)


def _libvirt_errors():
    """What a call into the binding can raise besides our own error."""
    return (libvirt.libvirtError, OSError) if libvirt is not None else (OSError,)


# The libvirt object types the driver hands out wrapped (see Driven).
_OBJECT_TYPES = ('virConnect', 'virDomain', 'virStoragePool', 'virStorageVol', 'virStream', 'virNetwork',
                 'virDomainSnapshot', 'virDomainCheckpoint', 'virSecret', 'virNodeDevice', 'virInterface',
                 'virNWFilter')


def _object_types():
    if libvirt is None:
        return ()
    return tuple(getattr(libvirt, n) for n in _OBJECT_TYPES if isinstance(getattr(libvirt, n, None), type))


def _wrap(value, label):
    types = _object_types()
    if types and isinstance(value, types):
        return Driven(value, label)
    if isinstance(value, list) and value and types and all(isinstance(v, types) for v in value):
        return [Driven(v, label) for v in value]
    return value


def unwrap(value):
    """The binding's own object behind VALUE (for APIs of the binding that take one: events, QEMU)."""
    if isinstance(value, Driven):
        return value.raw
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    if isinstance(value, tuple):
        return tuple(unwrap(v) for v in value)
    return value


class Driven:
    """A libvirt object - connection, domain, pool, volume, stream - seen through the driver: every
    method call that fails raises LibvirtClientError saying which call, on what, failed (never the
    binding's libvirtError), and every libvirt object a call returns comes back driven too. This is the
    one boundary between the collection and the binding: nothing outside this module catches libvirtError.
    """

    __slots__ = ('raw', '_where')

    def __init__(self, raw, where=None):
        self.raw = raw
        self._where = where     # the connection's (redacted) URI, for messages

    def _label(self):
        if isinstance(self.raw, libvirt.virConnect):
            return 'libvirt at %s' % self._where
        base = next((c for c in type(self.raw).__mro__ if c.__module__ == 'libvirt'), type(self.raw))
        kind = base.__name__[3:].lower() if base.__name__.startswith('vir') else base.__name__.lower()
        try:
            name = self.raw.name() if hasattr(self.raw, 'name') else None
        except Exception:  # pylint: disable=broad-except
            name = None
        label = '%s %s' % (kind, name) if name else kind
        return '%s on %s' % (label, self._where) if self._where else label

    def __getattr__(self, name):
        attr = getattr(self.raw, name)
        if not callable(attr):
            return attr
        where = self._where

        def call(*args, **kwargs):
            try:
                result = attr(*unwrap(args), **dict((k, unwrap(v)) for k, v in kwargs.items()))
            except _libvirt_errors() as e:
                raise wrap_error(e, '%s failed (%s)' % (name, self._label()))
            return _wrap(result, where)
        call.__name__ = name
        return call

    def __repr__(self):
        return '<driven %s>' % type(self.raw).__name__


class LibvirtClient:
    """One connection to one libvirt URI, opened lazily once and reused by every call."""

    def __init__(self, uri='qemu:///system', retries=2, retry_delay=0.5, sleep=time.sleep, keepalive=(5, 3)):
        if libvirt is None:
            raise LibvirtClientError(INSTALL_HINT)
        if not uri or not isinstance(uri, str) or '://' not in uri and uri not in ('test:///default',):
            raise LibvirtClientError("malformed libvirt URI %r: expected e.g. qemu:///system or "
                                     "qemu+tcp://host/system" % (redact_uri(uri) if isinstance(uri, str) else uri,))
        if retries < 0 or retry_delay < 0:
            raise LibvirtClientError('connect_retries and connect_retry_delay must not be negative')
        self._uri = uri                 # what libvirt opens
        self.uri = redact_uri(uri)      # what messages and results show: no password
        self.retries = retries
        self.retry_delay = retry_delay
        self._sleep = sleep
        self.keepalive = keepalive
        self._conn = None
        _silence_libvirt_stderr()

    @property
    def conn(self):
        """The connection, driven: its calls and the objects they return raise LibvirtClientError."""
        if self._conn is None:
            self._conn = Driven(self._open(), self.uri)
        return self._conn

    def _open(self):
        last = None
        delays = backoff_delays(self.retries, self.retry_delay)
        for attempt in range(len(delays) + 1):
            try:
                conn = libvirt.open(self._uri)
                if self.keepalive:
                    try:
                        # needs a running libvirt event loop (start_event_loop); without
                        # one libvirt refuses and calls simply have no keepalive
                        conn.setKeepAlive(self.keepalive[0], self.keepalive[1])
                    except _libvirt_errors():
                        pass
                return conn
            except _libvirt_errors() as e:
                last = wrap_error(e, 'cannot connect to libvirt at %s' % self.uri)
                if not last.transient or attempt == len(delays):
                    break
                self._sleep(delays[attempt])
        raise last

    def call(self, what, fn, *args, **kwargs):
        """Run one libvirt call; its failure becomes a LibvirtClientError saying WHAT failed."""
        try:
            return fn(*args, **kwargs)
        except (LibvirtClientError,) + _libvirt_errors() as e:
            raise wrap_error(e, what)

    def reset(self):
        """Forget a connection that failed (a dropped peer): the next call opens a new one."""
        self.close()

    def close(self):
        if self._conn is not None:
            try:
                self._conn.raw.close()
            except _libvirt_errors():
                pass
            self._conn = None

    # Small helpers shared by the modules -------------------------------------------------
    def capabilities(self):
        return ET.fromstring(self.call('cannot read capabilities of %s' % self.uri, self.conn.getCapabilities))

    def host_uuid(self):
        node = self.capabilities().find('./host/uuid')
        return node.text if node is not None else None

    def lookup(self, name):
        """The domain called NAME, or None when this host has no such domain."""
        return self._find(self.conn.lookupByName, name)

    def lookup_uuid(self, uuid):
        """The domain with UUID, or None when this host has no such domain."""
        return self._find(self.conn.lookupByUUIDString, uuid)

    def _find(self, fn, key):
        try:
            return fn(key)
        except LibvirtClientError as e:
            if e.code == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise wrap_error(e, 'cannot look up domain %s on %s' % (key, self.uri))


# Seconds a host is given to answer again after a failure, before where a guest runs is read back from it.
READBACK_S = 30.0
# What every "where the guest runs cannot be confirmed" message tells the operator.
UNKNOWN_SAID = 'do not start it on either host'

_STATES = {1: 'running', 2: 'blocked', 3: 'paused', 4: 'shutting_down', 5: 'shutoff', 6: 'crashed',
           7: 'pmsuspended'}


def domain_state(dom):
    """running, paused, shutoff, ...; 'gone' when the host no longer has the domain, 'unknown' when the
    host cannot be asked (a lost connection)."""
    try:
        state = dom.state()[0]
    except LibvirtClientError as e:
        return 'gone' if e.code == error_code('VIR_ERR_NO_DOMAIN') else 'unknown'
    return _STATES.get(state, str(state))


LIBVIRT_PORTS = {'tcp': 16509, 'tls': 16514, 'ssh': 22, 'libssh': 22, 'libssh2': 22}


def libvirtd_address(uri):
    """(host, port) of the libvirtd a remote URI reaches; None for a local URI or an unknown transport."""
    parsed = urlparse(uri or '')
    if not parsed.hostname:
        return None
    port = parsed.port or LIBVIRT_PORTS.get(parsed.scheme.partition('+')[2])
    return (parsed.hostname, port) if port else None


def reachable(address, timeout=3.0):
    """Whether a TCP connection to ADDRESS opens within TIMEOUT seconds. Asked before a new libvirt connection
    to a host that may be cut off: libvirt's own connect waits for TCP's retries (about two minutes) when the
    host's packets are dropped."""
    try:
        socket.create_connection(address, timeout).close()
        return True
    except (OSError, socket.error):
        return False


def read_back(client, uuid, errors, clock=time.monotonic, sleep=time.sleep, seconds=READBACK_S):
    """(domain, state) of the domain UUID on CLIENT's host, read back after a call whose outcome is not known
    (it failed, or its reply was lost): a lost connection is opened anew until the host answers, for SECONDS
    at most (a new connection only once the host's libvirtd port answers, so that no attempt blocks for
    long). The state is 'gone' when the host answers that it has no such domain, 'unknown' when it never
    answered (ERRORS, a list, gets why)."""
    from ansible_collections.vmmigration.libvirt.plugins.module_utils._wait import wait_until  # pylint: disable=import-outside-toplevel
    seen = {'dom': None, 'state': 'unknown'}
    address = libvirtd_address(getattr(client, '_uri', None))

    def answered():
        if address and getattr(client, '_conn', None) is None and not reachable(address):
            errors.append('the libvirtd of %s does not answer on port %d' % (address[0], address[1]))
            return False
        try:
            found = client.lookup_uuid(uuid)
        except LibvirtClientError as e:
            errors.append(e.msg)
            if e.transient and hasattr(client, 'reset'):
                client.reset()
            return False
        state = domain_state(found) if found is not None else 'gone'
        if state == 'unknown':
            errors.append('the state of %s on %s cannot be read' % (uuid, getattr(client, 'uri', 'the host')))
            if hasattr(client, 'reset'):
                client.reset()
            return False
        seen.update(dom=found, state=state)
        return True
    wait_until(answered, seconds, 1.0, clock, sleep)
    return seen['dom'], seen['state']


class ClientCache:
    """Connections opened once per URI per task, and closed together."""

    def __init__(self, retries=2, retry_delay=0.5):
        self.retries = retries
        self.retry_delay = retry_delay
        self._clients = {}

    def get(self, uri):
        if uri not in self._clients:
            self._clients[uri] = LibvirtClient(uri, retries=self.retries, retry_delay=self.retry_delay)
        return self._clients[uri]

    def close(self):
        for c in self._clients.values():
            c.close()
        self._clients = {}


def require_libvirt(module):
    """Fail MODULE with an install hint, before anything else, when libvirt-python is missing."""
    if LIBVIRT_IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib('libvirt-python') + '; ' + INSTALL_HINT,
                         exception=LIBVIRT_IMPORT_ERROR)


def qemu_monitor_command(dom, command, flags=0):
    """A QMP command to the domain's QEMU through libvirt (libvirt_qemu), driven like every call."""
    import libvirt_qemu  # pylint: disable=import-outside-toplevel
    try:
        return libvirt_qemu.qemuMonitorCommand(unwrap(dom), command, flags)
    except _libvirt_errors() as e:
        raise wrap_error(e, 'QEMU monitor command failed')


@contextlib.contextmanager
def libvirt_session(module, errors=()):
    """The connections of one task: yields a ClientCache built from the shared connection options,
    turns a LibvirtClientError (or one of ERRORS) into fail_json - with the error's .result, if any -
    in one place, and closes every connection at the end."""
    cache = ClientCache(module.params['connect_retries'], module.params['connect_retry_delay'])
    caught = (LibvirtClientError,) + tuple(errors)  # named: older pylint misreads a sum in the except clause
    try:
        yield cache
    except caught as e:
        module.fail_json(msg=getattr(e, 'msg', None) or str(e), **getattr(e, 'result', {}))
    except OSError as e:
        module.fail_json(msg='%s%s' % (e.strerror or e, ': %s' % e.filename if e.filename else ''),
                         **getattr(e, 'result', {}))
    except Exception as e:  # pylint: disable=broad-except
        # a defect of ours: a clear message, the traceback only with -vvv, never a raw module crash
        module.fail_json(msg='unexpected error in vmmigration.libvirt (please report it): %s: %s'
                         % (type(e).__name__, e), exception=traceback.format_exc())
    finally:
        cache.close()

# -*- coding: utf-8 -*-
# Copyright (c) vmmigration.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The typed libvirt driver of vmmigration.libvirt: the only code that knows the libvirt Python binding.

Engines and modules say what they want in the collection's words - a migration with the flags
``{'live', 'peer2peer', 'tls'}`` and the parameters ``{'bandwidth': 64}``, a definition ``inactive`` and
``secure``, a job's statistics ``completed`` - and never use a binding method of the list below or a
``VIR_*`` constant. Every call here raises :class:`LibvirtClientError` (never the binding's
``libvirtError``), saying which call failed on what.

How long a call can block: a connection is opened with libvirt's keepalive (5 s x (3 + 1): a peer
that stops answering ends the call in about 20 s, with the event loop of :func:`start_event_loop`
running); the one call that runs for the length of a move, :func:`migrate`, runs in the engine's
watched thread, whose deadline aborts the job (a pre-copy) or stops waiting for it (a post-copy, never
aborted); a stream's transfer checks the copy's own deadline per chunk.

This module is private to the collection (leading underscore): its interface may change in any
release.
"""

import threading
import traceback

LIBVIRT_IMPORT_ERROR = None
try:
    import libvirt
except ImportError:
    libvirt = None
    LIBVIRT_IMPORT_ERROR = traceback.format_exc()


class LibvirtClientError(Exception):
    """Every libvirt failure of this collection, with a readable message (what was being done: what
    libvirt said), libvirt's own text (DETAIL) and its error code (test it with :func:`is_error`)."""

    def __init__(self, msg, code=None, transient=False, detail=None):
        super().__init__(msg)
        self.msg = msg
        self.code = code
        self.transient = transient
        self.detail = detail if detail is not None else msg


def _const(name, default=None):
    return getattr(libvirt, name, default) if libvirt is not None else default


# Errors --------------------------------------------------------------------------------------------

# Our words for the libvirt errors the collection tells apart.
ERRORS = {
    'no_domain': 'VIR_ERR_NO_DOMAIN',
    'no_volume': 'VIR_ERR_NO_STORAGE_VOL',
    'no_pool': 'VIR_ERR_NO_STORAGE_POOL',
    'no_support': 'VIR_ERR_NO_SUPPORT',
    'invalid': 'VIR_ERR_OPERATION_INVALID',
    'failed': 'VIR_ERR_OPERATION_FAILED',
    'system': 'VIR_ERR_SYSTEM_ERROR',
    'timeout': 'VIR_ERR_OPERATION_TIMEOUT',
}

# libvirt errors that say "try again": the daemon or the network hiccuped.
_TRANSIENT = ('VIR_ERR_SYSTEM_ERROR', 'VIR_ERR_RPC', 'VIR_ERR_NO_CONNECT', 'VIR_ERR_AUTH_UNAVAILABLE',
              'VIR_ERR_AGENT_UNRESPONSIVE', 'VIR_ERR_OPERATION_TIMEOUT')


def error_code(kind):
    """libvirt's numeric code for the error KIND (one of ERRORS, e.g. 'no_domain'); None without the binding."""
    return _const(ERRORS[kind])


def is_error(exc, kind):
    """Whether EXC (a LibvirtClientError) is libvirt's error KIND (one of ERRORS)."""
    code = getattr(exc, 'code', None)
    return code is not None and code == error_code(kind)


def is_transient(code):
    """True for libvirt error codes worth a retry (connection and timeout trouble)."""
    if libvirt is None or code is None:
        return False
    return code in [_const(name) for name in _TRANSIENT if _const(name) is not None]


# What libvirt says (as an internal error, not a connection error) when the connection itself is gone: the call
# that keepalive ended, and every later call on that connection. A new connection may work: transient.
_CONNECTION_GONE = ('client socket is closed', 'connection closed due to keepalive timeout')


def connection_gone(text):
    """Whether libvirt's TEXT says the connection (not the operation) failed."""
    return any(t in (text or '') for t in _CONNECTION_GONE)


def wrap_error(exc, what):
    """Turn a libvirt.libvirtError (or an OSError of the binding, or a LibvirtClientError raised below)
    into a LibvirtClientError that says what was being done."""
    if isinstance(exc, LibvirtClientError):
        return LibvirtClientError('%s: %s' % (what, exc.detail), code=exc.code, transient=exc.transient,
                                  detail=exc.detail)
    code = exc.get_error_code() if hasattr(exc, 'get_error_code') else None
    text = exc.get_error_message() if hasattr(exc, 'get_error_message') else None
    text = text or str(exc) or type(exc).__name__
    return LibvirtClientError('%s: %s' % (what, text), code=code, transient=is_transient(code) or connection_gone(text),
                              detail=text)


def binding_errors():
    """What a call into the binding can raise besides our own error."""
    return (libvirt.libvirtError, OSError) if libvirt is not None else (OSError,)


def binding_names(words):
    """The binding's names for WORDS ('flag:tls', 'param:bandwidth', 'call:abort_postcopy'): what a feature
    table asks the binding to have."""
    tables = {'flag': MIGRATE_FLAGS, 'param': MIGRATE_PARAMS, 'call': _CALL_SYMBOLS}
    return [tables[w.partition(':')[0]][w.partition(':')[2]] for w in words]


# Connections, the event loop ---------------------------------------------------------------------

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


def events_running():
    """Whether the event loop runs (events can be registered, keepalive works)."""
    return _EVENTS['started']


def silence_stderr():
    """libvirt prints every error on stderr by default: the collection reports them itself."""
    if libvirt is not None:
        libvirt.registerErrorHandler(lambda ctx, err: None, None)


def open_connection(uri, keepalive=None):
    """A new connection to URI (the binding's object; the client drives it), with KEEPALIVE
    (interval, count) when the event loop runs. Raises the binding's error: the client retries."""
    conn = libvirt.open(uri)
    if keepalive:
        try:
            # needs a running libvirt event loop (start_event_loop); without
            # one libvirt refuses and calls simply have no keepalive
            conn.setKeepAlive(keepalive[0], keepalive[1])
        except binding_errors():
            pass
    return conn


def close_connection(conn):
    """Close the binding's connection CONN, whatever state it is in."""
    try:
        conn.close()
    except binding_errors():
        pass


# The driven objects ------------------------------------------------------------------------------

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
    binding's libvirtError), and every libvirt object a call returns comes back driven too. Plain calls
    (name, state, info, isActive, create, destroy, suspend, resume, ...) go through it as they are; the
    calls that take the binding's flags or constants are the functions of this module.
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
            except binding_errors() as e:
                raise wrap_error(e, '%s failed (%s)' % (name, self._label()))
            return _wrap(result, where)
        call.__name__ = name
        return call

    def __repr__(self):
        return '<driven %s>' % type(self.raw).__name__


# Domains -----------------------------------------------------------------------------------------

_STATES = {1: 'running', 2: 'blocked', 3: 'paused', 4: 'shutting_down', 5: 'shutoff', 6: 'crashed',
           7: 'pmsuspended'}


def state_name(code):
    """Our word for libvirt's domain state CODE (dom.state()[0], dom.info()[0]): running, paused, shutoff..."""
    return _STATES.get(code, str(code))


def resumed_after_failed_migration(state, reason):
    """Whether a domain's (state, reason) is a guest libvirt resumed after a migration that had stopped it failed
    (its running reason 'migration canceled': libvirt gives it only to a guest it had paused for the switch-over)."""
    return state == 1 and reason == _const('VIR_DOMAIN_RUNNING_MIGRATION_CANCELED', 6)


def postcopy_failed(state, reason):
    """Whether a domain's (state, reason) is the source side of a post-copy that failed and waits to resume."""
    return state == 3 and reason == _const('VIR_DOMAIN_PAUSED_POSTCOPY_FAILED', 13)


def lookup_name(conn, name):
    """The domain called NAME on CONN, or None when the host has no such domain."""
    return _none_if(conn.lookupByName, name, 'no_domain')


def lookup_uuid(conn, uuid):
    """The domain with UUID on CONN, or None when the host has no such domain."""
    return _none_if(conn.lookupByUUIDString, uuid, 'no_domain')


def _none_if(fn, key, kind):
    try:
        return fn(key)
    except LibvirtClientError as e:
        if is_error(e, kind):
            return None
        raise


def definition(obj, inactive=False, secure=False, migratable=False):
    """The XML of OBJ (a domain, pool, volume, interface): a domain's INACTIVE (persistent) definition rather
    than the live one, with SECURE parts (passwords), or MIGRATABLE (as a migration would send it)."""
    flags = 0
    if inactive:
        flags |= _const('VIR_DOMAIN_XML_INACTIVE', 2)
    if secure:
        flags |= _const('VIR_DOMAIN_XML_SECURE', 1)
    if migratable:
        flags |= _const('VIR_DOMAIN_XML_MIGRATABLE', 8)
    return obj.XMLDesc(flags)


def undefine(dom, nvram='keep'):
    """Remove DOM's persistent definition; its NVRAM file is kept ('keep') or removed with it ('remove')."""
    flag = {'keep': 'VIR_DOMAIN_UNDEFINE_KEEP_NVRAM', 'remove': 'VIR_DOMAIN_UNDEFINE_NVRAM'}[nvram]
    dom.undefineFlags(_const(flag))


_ADDRESS_SOURCES = {'agent': 'VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT',
                    'lease': 'VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE',
                    'arp': 'VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_ARP'}


def address_source_known(source):
    """Whether this binding can ask for addresses from SOURCE ('agent', 'lease', 'arp')."""
    return _const(_ADDRESS_SOURCES[source]) is not None


def interface_addresses(dom, source):
    """The guest's addresses as libvirt's SOURCE ('agent', 'lease', 'arp') knows them (libvirt's dict)."""
    return dom.interfaceAddresses(_const(_ADDRESS_SOURCES[source]), 0)


def dirty_rate(conn, dom):
    """The dirty-rate statistics of DOM (a measurement startDirtyRateCalc began): libvirt's dict."""
    return conn.domainListGetStats([dom], _const('VIR_DOMAIN_STATS_DIRTYRATE', 1 << 9), 0)[0][1]


def on_job_completed(conn, dom, callback):
    """Call CALLBACK(stats) when DOM's job completes (needs the event loop)."""
    conn.domainEventRegisterAny(dom, _const('VIR_DOMAIN_EVENT_ID_JOB_COMPLETED'),
                                lambda _conn, _dom, stats, _opaque: callback(stats), None)


def compare_cpu(conn, arch, machine, virttype, cpu_xml, emulator=None):
    """libvirt's hypervisor CPU comparison: raises LibvirtClientError when the host cannot run CPU_XML."""
    conn.compareHypervisorCPU(emulator, arch, machine, virttype, cpu_xml,
                              _const('VIR_CONNECT_COMPARE_CPU_FAIL_INCOMPATIBLE', 1))


# Migration ---------------------------------------------------------------------------------------

# Our words for libvirt's migration flags and typed parameters.
MIGRATE_FLAGS = {
    'live': 'VIR_MIGRATE_LIVE', 'peer2peer': 'VIR_MIGRATE_PEER2PEER', 'persist_dest': 'VIR_MIGRATE_PERSIST_DEST',
    'undefine_source': 'VIR_MIGRATE_UNDEFINE_SOURCE', 'paused': 'VIR_MIGRATE_PAUSED',
    'non_shared_disk': 'VIR_MIGRATE_NON_SHARED_DISK', 'non_shared_inc': 'VIR_MIGRATE_NON_SHARED_INC',
    'unsafe': 'VIR_MIGRATE_UNSAFE', 'compressed': 'VIR_MIGRATE_COMPRESSED',
    'abort_on_error': 'VIR_MIGRATE_ABORT_ON_ERROR', 'auto_converge': 'VIR_MIGRATE_AUTO_CONVERGE',
    'postcopy': 'VIR_MIGRATE_POSTCOPY', 'tls': 'VIR_MIGRATE_TLS', 'parallel': 'VIR_MIGRATE_PARALLEL',
    'postcopy_resume': 'VIR_MIGRATE_POSTCOPY_RESUME',
}
MIGRATE_PARAMS = {
    'uri': 'VIR_MIGRATE_PARAM_URI', 'bandwidth': 'VIR_MIGRATE_PARAM_BANDWIDTH',
    'bandwidth_postcopy': 'VIR_MIGRATE_PARAM_BANDWIDTH_POSTCOPY', 'migrate_disks': 'VIR_MIGRATE_PARAM_MIGRATE_DISKS',
    'auto_converge_initial': 'VIR_MIGRATE_PARAM_AUTO_CONVERGE_INITIAL',
    'auto_converge_increment': 'VIR_MIGRATE_PARAM_AUTO_CONVERGE_INCREMENT',
    'parallel_connections': 'VIR_MIGRATE_PARAM_PARALLEL_CONNECTIONS', 'compression': 'VIR_MIGRATE_PARAM_COMPRESSION',
    'compression_zlib_level': 'VIR_MIGRATE_PARAM_COMPRESSION_ZLIB_LEVEL',
    'compression_zstd_level': 'VIR_MIGRATE_PARAM_COMPRESSION_ZSTD_LEVEL',
    'bandwidth_avail_switchover': 'VIR_MIGRATE_PARAM_BANDWIDTH_AVAIL_SWITCHOVER',
}
# The binding's names behind the driver's calls that need a newer binding.
_CALL_SYMBOLS = {'abort_postcopy': 'VIR_DOMAIN_ABORT_JOB_POSTCOPY'}


def migrate_flags(flags):
    """libvirt's flag bits for FLAGS (our words, a set); LibvirtClientError naming one this binding lacks."""
    bits = 0
    for word in flags:
        value = _const(MIGRATE_FLAGS[word])
        if value is None:
            raise LibvirtClientError('the libvirt-python binding on this host lacks %s (migration flag %s)'
                                     % (MIGRATE_FLAGS[word], word))
        bits |= value
    return bits


def migrate_params(params):
    """libvirt's typed parameters for PARAMS (our words to values)."""
    out = {}
    for word, value in params.items():
        key = _const(MIGRATE_PARAMS[word])
        if key is None:
            raise LibvirtClientError('the libvirt-python binding on this host lacks %s (migration parameter %s)'
                                     % (MIGRATE_PARAMS[word], word))
        out[key] = value
    return out


def migrate(dom, flags, params, dest_uri=None, dest_conn=None):
    """Migrate DOM with FLAGS (a set of MIGRATE_FLAGS words) and PARAMS (MIGRATE_PARAMS words to values):
    peer to peer to DEST_URI, or through the controller's DEST_CONN. Blocks until libvirt ends the job (the
    caller runs it in a watched thread); raises LibvirtClientError when libvirt reports a failure - which,
    when the reply was lost, does not say the job failed: read the world back."""
    bits, typed = migrate_flags(flags), migrate_params(params)
    if 'peer2peer' in flags:
        dom.migrateToURI3(dest_uri, typed, bits)
    else:
        dom.migrate3(dest_conn, typed, bits)


# job statistics' 'type': libvirt's virDomainJobType
_JOB_TYPES = {0: 'none', 1: 'bounded', 2: 'unbounded', 3: 'completed', 4: 'failed', 5: 'cancelled'}


def job_stats(dom, completed=False):
    """DOM's job statistics (libvirt's dict), the job that runs or, COMPLETED, the last one that ended; its
    'type' read with :func:`job_kind`."""
    return dom.jobStats(_const('VIR_DOMAIN_JOB_STATS_COMPLETED', 1) if completed else 0)


def job_kind(stats):
    """'none', 'bounded', 'unbounded' (a job runs), 'completed', 'failed', 'cancelled' from job statistics."""
    return _JOB_TYPES.get((stats or {}).get('type'), 'none')


def job_running(stats):
    """Whether job statistics STATS are of a job under way."""
    return job_kind(stats) in ('bounded', 'unbounded')


def abort_job(dom, postcopy=False):
    """Abort DOM's job; POSTCOPY interrupts a post-copy migration (libvirt 8.5+, pausing it for a resume;
    a post-copy is never aborted otherwise)."""
    if postcopy:
        dom.abortJobFlags(_const('VIR_DOMAIN_ABORT_JOB_POSTCOPY'))
    else:
        dom.abortJob()


def set_max_downtime(dom, ms):
    """The downtime (ms) the running migration of DOM may take to switch over."""
    dom.migrateSetMaxDowntime(int(ms), 0)


def start_postcopy(dom):
    """Switch DOM's running migration to post-copy."""
    dom.migrateStartPostCopy(0)


# Storage ------------------------------------------------------------------------------------------

def volume(pool, name):
    """The volume NAME of POOL, None when the pool has none (any other failure is raised)."""
    return _none_if(pool.storageVolLookupByName, name, 'no_volume')


def volume_is_file(vol):
    """Whether VOL is a plain file (not a directory, block device, ...)."""
    return vol.info()[0] == _const('VIR_STORAGE_VOL_FILE', 0)


def pool_create(conn, xml, build=False):
    """A transient pool from XML, started (BUILD: its directory made when missing)."""
    return conn.storagePoolCreateXML(xml, _const('VIR_STORAGE_POOL_CREATE_WITH_BUILD', 1) if build else 0)


def download_stream(conn, vol):
    """A stream on CONN that receives VOL's bytes, holes kept sparse."""
    stream = conn.newStream(0)
    vol.download(stream, 0, 0, _const('VIR_STORAGE_VOL_DOWNLOAD_SPARSE_STREAM', 1))
    return stream


def upload_stream(conn, vol):
    """A stream on CONN that sends bytes into VOL, holes kept sparse."""
    stream = conn.newStream(0)
    vol.upload(stream, 0, 0, _const('VIR_STORAGE_VOL_UPLOAD_SPARSE_STREAM', 1))
    return stream


# QEMU ---------------------------------------------------------------------------------------------

def qemu_monitor_command(dom, command, flags=0):
    """A QMP command to the domain's QEMU through libvirt (libvirt_qemu), driven like every call."""
    import libvirt_qemu  # pylint: disable=import-outside-toplevel
    try:
        return libvirt_qemu.qemuMonitorCommand(unwrap(dom), command, flags)
    except binding_errors() as e:
        raise wrap_error(e, 'QEMU monitor command failed')

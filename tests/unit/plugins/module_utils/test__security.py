"""Transport security: host readiness from libvirt's files, certificates, and the per-move decision."""
import os
import subprocess
import time

import pytest

from ansible_collections.vmmigration.libvirt.plugins.module_utils.decide import transport as S

DAY = 86400.0


def make_cert(path, cn, san=None, days=365):
    """A self-signed certificate from the openssl command (the lab's setup installs it)."""
    key = path + '.key'
    cmd = ['openssl', 'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
           '-keyout', key, '-out', path, '-subj', '/O=vmm test/CN=%s' % cn, '-days', str(days)]
    if san:
        cmd += ['-addext', 'subjectAltName=%s' % san]
    subprocess.run(cmd, check=True, capture_output=True)
    return path


def tls_host(tmp_path, files=S.MIGRATION_FILES, san='IP:198.18.0.2,DNS:h2', days=365):
    """A host's /etc/libvirt and QEMU certificate directory in TMP_PATH."""
    qdir = tmp_path / 'pki' / 'qemu'
    qdir.mkdir(parents=True)
    for f in files:
        if f.endswith('cert.pem'):
            make_cert(str(qdir / f), 'h2', san if f == 'server-cert.pem' else None, days=days)
        else:
            (qdir / f).write_text('key\n')
    qemu = tmp_path / 'qemu.conf'
    qemu.write_text('# test\nmigrate_tls_x509_cert_dir = "%s"   # where\nmigration_host = "198.18.0.2"\n'
                    'cgroup_controllers = [ "cpu",\n  "memory" ]\n' % qdir)
    lib = tmp_path / 'libvirtd.conf'
    lib.write_text('listen_tls = 1\ncert_file = "%s"\nkey_file = "%s"\nca_file = "%s"\n'
                   % (qdir / 'server-cert.pem', qdir / 'server-key.pem', qdir / 'ca-cert.pem'))
    return str(lib), str(qemu)


def test_parse_conf_strings_numbers_lists_and_comments():
    conf = S.parse_conf('a = "x # not a comment"  # comment\nb = 3\n# c = 4\nd = [ "p",\n "q" ]\ne=["r"]\n')
    assert conf == {'a': 'x # not a comment', 'b': 3, 'd': ['p', 'q'], 'e': ['r']}


def test_certificate_names_and_validity_are_read(tmp_path):
    path = make_cert(str(tmp_path / 'c.pem'), 'h2', 'IP:198.18.0.2,DNS:h2.lab,IP:fd00::2', days=10)
    info = S.read_cert(path, time.time())
    assert info['subject_cn'] == 'h2' and info['issuer_cn'] == 'h2'
    assert info['names'] == ['198.18.0.2', 'h2.lab', 'fd00::2']
    assert 9.9 < info['days_left'] <= 10.0
    assert S.names_address(info, '198.18.0.2') and S.names_address(info, '[fd00::2]')
    assert not S.names_address(info, '198.18.0.3')
    assert S.read_cert(str(tmp_path / 'none.pem'), 0)['error']
    (tmp_path / 'junk.pem').write_text('-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n')
    assert 'not a certificate' in S.read_cert(str(tmp_path / 'junk.pem'), 0)['error']


def test_a_host_with_every_file_is_ready(tmp_path):
    lib, qemu = tls_host(tmp_path)
    state = S.host_security(lib, qemu, ports={16514})
    assert state['migration_tls']['ready'] and state['migration_tls']['missing'] == []
    assert state['migration_tls']['verify_peer']
    assert state['libvirt_tls']['ready'] and state['migration_host'] == '198.18.0.2'
    assert state['problems'] == [] and state['warnings'] == []
    assert not S.host_security(lib, qemu, ports=set())['libvirt_tls']['ready']   # nothing listens on 16514


def test_a_host_missing_a_file_is_not_ready_and_says_which(tmp_path):
    lib, qemu = tls_host(tmp_path, files=[f for f in S.MIGRATION_FILES if f != 'client-key.pem'])
    state = S.host_security(lib, qemu, ports=set())
    assert not state['migration_tls']['ready']
    assert state['migration_tls']['missing'] == ['client-key.pem']


def test_default_directory_when_qemu_conf_names_none(tmp_path):
    (tmp_path / 'qemu.conf').write_text('user = "root"\n')
    state = S.host_security(str(tmp_path / 'nope'), str(tmp_path / 'qemu.conf'), ports=set())
    assert state['migration_tls']['cert_dir'] == '/etc/pki/qemu'


def test_expired_and_expiring_certificates(tmp_path):
    lib, qemu = tls_host(tmp_path, days=20)
    soon = S.host_security(lib, qemu, ports=set())
    assert soon['problems'] == []
    assert any('expires in 20 days' in w for w in soon['warnings'])
    later = S.host_security(lib, qemu, ports=set(), now=time.time() + 21 * DAY)
    assert any('expired on' in p and 'server certificate' in p for p in later['problems'])


def test_a_certificate_that_does_not_name_the_peer_address_warns(tmp_path):
    lib, qemu = tls_host(tmp_path)
    state = S.host_security(lib, qemu, ports=set())
    _p, warnings = S.certificate_findings(state, addresses=['198.18.0.2'])
    assert warnings == []
    _p, warnings = S.certificate_findings(state, addresses=['198.18.0.9'], label='h2')
    assert warnings and 'does not name 198.18.0.9' in warnings[0] and warnings[0].startswith('h2 ')


@pytest.mark.parametrize('given,mode', [(None, 'auto'), ('auto', 'auto'), ('required', 'required'),
                                        ('disabled', 'disabled')])
def test_modes(given, mode):
    assert S.normalize_mode(given) == mode


@pytest.mark.parametrize('given', ['maybe', True, False, 'off', 'no', 'true', 'True'])
def test_a_bad_mode_or_a_yaml_boolean_is_refused_naming_the_three_words(given):
    with pytest.raises(ValueError, match='auto, required, disabled'):
        S.normalize_mode(given)


READY = {'migration_tls': {'ready': True, 'missing': [], 'cert_dir': '/d'}}
BARE = {'migration_tls': {'ready': False, 'missing': ['ca-cert.pem', 'server-cert.pem'], 'cert_dir': '/etc/pki/qemu'}}


def test_auto_uses_tls_between_ready_hosts():
    t = S.plan_transport('auto', False, READY, READY)
    assert t['tls'] and t['encrypted'] and not t['refused']


def test_auto_refuses_plaintext_by_default_and_names_the_fix():
    t = S.plan_transport('auto', False, READY, BARE, dest_label='h2')
    assert not t['tls'] and t['refused']
    assert 'in the clear' in t['refused'] and 'h2 is not set up' in t['refused']
    assert 'ca-cert.pem' in t['refused'] and 'migrate_tls_x509_cert_dir' in t['refused']
    assert 'allow_plaintext' in t['refused']


def test_auto_moves_in_the_clear_only_when_allowed():
    t = S.plan_transport('auto', True, BARE, READY)
    assert not t['tls'] and not t['refused'] and t['transport'] == 'plaintext'
    assert 'allow_plaintext' in t['why']


def test_auto_with_an_unknown_destination_asks_libvirt_for_tls():
    t = S.plan_transport('auto', False, READY, None)
    assert t['tls'] and t['encrypted'] is None and not t['refused']


def test_required_is_refused_when_a_host_is_not_ready_even_with_allow_plaintext():
    t = S.plan_transport('required', True, BARE, READY)
    assert t['refused'] and 'tls=required' in t['refused']


def test_disabled_needs_allow_plaintext():
    assert S.plan_transport('disabled', False, READY, READY)['refused']
    t = S.plan_transport('disabled', True, READY, READY)
    assert not t['tls'] and not t['refused']


def test_cold_copies_follow_the_connection():
    assert S.plan_transport('auto', False, copies_over=[])['transport'] == 'none'
    t = S.plan_transport('auto', False, copies_over=['qemu:///system', 'qemu+tls://h2/system'])
    assert t['encrypted'] and not t['refused']
    t = S.plan_transport('auto', False, copies_over=['qemu:///system', 'qemu+tcp://u:pw@h2/system'])
    assert t['refused'] and 'qemu+tls://' in t['refused'] and 'pw' not in t['refused']
    assert not S.plan_transport('auto', True, copies_over=['qemu+tcp://h2/system'])['refused']
    assert S.plan_transport('required', True, copies_over=['qemu+tcp://h2/system'])['refused']


@pytest.mark.parametrize('uri,kind', [('qemu:///system', 'local'), ('qemu+unix:///system', 'local'),
                                      ('qemu+tls://h/system', 'tls'), ('qemu://h/system', 'tls'),
                                      ('qemu+ssh://root@h/system', 'ssh'), ('qemu+tcp://h/system', 'tcp')])
def test_connection_transport(uri, kind):
    assert S.connection_transport(uri) == kind


def test_redact_uri():
    assert S.redact_uri('qemu+tcp://admin:hunter2@h/system') == 'qemu+tcp://admin:***@h/system'
    assert S.redact_uri('qemu+ssh://h/system?keyfile=/k&password=hunter2') == 'qemu+ssh://h/system?keyfile=/k&password=***'
    assert S.redact_uri('qemu+tls://h/system') == 'qemu+tls://h/system'


def test_listening_ports_reads_proc(tmp_path):
    p = tmp_path / 'tcp'
    p.write_text('  sl  local_address rem_address   st\n'
                 '   0: 0212A8C6:4082 00000000:0000 0A 0\n   1: 0212A8C6:0016 0100007F:9C40 01 0\n')
    assert S.listening_ports([str(p), str(tmp_path / 'none')]) == {16514}
    assert os.path.exists('/proc/net/tcp') and isinstance(S.listening_ports(), set)


def test_a_client_shows_its_uri_without_the_password():
    from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver import connection as C
    if C.driver.libvirt is None:
        pytest.fail('libvirt-python is part of the test requirements')
    c = C.LibvirtClient('qemu+tcp://vmm:planted-secret@h2/system')
    assert c.uri == 'qemu+tcp://vmm:***@h2/system'
    assert c._uri.endswith('planted-secret@h2/system')  # pylint: disable=protected-access
    with pytest.raises(C.LibvirtClientError) as e:
        C.LibvirtClient('vmm:planted-secret@h2')
    assert 'planted-secret' not in e.value.msg


@pytest.mark.parametrize('allow', [False, None, 'no', 'false', 'False', '0', 'off'])
def test_only_a_true_allow_plaintext_allows_the_clear(allow):
    assert S.plan_transport('disabled', allow, None, None)['refused']
    assert S.plan_transport('auto', allow, copies_over=['qemu+tcp://h/system'])['refused']


@pytest.mark.parametrize('state', ['x', {'migration_tls': 'x'}, {'migration_tls': {'ready': 'yes', 'certificates': 'x'}},
                                   {'migration_tls': {'certificates': {'server': 'x'}}}, ['y']])
def test_odd_states_are_unknown_or_read_as_given_never_a_traceback(state):
    t = S.plan_transport('auto', False, state, state)
    assert t['tls'] and not t['refused']
    assert S.certificate_findings(state) == ([], [])


def test_an_unreadable_qemu_conf_makes_the_host_unknown_not_bare(tmp_path):
    state = S.host_security(str(tmp_path / 'none.conf'), str(tmp_path), ports=set())   # a directory: unreadable
    assert state['migration_tls']['ready'] is None and state['unreadable'] == [str(tmp_path)]
    assert any('cannot read' in w for w in state['warnings'])
    t = S.plan_transport('auto', False, state, None)
    assert t['tls'] and not t['refused']       # asked for; libvirt checks


@pytest.mark.parametrize('uri,shown', [('qemu+tcp://root:p@ss@h/system', 'qemu+tcp://root:***@h/system'),
                                       ('qemu+tcp://root:p/ss@h/system', 'qemu+tcp://root:***@h/system'),
                                       ('qemu+ssh://root@h/system', 'qemu+ssh://root@h/system'),
                                       ('qemu:///system', 'qemu:///system')])
def test_redact_passwords_with_at_and_slash(uri, shown):
    assert S.redact_uri(uri) == shown


def test_modular_daemons_are_told_apart_by_virtqemuds_socket_and_their_listener_read_from_virtproxyd_conf(tmp_path, monkeypatch):
    sign = tmp_path / 'virtqemud-sock'
    assert S.daemons(signs=(str(sign),)) == ('monolithic', S.LIBVIRTD_CONF)
    sign.write_text('')
    assert S.daemons(signs=(str(sign),)) == ('modular', S.VIRTPROXYD_CONF)
    # the state says which, and reads the listener's files where that daemon's configuration names them
    conf = tmp_path / 'virtproxyd.conf'
    conf.write_text('cert_file = "%s"\n' % (tmp_path / 'nowhere.pem'))
    monkeypatch.setattr(S, 'daemons', lambda: ('modular', str(conf)))
    state = S.host_security(qemu_conf=str(tmp_path / 'qemu.conf'), ports=set())
    assert state['libvirt_tls']['daemons'] == 'modular' and state['libvirt_tls']['conf'] == str(conf)
    assert str(tmp_path / 'nowhere.pem') in state['libvirt_tls']['missing']
    # a file given is read as given, without telling the daemons apart
    state = S.host_security(libvirtd_conf=str(conf), qemu_conf=str(tmp_path / 'qemu.conf'), ports=set())
    assert 'daemons' not in state['libvirt_tls'] and state['libvirt_tls']['conf'] == str(conf)

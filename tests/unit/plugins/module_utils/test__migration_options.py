"""The migrate module refuses bad input before anything happens."""
from ansible_collections.vmmigration.libvirt.plugins.module_utils.engines import live as migrate
from ansible_collections.vmmigration.libvirt.plugins.module_utils.engines import live_postcopy as LP


def params(**kw):
    p = {k: v.get("default") for k, v in migrate.migration_argspec().items()}
    p.update(domain="g", dest_uri="qemu+tcp://h2/system")
    p.update(kw)
    return p


def test_defaults_are_valid():
    assert migrate.validate(params()) == []


def test_negative_and_zero_numbers():
    problems = migrate.validate(params(bandwidth_mibps=-5, max_downtime_ms=0, headroom_mib=-1))
    assert "bandwidth_mibps must be greater than 0 (got -5)" in problems
    assert "max_downtime_ms must be greater than 0 (got 0)" in problems
    assert "headroom_mib must not be negative (got -1)" in problems


def test_postcopy_must_be_allowed():
    problems = migrate.validate(params(completion="hybrid"))
    assert len(problems) == 1 and "needs allow_postcopy=true" in problems[0] and "guest is lost" in problems[0]
    assert migrate.validate(params(final_action="postcopy"))[0] == "final_action=postcopy needs allow_postcopy=true"
    assert migrate.validate(params(completion="postcopy", allow_postcopy=True)) == []


def test_migration_uri_shape():
    assert "migration_uri must look like tcp://host[:port]" in migrate.validate(params(migration_uri="10.0.0.2"))[0]
    assert migrate.validate(params(migration_uri="tcp://198.18.0.12:49152")) == []


def test_postcopy_bandwidth_must_be_positive():
    assert "postcopy_bandwidth_mibps must be greater than 0 (got 0)" in migrate.validate(params(postcopy_bandwidth_mibps=0))


def test_switchover_bandwidth_must_be_positive():
    assert migrate.validate(params(switchover_bandwidth_mibps=-1)) == [
        "switchover_bandwidth_mibps must be greater than 0 (got -1)"]
    assert migrate.validate(params(switchover_bandwidth_mibps=400)) == []


class FakeDom:
    """The source side of a failed post-copy: resume attempts fail until the link is back."""

    def __init__(self, failures):
        self.failures, self.calls = failures, []

    def migrateToURI3(self, uri, params, flags):  # noqa: N802 (libvirt's name)
        self.calls.append((uri, dict(params), flags))
        if len(self.calls) <= self.failures:
            raise migrate.driver.libvirt.libvirtError("migration is not in post-copy failed state on the destination")

    def jobStats(self, flags):  # noqa: N802
        return {"data_processed": len(self.calls)}


def recovery(failures, src_uri="qemu+tcp://h1/system", **opts):
    sleeps = []
    src = type("Client", (), {"uri": src_uri})()
    m = migrate.LiveMigration(src, None, "g", params(**opts), clock=lambda: 100.0, sleep=sleeps.append)
    m.t0 = 90.0
    dom = FakeDom(failures)
    return m, dom, m.postcopy.recover(dom), sleeps


def test_postcopy_resume_retries_with_growing_waits_and_the_same_address():
    m, dom, (ok, how), sleeps = recovery(3, migration_uri="tcp://198.18.0.12", postcopy_bandwidth_mibps=8)
    assert ok and "recovered" in how
    assert sleeps == [2, 4, 8] and len(dom.calls) == 4
    uri, params_, flags = dom.calls[-1]
    assert uri == "qemu+tcp://h2/system"
    assert params_ == {migrate.driver.libvirt.VIR_MIGRATE_PARAM_URI: "tcp://198.18.0.12",
                       migrate.driver.libvirt.VIR_MIGRATE_PARAM_BANDWIDTH_POSTCOPY: 8}
    assert flags & migrate.driver.libvirt.VIR_MIGRATE_POSTCOPY_RESUME and flags & migrate.driver.libvirt.VIR_MIGRATE_POSTCOPY
    assert [d["action"] for d in m.decisions] == ["postcopy_resume"] * 4
    assert "recovery 4 succeeded" in m.decisions[-1]["reason"]


def test_postcopy_resume_gives_up_plainly():
    m, dom, (ok, how), sleeps = recovery(99, postcopy_recovery_attempts=6)
    assert not ok and len(dom.calls) == 6 and sleeps == [2, 4, 8, 15, 15]
    assert "do not destroy either side" in how and "after 6 attempts" in how
    assert "recovery 6 of 6 failed" in m.decisions[-1]["reason"]


def test_libvirtd_address_only_when_the_source_is_local():
    assert LP.libvirtd_address("qemu:///system", "qemu+tcp://198.18.0.12/system") == ("198.18.0.12", 16509)
    assert LP.libvirtd_address("qemu:///system", "qemu+tls://hv3.example.com:1234/system") == ("hv3.example.com", 1234)
    assert LP.libvirtd_address("qemu:///system", "qemu+ssh://root@hv3/system") == ("hv3", 22)
    assert LP.libvirtd_address("qemu+tcp://hv1/system", "qemu+tcp://hv2/system") is None
    assert LP.libvirtd_address("qemu:///system", "qemu:///system") is None


def test_postcopy_resume_waits_for_the_destination_to_answer(monkeypatch):
    answers = iter([False, False, True])
    monkeypatch.setattr(LP, "reachable", lambda address, timeout=3.0: next(answers))
    m, dom, (ok, _how), sleeps = recovery(0, src_uri="qemu:///system")
    assert ok and len(dom.calls) == 1 and sleeps == [2, 4]
    assert "(h2 port 16509) does not answer yet" in m.decisions[0]["reason"]


def test_a_resume_that_moves_no_data_is_given_up_as_hung():
    import itertools  # pylint: disable=import-outside-toplevel
    import threading  # pylint: disable=import-outside-toplevel
    release = threading.Event()

    class Stuck(FakeDom):
        def migrateToURI3(self, uri, params, flags):  # noqa: N802
            self.calls.append(uri)
            release.wait(10)

        def jobStats(self, flags):  # noqa: N802
            return {"data_processed": 42}

    ticks = itertools.count(0, 20)
    m = migrate.LiveMigration(type("Client", (), {"uri": "qemu+tcp://h1/system"})(), None, "g",
                              params(poll_interval_s=0.01), clock=lambda: float(next(ticks)), sleep=lambda s: None)
    m.t0 = 0.0
    dom = Stuck(0)
    try:
        ok, how = m.postcopy.recover(dom)
    finally:
        release.set()
    assert not ok and len(dom.calls) == 1
    assert how.startswith("recovery hung") and "moved no data for 60 s" in how and "Do not destroy" in how


def test_postcopy_cap_and_address_reach_libvirt():
    m = migrate.LiveMigration(None, None, "g", params(bandwidth_mibps=32, postcopy_bandwidth_mibps=8,
                                                      migration_uri="tcp://198.18.0.12", tls="required"),
                              hosts_security={"source": None, "dest": None})
    flags, p = m.flags_and_params({"flags": {"postcopy": True, "auto_converge": False}},
                                  {"copied": [], "unsafe_override_for": []})
    assert p == {"bandwidth": 32, "bandwidth_postcopy": 8, "uri": "tcp://198.18.0.12"}
    assert {"postcopy", "tls", "peer2peer"} <= flags
    # and in the binding's own terms, as the driver hands them to libvirt
    L = migrate.driver.libvirt
    assert migrate.driver.migrate_params(p) == {L.VIR_MIGRATE_PARAM_BANDWIDTH: 32, L.VIR_MIGRATE_PARAM_BANDWIDTH_POSTCOPY: 8,
                                                L.VIR_MIGRATE_PARAM_URI: "tcp://198.18.0.12"}
    bits = migrate.driver.migrate_flags(flags)
    assert bits & L.VIR_MIGRATE_POSTCOPY and bits & L.VIR_MIGRATE_TLS and bits & L.VIR_MIGRATE_PEER2PEER
    assert not bits & L.VIR_MIGRATE_UNSAFE and not bits & L.VIR_MIGRATE_NON_SHARED_DISK


def test_auto_converge_throttle_reaches_libvirt():
    m = migrate.LiveMigration(None, None, "g", params(bandwidth_mibps=32, tls="disabled", allow_plaintext=True))
    flags, p = m.flags_and_params({"flags": {"postcopy": False, "auto_converge": True},
                                   "auto_converge": {"initial": 73, "increment": 20}},
                                  {"copied": [], "unsafe_override_for": []})
    L = migrate.driver.libvirt
    assert "auto_converge" in flags and migrate.driver.migrate_flags(flags) & L.VIR_MIGRATE_AUTO_CONVERGE
    typed = migrate.driver.migrate_params(p)
    assert typed[L.VIR_MIGRATE_PARAM_AUTO_CONVERGE_INITIAL] == 73 and typed[L.VIR_MIGRATE_PARAM_AUTO_CONVERGE_INCREMENT] == 20
    flags, p = m.flags_and_params({"flags": {"postcopy": False, "auto_converge": False}},
                                  {"copied": [], "unsafe_override_for": []})
    assert "auto_converge" not in flags and "auto_converge_initial" not in p


def test_migration_uri_scheme_host_and_port():
    assert migrate.validate(params(migration_uri="tcp://198.18.0.12")) == []
    assert migrate.validate(params(migration_uri="unix:///run/mig.sock")) == []
    assert "scheme 'http' is not one QEMU migrates over" in migrate.validate(params(migration_uri="http://h2"))[0]
    assert "needs a host" in migrate.validate(params(migration_uri="tcp://:49152"))[0]
    assert "port that is not a number" in migrate.validate(params(migration_uri="tcp://h2:99999"))[0]
    assert "port that is not a number" in migrate.validate(params(migration_uri="tcp://h2:port"))[0]


def test_parallel_connections_within_what_qemu_takes():
    assert migrate.validate(params(parallel_connections=255)) == []
    assert "at most 255" in migrate.validate(params(parallel_connections=256))[0]


def test_status_file_in_a_missing_directory(tmp_path):
    assert migrate.validate(params(status_file=str(tmp_path / "s.json"))) == []
    problems = migrate.validate(params(status_file=str(tmp_path / "nope" / "s.json")))
    assert problems == ["status_file %s: its directory %s does not exist on this host"
                        % (tmp_path / "nope" / "s.json", tmp_path / "nope")]
    assert migrate.validate(params(status_file=str(tmp_path))) == ["status_file %s is a directory: give a file path"
                                                                   % tmp_path]


def test_dest_uri_must_name_a_qemu_driver():
    for good in ("qemu+tls://h2/system", "qemu+tcp://h2/system", "qemu+ssh://root@h2/system", "qemu:///system"):
        assert migrate.validate(params(dest_uri=good)) == [], good
    for bad in ("http://h2/", "h2", "xen://h2/"):
        assert "dest_uri must be a libvirt URI of the destination's QEMU driver" in migrate.validate(
            params(dest_uri=bad))[0], bad


def test_a_migration_uri_that_does_not_parse_is_a_problem_not_a_traceback():
    assert "does not parse" in migrate.validate(params(migration_uri="tcp://[2001:db8::1"))[0]
    assert migrate.validate(params(migration_uri="tcp://[2001:db8::1]:49152")) == []
    assert migrate.validate(params(dest_uri="QEMU+TLS://h2/system")) == []


def test_a_postcopy_recovery_asks_for_tls_like_the_move():
    m, dom, _outcome, _sleeps = recovery(0)
    assert not dom.calls[0][2] & migrate.driver.libvirt.VIR_MIGRATE_TLS
    sleeps = []
    m = migrate.LiveMigration(type("Client", (), {"uri": "qemu+tcp://h1/system"})(), None, "g", params(),
                              clock=lambda: 100.0, sleep=sleeps.append, hosts_security={"source": None, "dest": None})
    m.decide_transport()
    m.t0 = 90.0
    dom = FakeDom(0)
    m.postcopy.recover(dom)
    assert dom.calls[0][2] & migrate.driver.libvirt.VIR_MIGRATE_TLS


def test_the_tuning_dict_reaches_the_engine_from_the_module_and_from_a_drain():
    # (the module's params: tuning as AnsibleModule fills it; a drain's migrate_options: only what was given)
    spec_defaults = dict((k, v.get("default")) for k, v in migrate.TUNING_ARGSPEC.items())
    m = migrate.LiveMigration(None, None, "g", params(tuning=dict(spec_defaults, dead_link_s=9.0, poll_interval_s=0.5)))
    assert m.o["dead_link_s"] == 9.0 and m.o["poll_interval_s"] == 0.5 and m.o["stall_iterations"] == 2
    assert "tuning" not in m.o
    o = migrate.live_options({"tuning": {"postcopy_recovery_attempts": 3}, "max_downtime_ms": 100})
    assert o["postcopy_recovery_attempts"] == 3 and o["max_downtime_ms"] == 100 and o["dead_link_s"] == 5
    # and the engine's rules read the tuned values
    assert "dead_link_s must be greater than 0 (got 0)" in migrate.validate(params(tuning={"dead_link_s": 0}))

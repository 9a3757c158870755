"""The migrate module refuses bad input before anything happens."""
from ansible_collections.vmmigration.libvirt.plugins.module_utils import _migration as migrate


def params(**kw):
    p = {k: v.get("default") for k, v in migrate.migration_argspec().items()}
    p.update(domain="g", dest_uri="qemu+tcp://h2/system")
    p.update(kw)
    return p


def test_defaults_are_valid():
    assert migrate.validate(params()) == []


def test_negative_and_zero_numbers():
    problems = migrate.validate(params(bandwidth_mibps=-5, max_downtime_ms=0, memory_reserve_mib=-1))
    assert "bandwidth_mibps must be greater than 0 (got -5)" in problems
    assert "max_downtime_ms must be greater than 0 (got 0)" in problems
    assert "memory_reserve_mib must not be negative (got -1)" in problems


def test_postcopy_must_be_allowed():
    problems = migrate.validate(params(completion="hybrid"))
    assert len(problems) == 1 and "needs allow_postcopy=true" in problems[0] and "guest is lost" in problems[0]
    assert migrate.validate(params(final_action="postcopy"))[0] == "final_action=postcopy needs allow_postcopy=true"
    assert migrate.validate(params(completion="postcopy", allow_postcopy=True)) == []


def test_migration_uri_shape():
    assert "migration_uri must look like tcp://host[:port]" in migrate.validate(params(migration_uri="10.0.0.2"))[0]
    assert migrate.validate(params(migration_uri="tcp://198.18.0.12:49152")) == []

"""The one bounded wait: a deadline always, never a sleep past it, on an injectable clock."""
import pytest

from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver.wait import (
    FakeClock,
    WaitTimeout,
    check_timeout,
    wait_until,
)


def test_returns_the_first_true_answer_without_waiting_more():
    clock = FakeClock()
    answers = iter([None, 0, {"rate": 5}, "never asked"])
    assert wait_until(lambda: next(answers), 10, 0.5, clock, clock.sleep) == {"rate": 5}
    assert clock.slept == [0.5, 0.5] and clock.now == 1.0


def test_at_the_deadline_the_last_answer_or_a_named_timeout():
    clock = FakeClock()
    calls = []
    assert wait_until(lambda: calls.append(clock()) or False, 1.0, 0.3, clock, clock.sleep) is False
    # every 0.3 s, the last sleep cut to the deadline, and one last look there
    assert calls == pytest.approx([0.0, 0.3, 0.6, 0.9, 1.0]) and clock.now == pytest.approx(1.0)
    clock = FakeClock()
    with pytest.raises(WaitTimeout, match=r"guest shutdown: not done after 2.0 s") as e:
        wait_until(lambda: [], 2, 0.5, clock, clock.sleep, what="guest shutdown")
    assert e.value.last == []
    assert clock.now == pytest.approx(2.0)


def test_a_zero_timeout_asks_once():
    clock = FakeClock()
    assert wait_until(lambda: None, 0, 1, clock, clock.sleep) is None and clock.slept == []


@pytest.mark.parametrize("bad", [None, float("inf"), float("nan"), -1, True])
def test_no_wait_without_an_end(bad):
    with pytest.raises(ValueError, match="deadline|finite"):
        check_timeout(bad)
    with pytest.raises(ValueError):
        wait_until(lambda: True, bad)


def test_a_positive_interval():
    with pytest.raises(ValueError, match="positive interval"):
        wait_until(lambda: True, 1, 0)

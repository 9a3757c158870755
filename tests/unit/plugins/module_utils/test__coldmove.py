"""Cold migration's guards that need no hypervisor: the free-space verdict, taken before anything
changes, and the per-copy deadline that aborts a stream half-way (the lab proves both end to end)."""
import os

import pytest

from ansible_collections.vmmigration.libvirt.plugins.module_utils.engines import cold_copy as CC

MIB = 1024 * 1024


def test_room_enough_is_no_problem():
    assert CC.space_problems({'dest': 100 * MIB}, {'dest': 100 * MIB + CC.SPACE_MARGIN}) == []


def test_each_place_short_of_room_is_named_with_figures():
    problems = CC.space_problems({'the destination directory /a': 24 * MIB, 'work_dir /tmp': 24 * MIB},
                                 {'the destination directory /a': 8 * MIB, 'work_dir /tmp': 10 ** 12})
    assert problems == ['the destination directory /a needs 40 MiB for the copies, has 8 MiB free']


def test_the_margin_counts():
    assert CC.space_problems({'d': 100 * MIB}, {'d': 100 * MIB}) != []


def test_unreadable_free_space_is_a_problem_not_a_pass():
    assert CC.space_problems({'d': 1}, {'d': None}) == ['cannot read the free space of d']


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_deadline_raises_only_once_passed():
    clock = Clock()
    d = CC.Deadline(10, 'the copy of /x', clock)
    clock.t = 10.0
    d.check()
    clock.t = 10.01
    with pytest.raises(CC.CopyTimeout, match=r'the copy of /x did not finish within 10 s \(copy_timeout_s\)'):
        d.check()


class FakeStream:
    """Delivers CHUNKS to the receive handler the way libvirt-python's sparseRecvAll does, advancing
    the clock per chunk; records whether the stream was finished or aborted."""

    def __init__(self, chunks, clock, step):
        self.chunks, self.clock, self.step = chunks, clock, step
        self.finished = self.aborted = False

    def sparseRecvAll(self, handler, hole_handler, opaque):  # pylint: disable=invalid-name,unused-argument
        for c in self.chunks:
            self.clock.t += self.step
            handler(self, c, opaque)

    def finish(self):
        self.finished = True

    def abort(self):
        self.aborted = True


class FakeConn:
    def __init__(self, stream):
        self.stream = stream

    def newStream(self, flags):  # pylint: disable=invalid-name,unused-argument
        return self.stream


class FakeVol:
    def download(self, stream, offset, length, flags):  # pylint: disable=unused-argument
        return 0


@pytest.mark.skipif(CC.driver.libvirt is None, reason="libvirt-python not installed")
def test_a_download_past_its_deadline_is_aborted_half_way(tmp_path):
    clock = Clock()
    stream = FakeStream([b'x' * 10] * 10, clock, 1.0)
    fd = os.open(str(tmp_path / 'copy'), os.O_RDWR | os.O_CREAT)
    try:
        with pytest.raises(CC.CopyTimeout):
            CC.download(FakeVol(), FakeConn(stream), fd, CC.Deadline(4.5, 'the copy', clock))
    finally:
        os.close(fd)
    assert stream.aborted and not stream.finished
    assert os.path.getsize(str(tmp_path / 'copy')) == 40    # four chunks arrived before the deadline


@pytest.mark.skipif(CC.driver.libvirt is None, reason="libvirt-python not installed")
def test_a_download_within_its_deadline_finishes():
    clock = Clock()
    stream = FakeStream([b'ab', b'cd'], clock, 1.0)
    digest, length = CC.download(FakeVol(), FakeConn(stream), None, CC.Deadline(5, 'the copy', clock))
    assert stream.finished and not stream.aborted and length == 4
    assert digest == '88d4266fd4e6338d13b845fcf289579d209c897823b9217da3e161936f031589'


def test_the_default_copy_deadline_grows_with_the_file():
    assert CC.copy_deadline_s(None, 1 * 1024 ** 3) == 1800              # 1 GiB: 30 minutes
    assert CC.copy_deadline_s(None, 100 * 1024 ** 3) == 10240           # 100 GiB: 1 s per 10 MiB
    assert CC.copy_deadline_s(5, 100 * 1024 ** 3) == 5                  # the option wins

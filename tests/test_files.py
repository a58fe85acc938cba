"""write_atomic: whole files or nothing, and never a rename over something that is not a file."""
import os
import stat

from podcheck.host.files import write_atomic


def test_replaces_a_file_in_one_step(tmp_path):
    target = tmp_path / "state" / "x.json"
    write_atomic(target, "one")
    write_atomic(target, "two", mode=0o600)
    assert target.read_text() == "two" and stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in target.parent.iterdir()] == ["x.json"], "no temp file left behind"


def test_writes_through_a_symlink(tmp_path):
    real = tmp_path / "real.json"
    real.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    write_atomic(link, "new")
    assert link.is_symlink() and real.read_text() == "new"


def test_a_fifo_is_written_in_place_not_replaced(tmp_path):
    """`--json /dev/null` once turned /dev/null into a regular file; a FIFO stands in for the device."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        write_atomic(fifo, "through the pipe")
        assert os.read(reader, 100) == b"through the pipe"
    finally:
        os.close(reader)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    write_atomic("/dev/null", "nothing")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)

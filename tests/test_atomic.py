"""The package's one atomic write (omnirl_core.workbook.atomic): whole or not at all, and errors name the file."""

from __future__ import annotations

import errno
import os
import stat

import pytest

from omnirl_core.workbook.atomic import atomic_write, temporary_path, write_text_atomic


def test_a_failed_write_keeps_the_old_file_names_it_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "record.json"
    write_text_atomic(path, "old\n")

    def half_then_full_disk(tmp):
        tmp.write_text("ha")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError, match="No space left on device") as err:
        atomic_write(path, half_then_full_disk)
    assert err.value.filename == str(path) and err.value.errno == errno.ENOSPC
    assert path.read_text() == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == ["record.json"]
    with pytest.raises(KeyboardInterrupt):  # any interruption: the temporary goes too
        atomic_write(path, lambda tmp: (tmp.write_text("x"), (_ for _ in ()).throw(KeyboardInterrupt())))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["record.json"]


def test_the_new_file_replaces_the_old_one_with_the_usual_mode(tmp_path):
    path = tmp_path / "a.txt"
    write_text_atomic(path, "one")
    write_text_atomic(path, "two", fsync=False)
    assert path.read_text() == "two"
    mask = os.umask(0o022)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask
    assert temporary_path(path).name == f".a.txt.{os.getpid()}.tmp"  # what remove_stale_temp_files clears
    seen = []
    atomic_write(path, lambda tmp: (seen.append(tmp.name), tmp.write_text("three")), tmp=tmp_path / ".tmp_a")
    assert seen == [".tmp_a"] and path.read_text() == "three"

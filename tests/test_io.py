"""Atomic writes: the destination holds the old or the new file, never a partial one."""

import os

import pytest

from lean.io import atomic_path, atomic_write_text


def test_atomic_write_replaces_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "sub" / "config.json"
    atomic_write_text(target, "first")
    atomic_write_text(target, "second")
    assert target.read_text() == "second"
    assert sorted(p.name for p in target.parent.iterdir()) == ["config.json"]


def test_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "model.tflite"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half-writ")
            raise RuntimeError("converter died")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.tflite"]


def test_written_file_has_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        target = tmp_path / "report.json"
        atomic_write_text(target, "{}")
    finally:
        os.umask(old)
    assert target.stat().st_mode & 0o777 == 0o644

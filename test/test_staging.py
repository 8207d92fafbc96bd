"""Staging folders: outputs appear whole or not at all, a killed writer's leftovers are removed by the next
writer, and replacing an output never leaves its path empty."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from fasthmr_model.errors import FastHMRError
from fasthmr_model.staging import STAGING_MARK, move_into_place, remove_abandoned, staging_folder


def dead_pid() -> int:
    """The pid of a process that has ended."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_killed_writers_staging_is_removed_by_the_next_and_a_live_ones_kept(tmp_path):
    target = tmp_path / "bundle"
    abandoned = tmp_path / f".bundle{STAGING_MARK}{dead_pid()}-abcd"
    (abandoned / "big").mkdir(parents=True)
    alive = tmp_path / f".bundle{STAGING_MARK}{os.getpid()}-ef01"
    alive.mkdir()
    other = tmp_path / f".other{STAGING_MARK}{dead_pid()}-abcd"
    other.mkdir()
    folder = staging_folder(target)
    assert not abandoned.exists() and alive.exists() and other.exists()
    assert folder.parent == tmp_path and folder.name.startswith(f".bundle{STAGING_MARK}{os.getpid()}-")
    assert remove_abandoned(tmp_path / "other") == [other]


def test_replacing_exchanges_the_outputs_and_refuses_without_overwrite(tmp_path):
    target = tmp_path / "bundle"
    first = staging_folder(target)
    (first / "manifest.json").write_text("old")
    move_into_place(first, target)
    second = staging_folder(target)
    (second / "manifest.json").write_text("new")
    with pytest.raises(FastHMRError, match="already exists"):
        move_into_place(second, target)
    assert (target / "manifest.json").read_text() == "old" and not second.exists()
    third = staging_folder(target)
    (third / "manifest.json").write_text("new")
    move_into_place(third, target, overwrite=True)
    assert (target / "manifest.json").read_text() == "new"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["bundle"]  # the old one is gone too


def test_an_interrupted_bag_leaves_nothing_at_its_path_and_the_next_writer_cleans_up(tmp_path):
    from fasthmr_ros.bags import BagWriter
    from std_msgs.msg import Header

    writer = BagWriter(tmp_path / "out")
    writer.write("/topic", "std_msgs/msg/Header", 1, Header(frame_id="x"))
    writer.close(keep=False)
    assert list(tmp_path.iterdir()) == []
    # A replay killed mid-way: its staging folder, owned by a dead process, stays until the next writer.
    killed = tmp_path / f".out{STAGING_MARK}{dead_pid()}-abcd"
    (killed / "out").mkdir(parents=True)
    with BagWriter(tmp_path / "out") as writer:
        writer.write("/topic", "std_msgs/msg/Header", 1, Header(frame_id="x"))
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out"]

"""Atomic outputs: nothing half-written, nothing replaced unless asked."""
import os

import pytest

from dgam_tf import io_utils
from dgam_tf.errors import UserError


def test_failed_block_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with io_utils.atomic_output_dir(str(tmp_path / "out")) as tmp:
            open(os.path.join(tmp, "part"), "w").close()
            raise RuntimeError("crash")
    assert os.listdir(tmp_path) == []


def test_folder_that_appears_meanwhile_is_not_replaced(tmp_path):
    target = tmp_path / "out"
    with pytest.raises(UserError, match="appeared while it was being written"):
        with io_utils.atomic_output_dir(str(target)) as tmp:
            open(os.path.join(tmp, "mine"), "w").close()
            target.mkdir()
            (target / "theirs").write_text("x")
    assert os.listdir(target) == ["theirs"]
    assert os.listdir(tmp_path) == ["out"]


def test_overwrite_replaces_and_json_is_written_whole(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old").write_text("x")
    with io_utils.atomic_output_dir(str(target), overwrite=True) as tmp:
        io_utils.atomic_write_json(os.path.join(tmp, "a.json"), {"k": [1, 2]})
    assert os.listdir(target) == ["a.json"]
    assert io_utils.read_json(str(target / "a.json")) == {"k": [1, 2]}
    assert sorted(os.listdir(tmp_path)) == ["out"]

"""Atomic outputs: nothing half-written, nothing replaced unless asked; a
--model_dir that cannot be written is refused before any work."""
import os

import pytest

from conftest import tiny_config, train
from dgam_tf import files
from dgam_tf.errors import UserError


def test_failed_block_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with files.atomic_output_dir(str(tmp_path / "out")) as tmp:
            open(os.path.join(tmp, "part"), "w").close()
            raise RuntimeError("crash")
    assert os.listdir(tmp_path) == []


def test_folder_that_appears_meanwhile_is_not_replaced(tmp_path):
    target = tmp_path / "out"
    with pytest.raises(UserError, match="appeared while it was being written"):
        with files.atomic_output_dir(str(target)) as tmp:
            open(os.path.join(tmp, "mine"), "w").close()
            target.mkdir()
            (target / "theirs").write_text("x")
    assert os.listdir(target) == ["theirs"]
    assert os.listdir(tmp_path) == ["out"]


def test_overwrite_replaces_and_json_is_written_whole(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old").write_text("x")
    with files.atomic_output_dir(str(target), overwrite=True) as tmp:
        files.atomic_write_json(os.path.join(tmp, "a.json"), {"k": [1, 2]})
    assert os.listdir(target) == ["a.json"]
    assert files.read_json(str(target / "a.json")) == {"k": [1, 2]}
    assert sorted(os.listdir(tmp_path)) == ["out"]


@pytest.fixture(params=[0o022, 0o002, 0o077])
def umask(request):
    """Runs the test under each umask, restoring the previous one after."""
    previous = os.umask(request.param)
    yield request.param
    os.umask(previous)


def _mode(path):
    return os.stat(path).st_mode & 0o7777


def test_outputs_get_the_modes_of_a_plain_open_and_mkdir(tmp_path, umask):
    # What a plain open() / mkdir() gives under this umask, side by side.
    open(tmp_path / "plain.json", "w").close()
    (tmp_path / "plain_dir").mkdir()
    assert _mode(tmp_path / "plain.json") == 0o666 & ~umask
    with files.atomic_output_dir(str(tmp_path / "out")) as tmp:
        files.atomic_write_json(os.path.join(tmp, "inner.json"), {})
    files.atomic_write_json(str(tmp_path / "metrics.json"), {})
    assert _mode(tmp_path / "out") == _mode(tmp_path / "plain_dir") == 0o777 & ~umask
    for path in (tmp_path / "out" / "inner.json", tmp_path / "metrics.json"):
        assert _mode(path) == _mode(tmp_path / "plain.json")


def test_unwritable_model_dir_is_refused_before_any_work(tiny_data_dir, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(UserError, match="cannot write to --model_dir"):
        train(tiny_config(tiny_data_dir, blocker / "run"))



def test_a_pair_of_files_is_written_as_a_pair(tmp_path, monkeypatch):
    (tmp_path / "old.json").write_text("old")
    folder = tmp_path / "metrics"
    folder.mkdir()
    # The second path is a folder: refused before anything is renamed.
    with pytest.raises(UserError, match=f"cannot write {folder}: it is a folder"):
        files.atomic_write_files({str(tmp_path / "old.json"): b"new", str(folder): b"{}"})
    # Ctrl-C while the second file is written.
    stage = files._stage

    def interrupted(path, data):
        if path.endswith("b.json"):
            raise KeyboardInterrupt
        return stage(path, data)
    monkeypatch.setattr(files, "_stage", interrupted)
    with pytest.raises(KeyboardInterrupt):
        files.atomic_write_files({str(tmp_path / "old.json"): b"new",
                                  str(tmp_path / "b.json"): b"b"})
    assert sorted(os.listdir(tmp_path)) == ["metrics", "old.json"]   # no temporary left
    assert (tmp_path / "old.json").read_text() == "old"
    monkeypatch.setattr(files, "_stage", stage)
    files.atomic_write_files({str(tmp_path / "old.json"): b"new", str(tmp_path / "b.json"): b"b"})
    assert [(tmp_path / n).read_text() for n in ("old.json", "b.json")] == ["new", "b"]


@pytest.mark.parametrize("name, problem", [
    ("metrics", "cannot write {p}: it is a folder"),
    ("afile/m.json", "cannot write {p}: {tmp}/afile is a file, not a folder")])
def test_an_output_file_that_cannot_be_written_is_named_before_the_work(tmp_path, name,
                                                                        problem):
    (tmp_path / "metrics").mkdir()
    (tmp_path / "afile").write_text("")
    path = str(tmp_path / name)
    with pytest.raises(UserError, match=problem.format(p=path, tmp=tmp_path)):
        files.check_output_file(path)
    files.check_output_file(str(tmp_path / "new" / "m.json"))   # a new folder is fine

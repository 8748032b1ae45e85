"""The model-dir lock: one training run per --model_dir; only a multi-worker
run's chief locks."""
import pytest

from dgam_tf.errors import UserError
from dgam_tf.training import lock


def test_second_run_on_a_held_model_dir_is_refused(tmp_path):
    assert not lock.is_held(str(tmp_path))
    with lock.model_dir_lock(str(tmp_path)):
        assert lock.is_held(str(tmp_path))
        with pytest.raises(UserError, match="another training run holds"):
            with lock.model_dir_lock(str(tmp_path)):
                pass
    assert not lock.is_held(str(tmp_path))
    with lock.model_dir_lock(str(tmp_path)):   # released after the first
        pass


@pytest.mark.parametrize("tf_config, locks", [
    (None, True),
    ('{"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 0}}', True),
    ('{"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 1}}', False),
    ('{"cluster": {"chief": ["a:1"], "worker": ["b:1"]}, "task": {"type": "chief", '
     '"index": 0}}', True)])
def test_only_the_chief_of_a_multi_worker_run_locks(tmp_path, monkeypatch, tf_config, locks):
    if tf_config:
        monkeypatch.setenv("TF_CONFIG", tf_config)
    with lock.model_dir_lock(str(tmp_path), multi_worker=True):
        assert (tmp_path / lock.LOCK_FILE).exists() == locks

"""The shipped ground truth (dgam_tf.data.annotations) and the packaging that
carries it: a wheel built from setup.py holds it, the `dgam-tf` console
script and the `profile` extra."""
import json
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

from dgam_tf.data import annotations
from dgam_tf.errors import UserError
from dgam_tf.evaluation import activitynet_json

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# Videos and instances of the release's files (THUMOS14: the 213 annotated
# test videos less the 3 the field leaves out).
@pytest.mark.parametrize("name, videos, instances, classes, first, last", [
    ("thumos14", 210, 3311, 20, "BaseballPitch", "VolleyballSpiking"),
    ("activitynet12", 2383, 3582, 100, "Archery", "Zumba")])
def test_shipped_ground_truth(name, videos, instances, classes, first, last):
    path = annotations.path(name)
    assert os.path.dirname(path) == os.path.dirname(annotations.__file__)
    with open(path) as f:
        database = json.load(f)["database"]
    labels = [a["label"] for entry in database.values() for a in entry["annotations"]]
    assert (len(database), len(labels)) == (videos, instances)
    names = annotations.class_names(name)
    assert names == sorted(set(labels)) and len(names) == classes
    assert (names[0], names[-1]) == (first, last)
    with open(path) as f:
        truth = activitynet_json.parse_ground_truth(json.load(f), "test", path)
    assert len(truth.video_ids) == videos and len(truth.label) == len(labels)


def test_unknown_ground_truth_name():
    with pytest.raises(UserError, match="'thumos15'.*thumos14, activitynet12"):
        annotations.path("thumos15")


def test_wheel_carries_the_annotations_the_console_script_and_the_extra(tmp_path):
    # Built from a copy, so the build leaves nothing in the working tree.
    src = tmp_path / "src"
    shutil.copytree(os.path.join(ROOT, "dgam_tf"), src / "dgam_tf",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(os.path.join(ROOT, "setup.py"), src)
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps",
                    "--no-build-isolation", "-q", "-w", str(tmp_path / "wheel")],
                   check=True, capture_output=True, timeout=120)
    [wheel] = os.listdir(tmp_path / "wheel")
    with zipfile.ZipFile(tmp_path / "wheel" / wheel) as z:
        names = z.namelist()
        for name in annotations.FILES.values():
            assert f"dgam_tf/data/annotations/{name}" in names
        [entry_points] = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        assert "dgam-tf = dgam_tf.main:console_script" in z.read(entry_points).decode()
        [metadata] = [n for n in names if n.endswith(".dist-info/METADATA")]
        assert ('Requires-Dist: tensorboard-plugin-profile; extra == "profile"'
                in z.read(metadata).decode())

"""The standard ground truth, shipped with the package (ActivityNet JSON):

* "thumos14": THUMOS14 test, the 210 videos with temporal annotations of
  the 20 localization classes;
* "activitynet12": ActivityNet 1.2 validation (2,383 videos, 100 classes),
  every video under subset "test", as the release evaluates it.

Both are the ground truth files of the DGAM release. `path(name)` gives the
file (e.g. for `--gt_json`), `class_names(name)` the class order of the
release's label matrices: the ground-truth labels in Python's string order.
"""
import os

from dgam_tf import files
from dgam_tf.errors import UserError

FILES = {"thumos14": "thumos14_test_gt.json",
         "activitynet12": "activitynet12_test_gt.json"}


def path(name):
    """The ground-truth JSON of "thumos14" or "activitynet12".

    Raises:
      UserError: another name.
    """
    if name not in FILES:
        raise UserError(f"no shipped ground truth for {name!r}; there is: "
                        f"{', '.join(FILES)}")
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), FILES[name])


def class_names(name):
    """The class names of "thumos14" (20) or "activitynet12" (100) in the
    order of the release's label matrices (sorted)."""
    database = files.read_json(path(name), "shipped ground truth")["database"]
    return sorted({a["label"] for entry in database.values()
                   for a in entry["annotations"]})

"""The typed settings (dgam_tf/config.py) against the flags and flagfiles, and
the package's shape: flags stay in the entry point, the import graph has no
cycle, export loads neither training nor plotting."""
import ast
import dataclasses
import json
import os
import subprocess
import sys

import pytest

from dgam_tf import config as config_lib
from dgam_tf import flags as dgam_flags

PACKAGE = os.path.join(os.path.dirname(__file__), os.pardir, "dgam_tf")
FLAGS_DIR = os.path.join(os.path.dirname(__file__), os.pardir, "flags")
# The entry point and the flag definitions: the only modules that see absl flags.
ENTRY = {"dgam_tf.main", "dgam_tf.flags"}


def modules():
    """{module name: path} of every module of the package."""
    out = {}
    for root, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(root, name)
                parts = os.path.relpath(path, os.path.dirname(PACKAGE))[:-3].split(os.sep)
                out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imports(path, known):
    """Names imported anywhere in a file (function bodies too), each resolved
    to a module of `known` where it names one (`from a import b`: a.b if
    that is a module, else a)."""
    names = set()
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                names.add(sub if sub in known else node.module)
    return names


def test_flag_defaults_are_the_config_defaults():
    assert dgam_flags.parse_args() == config_lib.Config()
    assert dgam_flags.parse_args([f"--flagfile={os.path.join(FLAGS_DIR, 'synthetic.cfg')}"]) \
        == config_lib.Config()


@pytest.mark.parametrize("dataset", ["thumos14", "activitynet12"])
def test_published_localization_and_thresholds_are_those_of_the_flagfiles(dataset):
    cfg = dgam_flags.parse_args([f"--flagfile={os.path.join(FLAGS_DIR, dataset + '.cfg')}"])
    assert cfg.localization == config_lib.LocalizationConfig.for_dataset(dataset)
    assert cfg.evaluation.tiou_thresholds == config_lib.DATASET_TIOU_THRESHOLDS.get(
        dataset, config_lib.THUMOS14_TIOU_THRESHOLDS)
    assert cfg.data.dataset == cfg.model.dataset == dataset


def test_model_json_round_trips_and_a_file_from_before_still_reads():
    model = config_lib.ModelConfig(streams=("flow",), latent_dim=4, feature_dim=16,
                                   class_names=("a", "b"))
    obj = json.loads(json.dumps(model.to_json()))
    assert config_lib.ModelConfig.from_json(obj) == model and model.num_classes == 2
    # model.json as dgam-tf wrote it before the typed configs (key for key).
    before = {"streams": ["rgb", "flow"], "attention_hidden": 8, "cvae_hidden": 8,
              "latent_dim": 4, "gam": True, "feature_dim": 16,
              "class_names": ["action_00", "action_01"], "dataset": "synthetic"}
    assert config_lib.ModelConfig.from_json(before).to_json() == before
    assert list(config_lib.ModelConfig().to_json()) == list(before)


def test_configs_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        config_lib.TrainConfig().epochs = 3


def test_only_the_entry_point_sees_absl_flags():
    known = modules()
    for name, path in known.items():
        if name in ENTRY:
            continue
        seen = imports(path, known)
        assert not {"absl.flags", "absl", "dgam_tf.flags"} & seen, name


def test_the_package_import_graph_has_no_cycle():
    known = modules()
    graph = {name: sorted(m for m in imports(path, known) if m in known and m != name)
             for name, path in known.items()}
    state = {}

    def visit(name, stack):
        state[name] = "open"
        for dep in graph[name]:
            if state.get(dep) == "open":
                cycle = stack[stack.index(dep):] + [dep]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep, stack + [dep])
        state[name] = "done"

    for name in graph:
        if name not in state:
            visit(name, [name])
    # The graph is the package's: it found the layers it should have.
    assert "dgam_tf.models.model_dir" in graph["dgam_tf.localization.inference"]
    assert "dgam_tf.localization.inference" in graph["dgam_tf.evaluation.evaluate"]
    assert "dgam_tf.evaluation.evaluate" not in graph["dgam_tf.training.trainer"]
    # Models are loaded beside the models and read through inference only;
    # plots draw without evaluation or training; the exporter and the
    # serving client share export/signatures.py.
    assert not [m for m in graph["dgam_tf.evaluation.evaluate"] if m.startswith("dgam_tf.models")]
    assert not [m for m in graph["dgam_tf.visualization.plots"]
                if m.startswith(("dgam_tf.evaluation", "dgam_tf.training"))]
    assert "dgam_tf.serving.client" not in graph["dgam_tf.export.saved_model"]
    for name in ("dgam_tf.training.trainer", "dgam_tf.training.controller",
                 "dgam_tf.training.actions"):
        assert not [m for m in graph[name]
                    if m.startswith(("dgam_tf.evaluation", "dgam_tf.visualization"))], name


def test_export_loads_neither_training_nor_synthetic_data_nor_matplotlib():
    # Keras imports matplotlib by itself when it is installed; blocking it
    # shows export does not need it.
    code = ("import sys, json; sys.modules['matplotlib'] = None; "
            "import dgam_tf.export.saved_model; print(json.dumps(sorted(sys.modules)))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "dgam_tf.models.model_dir" in loaded
    unwanted = [m for m in loaded if m.startswith(("dgam_tf.training", "dgam_tf.visualization",
                                                   "dgam_tf.evaluation.evaluate"))
                or m == "dgam_tf.data.synthetic"]
    assert unwanted == []

"""The command line, `python -m dgam_tf.main ARGS`: --mode=eval of a trained
model, eval_detections on hand-made files, visualize, and user errors (exit
status 1, one "error:" line naming the culprit, no traceback).

Each run of the entry point would spend seconds importing TensorFlow, so the
cases share two subprocesses, side by side: each imports TensorFlow once,
then per case forks a child that runs the entry point exactly as
`python -m dgam_tf.main ARGS` does (`runpy` as `__main__`, the same
sys.argv, uncaught exceptions and SystemExit handled as the interpreter
handles them), with its own stdout, stderr and exit status. The modes that
need no TensorFlow run in a third subprocess that does not import it, which
tells whether they do.
"""
import collections
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from conftest import read_videos, tfrecord_ends
from dgam_tf import flag_parsing, flags as dgam_flags
from dgam_tf import main
from dgam_tf.data import records
from dgam_tf.models import model_dir as model_dir_lib

TINY_SAMPLING = ["--test_min_segments=4", "--test_max_segments=40"]
# (mode, flag, URL) whose scheme TensorFlow 2.21 has no filesystem for.
UNKNOWN_SCHEMES = (
    ("train", "data_dir", "hdfs://nn/data"), ("eval", "model_dir", "s3://bucket/runs/x"),
    ("visualize", "model_dir", "s3://bucket/runs/x"),
    ("export", "export_dir", "s3://bucket/serving"), ("synth", "data_dir", "s3://b/d"),
    ("convert", "source_dir", "hdfs://nn/release"),
    ("eval_detections", "gt_json", "s3://bucket/gt.json"))
CliResult = collections.namedtuple("CliResult", "returncode stdout stderr imported_tensorflow")

_FORKING_RUNNER = r'''
import json, os, runpy, sys, traceback
if sys.argv[2] == "import_tf":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")   # as dgam_tf.main sets it
    import tensorflow, tensorflow_probability  # noqa: F401 (once for all cases)

codes = []
for args, out_path, err_path in json.loads(sys.argv[1]):
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        for fd, path in ((1, out_path), (2, err_path)):
            os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
        sys.argv = ["-m"] + args  # run_module sets argv[0], as -m does
        code = 0
        try:
            runpy.run_module("dgam_tf.main", run_name="__main__", alter_sys=True)
        except SystemExit as e:  # as the interpreter handles it
            if isinstance(e.code, int) or e.code is None:
                code = e.code or 0
            else:
                print(e.code, file=sys.stderr)
                code = 1
        except BaseException:  # an uncaught exception, as the interpreter reports it
            traceback.print_exc()
            code = 1
        with open(out_path + ".tf", "w") as f:
            f.write(json.dumps("tensorflow" in sys.modules))
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    codes.append(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
print(json.dumps(codes), flush=True)
os._exit(0)  # skips seconds of TensorFlow teardown at interpreter exit
'''


def run_cli(groups, tmp_path):
    """{name: CliResult} of `python -m dgam_tf.main ARGS` for each {name:
    ARGS} of each (cases, import_tf) group: a group's cases run in one
    subprocess (see the module docstring), which imports TensorFlow first if
    `import_tf`; the groups' subprocesses run side by side."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # conftest's
    runs = []
    for cases, import_tf in groups:
        plan = [(args, str(tmp_path / f"{name}.out"), str(tmp_path / f"{name}.err"))
                for name, args in cases.items()]
        runs.append((cases, plan, subprocess.Popen(
            [sys.executable, "-c", _FORKING_RUNNER, json.dumps(plan),
             "import_tf" if import_tf else "no_tf"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)))
    results = {}
    for cases, plan, proc in runs:
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr
        codes = json.loads(stdout.splitlines()[-1])
        for name, code, (_, out_path, err_path) in zip(cases, codes, plan):
            with open(out_path) as out, open(err_path) as err, open(out_path + ".tf") as tf:
                results[name] = CliResult(code, out.read(), err.read(), json.loads(tf.read()))
    return results


def error_lines(result):
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def write_json(path, obj):
    path.write_text(json.dumps(obj))
    return str(path)


def ground_truth(instances):
    """ActivityNet ground truth from (video, subset, label, start, end)."""
    database = {}
    for video, subset, label, start, end in instances:
        database.setdefault(video, {"subset": subset, "annotations": []})[
            "annotations"].append({"label": label, "segment": [start, end]})
    return {"database": database}


def results(predictions):
    """ActivityNet result object from (video, label, score, start, end)."""
    out = {}
    for video, label, score, start, end in predictions:
        out.setdefault(video, []).append({"label": label, "score": score,
                                          "segment": [start, end]})
    return {"version": "test", "results": out, "external_data": {}}


@pytest.fixture(scope="module")
def cli(tiny_data_dir, tiny_model_dir, tmp_path_factory):
    """(tmp folder, {case: CliResult}) of every case below, from three subprocesses."""
    tmp = tmp_path_factory.mktemp("cli")
    gt_json = write_json(tmp / "gt.json", ground_truth([
        ("v1", "test", "A", 0, 10), ("v1", "test", "B", 20, 30),
        ("v2", "test", "A", 5, 15), ("v3", "training", "A", 0, 5)]))
    untrained = tmp / "untrained"  # settings, but no checkpoint
    untrained.mkdir()
    (tmp / "a_folder").mkdir()
    shutil.copy(os.path.join(tiny_model_dir, model_dir_lib.SETTINGS_FILE), untrained)
    eval_dir = shutil.copytree(tiny_model_dir, tmp / "eval_model")
    model_dir = shutil.copytree(tiny_model_dir, tmp / "model")
    data_args = [f"--data_dir={tiny_data_dir}", *TINY_SAMPLING]
    # Copies of the data whose first train shard lost its last record: cut at
    # the record boundary (reads cleanly, one video short), or a flipped byte.
    shard = records.load_info(tiny_data_dir).splits["train"]["files"][0]
    raw = open(os.path.join(tiny_data_dir, shard), "rb").read()
    last_start = ([0] + tfrecord_ends(raw))[-2]
    cut_data, flipped_data = (shutil.copytree(tiny_data_dir, tmp / name)
                              for name in ("cut_data", "flipped_data"))
    with open(os.path.join(cut_data, shard), "wb") as f:
        f.write(raw[:last_start])
    with open(os.path.join(flipped_data, shard), "wb") as f:
        f.write(raw[:last_start + 20] + bytes([raw[last_start + 20] ^ 1]) + raw[last_start + 21:])
    train_tiny = ["--mode=train", "--epochs=1", "--batch_size=4", "--num_segments=24",
                  "--ramp_epochs=1", "--attention_hidden=8", "--cvae_hidden=8",
                  "--latent_dim=4", "--eval_every=0", "--noprogress", *TINY_SAMPLING]
    diverging = train_tiny + ["--learning_rate=1e30", f"--data_dir={tiny_data_dir}",
                              f"--model_dir={tmp / 'div1'}"]
    predictions_json = write_json(tmp / "predictions.json", results([
        ("v1", "A", 0.9, 0, 10),     # tIoU 1
        ("v1", "A", 0.8, 30, 40),    # tIoU 0
        ("v2", "A", 0.7, 5, 12),     # tIoU 0.7
        ("v1", "B", 0.6, 22, 30)]))  # tIoU 0.8
    numpy_only = {   # modes that must not import TensorFlow
        "help": ["--help"],
        "helpshort": ["--mode=eval", "--helpshort"],
        "flag_typo": ["--mode=eval", "--epoch=3"],
        "flagfile_typo": [f"--flagfile={tmp / 'thumos.cfg'}"],
        "eval_detections": [
            "--mode=eval_detections", f"--gt_json={gt_json}", "--tiou_thresholds=0.5,0.75",
            f"--output_metrics_json={tmp / 'out' / 'metrics.json'}",
            f"--predictions_json={predictions_json}"],
        "eval_detections_anet": [
            "--mode=eval_detections", "--dataset=activitynet12", f"--gt_json={gt_json}",
            f"--output_metrics_json={tmp / 'anet.json'}", f"--predictions_json={predictions_json}"],
        "missing_predictions": ["--mode=eval_detections", f"--gt_json={gt_json}",
                                f"--predictions_json={tmp / 'no_such.json'}"],
        # v2 has no predictions, v9 is not in the test subset (v3 is training).
        "partial_predictions": [
            "--mode=eval_detections", f"--gt_json={gt_json}", "--tiou_thresholds=0.5",
            f"--output_metrics_json={tmp / 'partial.json'}",
            "--predictions_json=" + write_json(tmp / "partial_predictions.json", results(
                [("v1", "A", 0.9, 0, 10), ("v9", "A", 0.5, 0, 1), ("v9", "B", 0.4, 0, 1)]))],
        "subset_without_gt": ["--mode=eval_detections", f"--gt_json={gt_json}",
                              "--subset=validation", f"--predictions_json={predictions_json}"],
        "metrics_is_a_folder": ["--mode=eval_detections", f"--gt_json={gt_json}",
                                f"--predictions_json={predictions_json}",
                                f"--output_metrics_json={tmp}"],
        "unknown_label": ["--mode=eval_detections", f"--gt_json={gt_json}",
                          "--predictions_json=" + write_json(tmp / "unknown.json", results(
                              [("v1", "A", 0.9, 0, 10), ("v2", "Zebra", 0.5, 0, 1)]))],
    }
    cases = {
        "eval": ["--mode=eval", f"--model_dir={eval_dir}", "--latent_dim=5", *data_args],
        "visualize": ["--mode=visualize", "--num_plots=2", f"--model_dir={model_dir}",
                      *data_args],
        "eval_metrics_is_a_folder": ["--mode=eval", f"--model_dir={model_dir}", *data_args,
                                     f"--output_metrics_json={tmp / 'a_folder'}"],
        "missing_data_dir": ["--mode=eval", f"--model_dir={model_dir}",
                             f"--data_dir={tmp / 'no_such_data'}"],
        "no_checkpoint": ["--mode=eval", f"--model_dir={untrained}",
                          f"--data_dir={tiny_data_dir}"],
        "unknown_stream": ["--mode=eval", "--streams=rgb,depth", f"--model_dir={model_dir}",
                           *data_args],
        "zero_segments": ["--mode=train", "--num_segments=0", f"--model_dir={tmp / 'new'}",
                          f"--data_dir={tiny_data_dir}"],
        # A learning rate that blows the weights up: the step's finiteness
        # check stops it; --debug_numerics names the first op that overflowed.
        "diverging": diverging,
        "diverging_debug": diverging[:-1] + ["--debug_numerics", f"--model_dir={tmp / 'div2'}"],
        "cut_shard": train_tiny + [f"--data_dir={cut_data}", f"--model_dir={tmp / 'cut'}"],
        "flipped_byte": train_tiny + [f"--data_dir={flipped_data}",
                                      f"--model_dir={tmp / 'flip1'}"],
        "skip_bad_records": train_tiny + [f"--data_dir={flipped_data}", "--skip_bad_records",
                                          f"--model_dir={tmp / 'flip2'}"],
    }
    # A scheme TensorFlow has no filesystem for, in every mode, in any path flag.
    cases.update({f"scheme_{mode}": [f"--mode={mode}", f"--{flag}={url}"]
                  for mode, flag, url in UNKNOWN_SCHEMES})
    # Two TensorFlow runners (the trainings split between them) and the
    # numpy-only one.
    names = list(cases)
    halves = [{n: cases[n] for n in names[::2]}, {n: cases[n] for n in names[1::2]}]
    return tmp, run_cli([(halves[0], True), (halves[1], True), (numpy_only, False)], tmp)


def test_eval_prints_the_table_and_writes_metrics_and_detections(cli, tiny_data_dir,
                                                                 tiny_info):
    tmp, runs = cli
    result = runs["eval"]
    assert result.returncode == 0, result.stderr
    # No TensorFlow start-up lines: only the warning about the model flag
    # that the trained model (latent_dim=4) overrides.
    assert result.stderr.splitlines() == [
        f"warning: --latent_dim=5 is ignored: the model in {tmp}/eval_model has latent_dim=4"]
    model_dir = tmp / "eval_model"
    written = os.listdir(model_dir)
    assert {"metrics.json", "detections_test.json"} <= set(written)
    assert not [f for f in written if ".tmp-" in f]   # atomic writes leave no temporary
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert {"tiou_thresholds", "mAP", "average_mAP", "ap_per_class"} <= metrics.keys()
    assert metrics["tiou_thresholds"] == pytest.approx([0.1 * i for i in range(1, 10)])
    assert sorted(metrics["ap_per_class"]) == ["action_01", "action_02"]  # GT classes
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"Detection mAP (%) on {tiny_info.name}, test split")
    assert lines[1].split() == ["tIoU"] + [f"{t:.2f}" for t in metrics["tiou_thresholds"]]
    assert lines[4].split() == ["fused"] + [f"{100 * m:.2f}" for m in metrics["mAP"]]
    detections = json.loads((model_dir / "detections_test.json").read_text())
    assert sorted(detections["results"]) == sorted(
        v.video_id for v in read_videos(tiny_data_dir, "test"))


def test_eval_detections_gives_the_hand_computed_map(cli):
    tmp, runs = cli
    result = runs["eval_detections"]
    assert result.returncode == 0, result.stderr
    assert not result.imported_tensorflow
    metrics = json.loads((tmp / "out" / "metrics.json").read_text())
    # Class A ranks TP (v1), FP, then v2 at tIoU 0.7 (2 instances): at 0.5
    # precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1 gives AP 1/2 + 1/2 * 2/3;
    # at 0.75 only the first hits: AP 1/2. Class B hits at tIoU 0.8: AP 1.
    assert metrics["tiou_thresholds"] == [0.5, 0.75]
    assert metrics["ap_per_class"] == {"A": pytest.approx([5 / 6, 1 / 2]), "B": [1.0, 1.0]}
    assert metrics["mAP"] == pytest.approx([(5 / 6 + 1) / 2, (1 / 2 + 1) / 2])
    assert metrics["average_mAP"] == pytest.approx(5 / 6)
    assert "mAP    91.67  75.00" in result.stdout
    # Without --tiou_thresholds, --dataset's: ActivityNet's 0.5:0.05:0.95. Only
    # the tIoU-0.8 and tIoU-1 hits count from 0.75 on, then tIoU 1 alone.
    anet = json.loads((tmp / "anet.json").read_text())
    assert anet["tiou_thresholds"] == [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95]
    assert anet["mAP"] == pytest.approx([11 / 12] * 5 + [3 / 4] * 2 + [1 / 4] * 3)
    assert not runs["eval_detections_anet"].imported_tensorflow


def test_eval_detections_warns_about_videos_it_cannot_score_and_says_what_it_wrote(cli):
    tmp, runs = cli
    result = runs["partial_predictions"]
    assert result.returncode == 0, result.stderr
    where = f"subset 'test' of {tmp}/gt.json"
    assert result.stderr.splitlines() == [
        f"warning: the predictions cover 1 of the 2 videos of {where}; the instances of the "
        "other 1 (e.g. 'v2') count as missed",
        f"warning: 2 predictions name 1 videos that {where} does not have (e.g. 'v9'); they "
        "count as false positives"]
    assert result.stdout.splitlines()[-1] == f"Wrote {tmp}/partial.json"
    # A: v1 found (the higher-scored), v2 missed: AP 1/2; B (v1) missed: 0.
    assert json.loads((tmp / "partial.json").read_text())["mAP"] == pytest.approx([1 / 4])


def test_an_evaluation_whose_metrics_cannot_be_written_writes_nothing(cli):
    tmp, runs = cli
    assert runs["eval_metrics_is_a_folder"].stdout == ""   # refused before the evaluation
    assert os.listdir(tmp / "a_folder") == []
    assert not [f for f in os.listdir(tmp) if "a_folder_" in f or f.startswith(".a_folder")]


def test_help_lists_the_flags_by_group_without_importing_tensorflow(cli):
    _, runs = cli
    help_text = runs["help"].stdout
    assert runs["help"].returncode == 0 and runs["helpshort"].stdout == help_text
    headings = [line for line in help_text.splitlines() if line.endswith(" flags:")]
    assert headings == [f"{group} flags:" for group in (
        "general", "data", "model", "training", "localization", "evaluation", "export",
        "feature extraction", "plots", "study", "detection")]
    for line in ("  --epochs=30", "  --[no]gam (default: true)", "  --data_dir",
                 "  --mode=train\n      <train|eval|eval_detections|synth|convert|export|"
                 "visualize|extract|export_i3d|study|detect>:", "  --[no]tf_logs (default: false)"):
        assert "\n" + line in help_text, line
    assert "UserError" not in help_text
    typo = runs["flag_typo"]
    assert typo.returncode == 1 and typo.stdout == ""
    assert typo.stderr.splitlines() == ["error: Unknown command line flag 'epoch'. "
                                        "Did you mean: epochs ? (see --help)"]
    assert not any(runs[case].imported_tensorflow for case in ("help", "helpshort",
                                                               "flag_typo"))


def test_visualize_writes_pngs(cli, tiny_data_dir):
    tmp, runs = cli
    result = runs["visualize"]
    assert result.returncode == 0, result.stderr
    first = [v.video_id for v in read_videos(tiny_data_dir, "test")][:2]
    expected = [str(tmp / "model" / "plots" / f"{v}.png") for v in first]
    assert result.stdout.split() == expected
    for path in expected:
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("case, culprit", [
    ("missing_data_dir", "data folder not found: {tmp}/no_such_data"),
    ("no_checkpoint", "no latest checkpoint in {tmp}/untrained"),
    ("unknown_stream", "--streams must be a non-empty subset of rgb,flow, got rgb,depth"),
    ("zero_segments", "--num_segments must be at least 1, got 0"),
    ("missing_predictions", "{tmp}/no_such.json"),
    ("diverging", "non-finite loss or gradient in stream "),
    ("cut_shard", "split 'train' of {tmp}/cut_data holds fewer videos than the 8 its "
                  "dataset.json declares"),
    ("flipped_byte", "corrupt record in {tmp}/flipped_data/train-00000-of-00002.tfrecord, "
                     "record 3: its bytes are damaged (the checksum of the record at byte "),
    ("diverging_debug", "non-finite value in stream "),
    ("unknown_label", "label 'Zebra' is not a class of the ground truth"),
    ("flagfile_typo", "error: Unable to open flagfile: [Errno 2] No such file or directory: "
                      "'{tmp}/thumos.cfg' (see --help)"),
    ("subset_without_gt", "{tmp}/gt.json has no annotated video in subset 'validation'; its "
                          "subsets are ['test', 'training']"),
    ("metrics_is_a_folder", "cannot write {tmp}: it is a folder"),
    ("eval_metrics_is_a_folder", "cannot write {tmp}/a_folder: it is a folder"),
])
def test_user_error_is_one_line_without_traceback(cli, case, culprit):
    tmp, runs = cli
    result = runs[case]
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = error_lines(result)
    assert len(lines) == 1, result.stderr
    assert culprit.format(tmp=tmp) in lines[0]


@pytest.mark.parametrize("mode, flag, url", UNKNOWN_SCHEMES)
def test_a_filesystem_tensorflow_lacks_is_one_line_in_every_mode(cli, mode, flag, url):
    import tensorflow as tf
    result = cli[1][f"scheme_{mode}"]
    scheme = url.split(":")[0]
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        f"error: --{flag}={url}: TensorFlow {tf.__version__} has no {scheme}:// filesystem "
        f"(only file://, gs://, ram:// and local paths); {scheme}:// needs tensorflow-io in a "
        "release built for this TensorFlow: pip install tensorflow-io (docs/cloud.md)"]


def test_debug_numerics_names_the_op_and_our_source_line(cli):
    _, runs = cli
    line = error_lines(runs["diverging_debug"])[0]
    assert re.search(r"stage \d, epoch \d, step \d+, from op (rgb|flow)/\S+ \(\w+\) created at "
                     r"\S*dgam_tf/\S+\.py:\d+ \(\w+\): training stopped", line), line


def test_skip_bad_records_trains_on_the_good_videos_and_says_so(cli):
    tmp, runs = cli
    result = runs["skip_bad_records"]
    assert result.returncode == 0, result.stderr
    assert ("--skip_bad_records: split 'train' keeps 7 of the 8 videos dataset.json declares; "
            f"1 bad part(s), first: {tmp}/flipped_data/train-00000-of-00002.tfrecord, "
            "record 3: its bytes are damaged (the checksum of the record at byte ") in result.stdout
    assert "(the rest of the file is skipped)" in result.stdout
    assert "retracing" not in result.stderr


def test_model_flags_the_user_set_that_the_model_does_not_have_are_warned_about(
        tiny_model_dir, capsys):
    # The tiny model: attention_hidden=8, latent_dim=4, gam=true. An unset
    # flag (cvae_hidden: default 128, model 8) is no one's mistake.
    fv = dgam_flags.flag_values(["--latent_dim=5", "--nogam", "--attention_hidden=8",
                                 "--streams=rgb", "--mode=eval"], model_dir=tiny_model_dir)
    main.warn_ignored_model_flags(fv, flag_parsing.parse(fv))
    assert capsys.readouterr().err.splitlines() == [
        f"warning: --latent_dim=5 is ignored: the model in {tiny_model_dir} has latent_dim=4",
        f"warning: --gam=false is ignored: the model in {tiny_model_dir} has gam=true"]


@pytest.mark.parametrize("mode, leaves", [
    ("train", "the last checkpoint is kept, and the same command resumes from it"),
    ("eval", "no metrics or detections were written (earlier ones are kept)"),
    ("eval_detections", "no metrics were written"),
    ("visualize", "the plots already written are kept"),
    ("export", "no SavedModel version was written"),
    ("convert", "no dataset was written (--data_dir appears only when complete)"),
    ("synth", "no dataset was written (--data_dir appears only when complete)")])
def test_ctrl_c_says_what_the_mode_leaves(mode, leaves, monkeypatch, capsys):
    def interrupted(fv):
        raise KeyboardInterrupt
    monkeypatch.setattr(main, "run", interrupted)
    main.FLAGS(["dgam_tf", f"--mode={mode}"])
    try:
        with pytest.raises(SystemExit) as exit_status:
            main.main(["dgam_tf"])
    finally:
        main.FLAGS.unparse_flags()
    assert exit_status.value.code == 130
    assert capsys.readouterr().err == f"interrupted; {leaves}\n"

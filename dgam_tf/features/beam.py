"""--mode=extract on Apache Beam: each video's features on any Beam runner.

    python -m dgam_tf.features.beam --video_dir=V --data_dir=D \\
        --i3d_rgb_checkpoint=C1 --i3d_flow_checkpoint=C2 [extract flags] \\
        --runner=DirectRunner [--direct_num_workers=4 ...]
    (or DataflowRunner / FlinkRunner / SparkRunner and their pipeline options)

The extract flags are --mode=extract's (docs/features.md); every other
argument is a Beam pipeline option. The videos are the Beam elements: a
worker loads the networks once (DoFn.setup) and runs each video through
pipeline.extract, writing its features (or a `.bad` note) to the work
folder, which must be reachable by every worker and this launcher (a bucket
on a cluster). When the pipeline has run, this launcher writes the records
with extract.finish, as --mode=extract does: the same work folder, the same
files, so the two give the same records, and a rerun resumes.
"""
import argparse
import dataclasses
import os
import sys

from dgam_tf import config as config_lib, files, mode_config
from dgam_tf.errors import UserError
from dgam_tf.features import extract

try:
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions
except ImportError:  # The `beam` extra is optional; `run` says how to install it.
    beam = None

BAD_SUFFIX = ".bad"


def bad_file(work, video_id):
    return os.path.join(work, video_id + BAD_SUFFIX)


class ExtractVideo(beam.DoFn if beam else object):
    """The per-video work, a Beam DoFn."""

    def __init__(self, cfg, weights, work):
        self._cfg, self._weights, self._work = cfg, weights, work
        self._networks = None

    def setup(self):
        from dgam_tf.features import pipeline
        self._networks = pipeline.FeatureNetworks(self._weights, self._cfg.extract,
                                                  self._cfg.train.mixed_precision)

    def process(self, element):
        """element: (video id, path); yields nothing (the work folder holds the result)."""
        from dgam_tf.features import pipeline
        for result in pipeline.extract([element], self._cfg.extract, self._networks):
            if result.error:
                files.atomic_write_bytes(bad_file(self._work, result.key),
                                         result.error.encode())
            else:
                extract.save_features(self._work, result)
        return iter(())


def parse(argv):
    """(Config, Beam pipeline arguments) of a command line."""
    parser = argparse.ArgumentParser(prog="python -m dgam_tf.features.beam",
                                     description=__doc__.split("\n")[0])
    for field in dataclasses.fields(mode_config.ExtractConfig):
        default = field.default
        if isinstance(default, bool):
            parser.add_argument(f"--{field.name}", default=default,
                                type=lambda v: v.lower() in ("1", "true", "yes"))
        else:
            parser.add_argument(f"--{field.name}", default=default,
                                type=type(default) if default is not None else str)
    parser.add_argument("--data_dir", required=True)
    parser.add_argument("--streams", default="rgb,flow")
    parser.add_argument("--mixed_precision", default=None,
                        choices=["mixed_float16", "mixed_bfloat16"])
    parser.add_argument("--class_names", default=None)
    parser.add_argument("--feature_dtype", default="float16", choices=["float16", "float32"])
    parser.add_argument("--overwrite", default=False,
                        type=lambda v: v.lower() in ("1", "true", "yes"))
    args, beam_args = parser.parse_known_args(argv)
    streams = tuple(args.streams.split(","))
    if not streams or set(streams) - set(config_lib.STREAMS) or len(set(streams)) < len(streams):
        raise UserError(f"--streams must be a non-empty subset of rgb,flow, got {args.streams}")
    cfg = config_lib.Config(
        mode="extract",
        data=config_lib.DataConfig(data_dir=args.data_dir, streams=streams),
        train=config_lib.TrainConfig(mixed_precision=args.mixed_precision),
        convert=mode_config.ConvertConfig(class_names=args.class_names,
                                         feature_dtype=args.feature_dtype,
                                         overwrite=args.overwrite),
        extract=mode_config.ExtractConfig(**{f.name: getattr(args, f.name) for f in
                                            dataclasses.fields(mode_config.ExtractConfig)}))
    return cfg, beam_args


def run(cfg, beam_args):
    """Extracts the Config's videos on the Beam runner of `beam_args`, then
    writes the records; returns the DatasetInfo."""
    if beam is None:
        raise UserError("the Beam pipeline needs Apache Beam: pip install -e '.[video,beam]'")
    job = extract.start(cfg)
    work = job.work
    for v in job.todo:   # Bad notes of an earlier run are retried.
        if files.exists(bad_file(work, v.video_id)):
            files.remove(bad_file(work, v.video_id))
    with beam.Pipeline(options=PipelineOptions(beam_args)) as p:
        _ = (p | "Videos" >> beam.Create([(v.video_id, v.path) for v in job.todo])
             | "Spread" >> beam.Reshuffle()
             | "Extract" >> beam.ParDo(ExtractVideo(cfg, job.weights, work)))
    left_out = set()
    for v in job.todo:
        if files.exists(bad_file(work, v.video_id)):
            extract.bad_video(cfg, files.read_bytes(bad_file(work, v.video_id)).decode())
            left_out.add(v.video_id)
    return extract.finish(cfg, job, left_out)


def main(argv=None):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        run(*parse(sys.argv[1:] if argv is None else argv))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()

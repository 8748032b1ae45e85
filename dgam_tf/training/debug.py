"""Diagnosis of a training run: the TF profiler over chosen steps and the
culprit of a --debug_numerics failure."""
import os
import re
import sys

import tensorflow as tf

from dgam_tf.errors import UserError


class NonFiniteError(UserError):
    """A loss or gradient became NaN/Inf."""


_NUMERICS_OP = re.compile(r'Detected Infinity or NaN in output \d+ of (?:graph|eagerly-executing) '
                          r'op "(\w+)"')
_NUMERICS_NODE = re.compile(r"Detected at node '?([^\s']+?)/CheckNumerics")
_USER_FRAME = re.compile(r"\+ (\S+) \(L(\d+)\) (\S+)\n -> ")


def numerics_culprit(error, streams):
    """(stream, "op NAME (TYPE) created at FILE:LINE (FUNCTION)") for an error
    of tf.debugging.enable_check_numerics (--debug_numerics), else None."""
    text = str(error)
    op_type = _NUMERICS_OP.search(text)
    if op_type is None:
        return None
    node = _NUMERICS_NODE.search(text)
    name = node.group(1) if node else op_type.group(1)
    stream = name.split("/")[0] if name.split("/")[0] in streams else "?"
    frames = _USER_FRAME.findall(text)             # outermost first
    ours = [f for f in frames if "dgam_tf" in f[0]] or frames
    where = f" created at {ours[-1][0]}:{ours[-1][1]} ({ours[-1][2]})" if ours else ""
    return stream, f"op {name} ({op_type.group(1)}){where}"


class Profiler:
    """Starts/stops the TF profiler at the --profile_steps global steps.

    Args:
      profile_steps: (start, end) global steps, or None (no profiling).
      logdir: where the trace goes (TensorBoard's Profile tab).
      steps: the range of global steps this run will train; the chief
        (`verbose`) warns when the profile range is not inside it, and says
        where the trace went."""

    def __init__(self, profile_steps, logdir, steps, verbose):
        self.range = profile_steps
        self.logdir = logdir
        self.active = False
        self.verbose = verbose
        if self.range is None or not verbose:
            return
        flag = "--profile_steps=%d,%d" % self.range
        run = f"this run's steps {steps.start}-{steps.stop - 1}" if steps else \
            "this run, which trains no step"
        if self.range[0] not in steps:
            print(f"warning: {flag} starts outside {run}; nothing is profiled",
                  file=sys.stderr)
        elif self.range[1] > steps.stop:
            print(f"warning: {flag} ends after {run}; the trace stops there",
                  file=sys.stderr)

    def at_steps(self, steps):
        """Before a graph call that runs the global `steps` (a range): the
        trace covers the whole calls that START to END - 1 fall in."""
        if self.range is None:
            return
        if self.active and steps.start >= self.range[1]:
            self.stop()
        elif not self.active and steps.start <= self.range[0] < steps.stop:
            tf.profiler.experimental.start(self.logdir)
            self.active = True

    def stop(self):
        if self.active:
            tf.profiler.experimental.stop()
            self.active = False
            if self.verbose:
                print(f"Profile written to {os.path.join(self.logdir, 'plugins', 'profile')}; "
                      f"view it with: tensorboard --logdir {self.logdir} (Profile tab; it needs "
                      "TensorBoard's profile plugin: pip install -e '.[profile]')",
                      flush=True)

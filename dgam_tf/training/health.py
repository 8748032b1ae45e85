"""Signs that a stream stopped learning, read from an epoch's stage-2 means.

A collapsed stream trains without error: with attention 0 everywhere the
foreground feature vanishes, L_bg and L_guide are trivially satisfied, and
L_fg sits at the entropy of a uniform guess, ln(C+1), so the run ends with a
fused result that hides a dead stream. This module names such a stream.
"""
import math

# Mean attention outside [LOW, HIGH]: (almost) every segment is background,
# or foreground.
ATTENTION_LOW, ATTENTION_HIGH = 0.01, 0.99
# L_fg within this fraction of ln(C+1) once FG_PATIENCE epochs have run: the
# classifier still guesses uniformly.
FG_UNIFORM_FRACTION = 0.98
FG_PATIENCE = 5


def collapse_reason(attention_mean, fg_loss, num_classes, epochs_done):
    """Why a stream looks collapsed after `epochs_done` epochs, or None.

    Args:
      attention_mean: the epoch's mean attention over stage-2 batches.
      fg_loss: the epoch's mean L_fg.
      num_classes: C (L_fg of a uniform guess over C+1 outputs is ln(C+1)).
      epochs_done: epochs trained so far, this one included.
    """
    if attention_mean < ATTENTION_LOW:
        return (f"mean attention {attention_mean:.4f} < {ATTENTION_LOW}: every segment "
                "is background")
    if attention_mean > ATTENTION_HIGH:
        return (f"mean attention {attention_mean:.4f} > {ATTENTION_HIGH}: every segment "
                "is foreground")
    uniform = math.log(num_classes + 1)
    if epochs_done >= FG_PATIENCE and fg_loss >= FG_UNIFORM_FRACTION * uniform:
        return (f"L_fg {fg_loss:.3f} is still about ln(C+1) = {uniform:.3f} after "
                f"{epochs_done} epochs: the classifier guesses uniformly")
    return None


def warning_line(stream, epoch, reason):
    """The one line printed when `stream` collapses at (1-based) `epoch`."""
    return (f"warning: stream {stream} looks collapsed at epoch {epoch}: {reason}; check "
            "the feature scale of this stream, --initializer (the release's is pytorch), "
            f"--loss_weights_{stream} and the learning rate; TensorBoard: "
            f"stage2/{stream}/attention_mean, stage2/{stream}/fg, {stream}/collapsed")

"""A realistic synthetic preset: THUMOS14-like videos with I3D-like features.

The basic built-in data (synthetic.py) is easy: dense features of one scale,
long instances, half of every video action. Real I3D features are not, and a
model that trains on the basic data can still fail on them (a stream whose
attention collapses to 0). This preset imitates what makes real features
hard, so such failures show up without the real data.

Generative model. Symbols: `C` classes, `D` feature size, `relu(u) = max(u, 0)`.

1. Layout of a video (after THUMOS14's test ground truth: instances of
   median 3.2 s, about 9 per video, 1.17 classes per video):
   * `T = clip(round(LogNormal(ln 230, 0.7)), 50, 1500)` segments of 0.64 s
     (median 2.5 minutes);
   * 1 class (probability 0.85), 2 (0.13) or 3 (0.02);
   * `clip(round(LogNormal(ln 8, 0.9)), 1, 60)` instances shared among its
     classes; instance lengths `LogNormal(ln 3.2 s, 0.8)`, at least one
     segment: short actions (median 5 segments), many per video;
   * instances are placed at random, at least one segment apart, and fill at
     most 45% of the video: background is the majority of segments;
   * class context (probability 0.6 per side, 1-6 segments) next to every
     instance, as in synthetic.py.
2. Prototypes per stream and seed: channel scales `s_d ~ LogNormal(0, tau)`
   (heavy-tailed channels), background scenes `B_j ~ N(0, 0.6^2)`, sparse
   action signatures `A_c` (each channel on with probability 0.12, values
   `N(1.5, 0.5^2)`) and context signatures `X_c` (half the action's support
   at half magnitude plus channels of its own, as in synthetic.py).
3. Features of stream `s` (gains in `I3D_PROFILES`):
   `x_t = scale * relu(s * (offset + g_scene B + o_v + g_action w_t A_c +
   g_context k_t X_c + sigma e_t))`, with `o_v ~ N(0, 0.2^2)` per video, `w_t`,
   `k_t` the blurred action and context strength tracks and `e_t` AR(1)
   noise (correlation 0.6). Features are non-negative and sparse, most
   channels small and a few large. `flow` has the more negative offset
   (sparser: about 70% zeros against 45% for `rgb`), the heavier channel
   tails, larger values, a stronger action and a weaker context and scene.
"""
import dataclasses

import numpy as np

from dgam_tf.config import SECONDS_PER_SEGMENT, STREAMS
from dgam_tf.data import synthetic
from dgam_tf.data.synthetic import ACTION, BACKGROUND, CONTEXT, Layout

_PROTOTYPES, _LAYOUT, _RENDER = range(10, 13)   # generator purposes, apart from synthetic.py's


@dataclasses.dataclass(frozen=True)
class I3DProfile:
    """One stream's feature statistics (step 3 of the module docstring)."""
    channel_tau: float    # spread of log channel scales
    offset: float         # pre-activation offset: more negative, sparser
    scale: float          # overall magnitude
    scene_gain: float
    action_gain: float
    context_gain: float
    noise_std: float


I3D_PROFILES = {
    "rgb": I3DProfile(channel_tau=0.5, offset=-0.1, scale=1.2, scene_gain=1.0,
                      action_gain=0.8, context_gain=1.0, noise_std=0.4),
    "flow": I3DProfile(channel_tau=1.0, offset=-0.5, scale=2.0, scene_gain=0.4,
                       action_gain=1.2, context_gain=0.4, noise_std=0.5),
}


@dataclasses.dataclass(frozen=True)
class RealisticConfig(synthetic.SplitSizes):
    """Size of a realistic dataset (THUMOS14's by default)."""
    num_classes: int = 20
    feature_dim: int = 1024
    num_train: int = 200
    num_validation: int = 0
    num_test: int = 210
    max_segments: int = 1500
    num_scenes: int = 8


def sample_layout(rng, config):
    """The events of one video (step 1 of the module docstring) as a Layout."""
    t = int(np.clip(round(rng.lognormal(np.log(230), 0.7)), 50, config.max_segments))
    num_classes = min(config.num_classes, 1 + (rng.random() > 0.85) + (rng.random() > 0.87))
    classes = rng.choice(config.num_classes, size=num_classes, replace=False)
    count = int(np.clip(round(rng.lognormal(np.log(8), 0.9)), num_classes, 60))
    lengths = np.maximum(1, np.round(rng.lognormal(np.log(3.2), 0.8, count)
                                     / SECONDS_PER_SEGMENT)).astype(int)
    # Every class keeps an instance; the rest go to random classes.
    labels = np.concatenate([classes, rng.choice(classes, count - num_classes)])
    while lengths.sum() + count > 0.45 * t:       # background stays the majority
        if count > num_classes:
            count -= 1
            lengths, labels = lengths[:count], labels[:count]
        else:
            lengths = np.maximum(1, lengths * 2 // 3)
            if lengths.sum() + count > 0.45 * t and lengths.max() == 1:
                break
    order = rng.permutation(count)
    lengths, labels = lengths[order], labels[order]
    free = t - lengths.sum() - (count - 1)
    gaps = rng.multinomial(free, rng.dirichlet(np.ones(count + 1)))
    kind = np.full(t, BACKGROUND)
    class_id = np.full(t, -1)
    strength = np.zeros(t)
    spans, pos = [], int(gaps[0])
    for i, (length, c) in enumerate(zip(lengths, labels)):
        spans.append((pos, pos + int(length), int(c)))
        pos += int(length) + 1 + int(gaps[i + 1])
    for start, end, c in spans:                   # context first: actions overwrite it
        for lo, hi in ((start - rng.integers(1, 7), start), (end, end + rng.integers(1, 7))):
            lo, hi = max(lo, 0), min(hi, t)
            if rng.random() < 0.6 and hi > lo:
                span = slice(lo, hi)
                free_here = kind[span] == BACKGROUND
                kind[span][free_here] = CONTEXT
                class_id[span][free_here] = c
                strength[span][free_here] = rng.uniform(0.5, 1.0)
    for start, end, c in spans:
        kind[start:end] = ACTION
        class_id[start:end] = c
        strength[start:end] = rng.uniform(0.6, 1.2) * rng.uniform(0.85, 1.0, end - start)
    scene = np.full(t, rng.integers(config.num_scenes))
    if rng.random() < 0.5:
        scene[rng.integers(1, t):] = rng.integers(config.num_scenes)
    return Layout(kind, class_id, strength, scene, spans)


@dataclasses.dataclass
class _Prototypes:
    channel_scale: np.ndarray   # [D]
    scenes: np.ndarray          # [S, D]
    action: np.ndarray          # [C, D]
    context: np.ndarray         # [C, D]


def _draw_prototypes(rng, config, profile):
    shape = (config.num_classes, config.feature_dim)
    support = rng.random(shape) < 0.12
    action = support * np.maximum(rng.normal(1.5, 0.5, shape), 0)
    shared = support & (rng.random(shape) < 0.5)
    own = ~support & (rng.random(shape) < 0.1)
    context = 0.5 * action * shared + own * rng.uniform(0.7, 1.3, shape)
    return _Prototypes(
        channel_scale=rng.lognormal(0, profile.channel_tau, config.feature_dim),
        scenes=rng.normal(0, 0.6, (config.num_scenes, config.feature_dim)),
        action=action, context=context)


def render_stream(rng, layout, prototypes, profile):
    """float32 [T, D] non-negative features (step 3 of the module docstring)."""
    t, d = layout.num_segments, len(prototypes.channel_scale)
    h = (profile.offset + profile.scene_gain * prototypes.scenes[layout.scene]
         + rng.normal(0, 0.2, d))
    for c in np.unique(layout.class_id[layout.class_id >= 0]):
        of_class = layout.class_id == c
        w = synthetic.blur(layout.strength * (of_class & (layout.kind == ACTION)))
        k = synthetic.blur(layout.strength * (of_class & (layout.kind == CONTEXT)))
        jitter = np.exp(rng.normal(0, 0.25, (2, d)))
        h = h + profile.action_gain * w[:, None] * prototypes.action[c] * jitter[0]
        h = h + profile.context_gain * k[:, None] * prototypes.context[c] * jitter[1]
    h = h + profile.noise_std * synthetic.ar1_noise(rng, t, d, 0.6)
    return (profile.scale * np.maximum(prototypes.channel_scale * h, 0)).astype(np.float32)


class RealisticGenerator:
    """Makes the videos of one seed and config; each video is reproducible alone."""

    def __init__(self, config, seed=0):
        self.config = config
        self.seed = seed
        self._prototypes = {
            s: _draw_prototypes(synthetic.keyed_rng(seed, _PROTOTYPES, i), config, I3D_PROFILES[s])
            for i, s in enumerate(STREAMS)}

    def video(self, split, index):
        """Returns (Video, Layout) of video `index` of `split`."""
        code = synthetic.SPLITS.index(split)
        layout = sample_layout(synthetic.keyed_rng(self.seed, _LAYOUT, code, index), self.config)
        features = {
            s: render_stream(synthetic.keyed_rng(self.seed, _RENDER, code, 2 * index + i),
                             layout, self._prototypes[s], I3D_PROFILES[s])
            for i, s in enumerate(STREAMS)}
        return synthetic.make_video(split, index, features, layout), layout

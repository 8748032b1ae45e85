"""The built-in synthetic dataset: a stand-in for THUMOS14 I3D features.

The real features are not available on every machine, so data/builtin.py
writes a dataset folder in the record format (dgam_tf/data/records.py) whose
videos have planted action instances, class-correlated *context* around them
and background elsewhere, seen by two streams, `rgb` and `flow`.

Generative model. Symbols: `C` classes, `D` feature size, `S` background
scenes, `relu(u) = max(u, 0)`.

1. Prototypes, drawn once per seed and stream (the two streams draw theirs
   independently: they see the same events through different "projections"):
   * scenes `B_j ~ N(0.4, 0.35^2 I)`, `j < S`;
   * action signature `A_c`: a sparse non-negative pattern, values
     `U(0.6, 1.4)`: a pattern of its own on each dimension with probability
     0.15, elsewhere an "actionness" pattern common to every class (density
     0.1), so that what makes a segment an action carries over between
     classes, as motion and people do in real videos;
   * context signature `X_c = 0.5 * A_c * m_c + G_c`: half of the action's
     support `m_c` at half magnitude (so a classifier finds context
     discriminative for class `c`) plus a pattern `G_c` of its own on
     dimensions the action does not use (density 0.15, values `U(0.5, 1)`),
     so context is distributed differently from the action.
2. Layout of video `v`, shared by both streams:
   * `T ~ U{min_segments .. max_segments}` segments of 0.64 s;
   * one class (probability 0.75) or two; per class 1-4 instances of 3-30
     segments (log-uniform lengths), shortened or dropped until the actions
     fill at most half of the video; instances are shuffled and spread with
     random gaps (at least 2 segments between two instances);
   * context of the instance's class (each side: none with probability
     0.25, else 2-8 segments) right before and after every instance; a gap
     of at most 12 segments between two instances of one class is context
     throughout;
   * everything else is background of one scene, with a cut to a second
     scene at a random point in 40% of the videos;
   * strengths: per action instance `U(0.6, 1.2)` times a per-segment factor
     `U(0.85, 1)`; per context span `U(0.5, 1)`.
3. Features of stream `s` (gains in `STREAM_PROFILES`):
   `x_t = relu(g_scene B_scene(t) + o_v + g_action w_t A~_c
   + context_strength * g_context k_t X~_c + noise * sigma_s e_t)`, where
   `o_v ~ N(0, 0.1^2 I)` is a per-video appearance offset, `A~_c`, `X~_c` are
   the signatures with per-video multiplicative jitter `exp(N(0, 0.25^2))`,
   `w_t`, `k_t` the action and context strength tracks blurred by
   `[0.25, 0.5, 0.25]` (a segment overlapping a boundary sees a bit of both
   sides), and `e_t` AR(1) Gaussian noise with correlation 0.5 between
   neighbouring segments and unit variance. As in real videos, context
   moves the features less than the action does: about 0.7 times as far in
   `rgb` and 0.4 times in `flow` at the default context strength; `flow` also
   has the weaker scene, `rgb` less noise.
   Features are non-negative, ReLU-like, with means of about 0.5 (rgb) and
   0.35 (flow), the magnitude of I3D features.

Difficulty knobs: `noise` (scales every stream's noise) and
`context_strength` (scales the context signature): more of either makes
localization harder. What the default flags reach on it is in README.md's
Quick start, with the command. Every video draws from its own generator keyed by
(seed, split, index), so a dataset is a pure function of the seed and the
config, and resizing one split leaves the videos of the others unchanged.
"""
import collections
import dataclasses
from typing import List, Tuple

import numpy as np

from dgam_tf.config import SECONDS_PER_SEGMENT, STREAMS
from dgam_tf.data import records
from dgam_tf.errors import UserError

SPLITS = ("train", "validation", "test")
GT_FILE = "gt.json"   # ground truth of every split, ActivityNet JSON

# Segment kinds of a Layout.
BACKGROUND, CONTEXT, ACTION = 0, 1, 2

# Purposes of the random generators, so no two share a stream of numbers.
_PROTOTYPES, _LAYOUT, _RENDER = range(3)


@dataclasses.dataclass(frozen=True)
class StreamProfile:
    """How strongly one stream sees each kind of event.

    Attributes:
      action_gain: multiplies the action signature.
      context_gain: multiplies the context signature.
      scene_gain: multiplies the background scene.
      noise_std: standard deviation of the noise at `noise=1`.
    """
    action_gain: float
    context_gain: float
    scene_gain: float
    noise_std: float


STREAM_PROFILES = {
    "rgb": StreamProfile(action_gain=1.0, context_gain=0.6, scene_gain=1.0, noise_std=0.3),
    "flow": StreamProfile(action_gain=1.0, context_gain=0.35, scene_gain=0.6, noise_std=0.4),
}


class SplitSizes:
    """Class names and split sizes of a synthetic config (its num_classes,
    num_train, num_validation and num_test fields)."""

    @property
    def class_names(self):
        return [f"action_{c:02d}" for c in range(self.num_classes)]

    def split_size(self, split):
        return {"train": self.num_train, "validation": self.num_validation,
                "test": self.num_test}[split]


@dataclasses.dataclass(frozen=True)
class SyntheticConfig(SplitSizes):
    """Size and difficulty of a synthetic dataset.

    Attributes:
      num_classes: action classes `C`.
      feature_dim: feature size `D` of each stream.
      num_train: videos of the "train" split.
      num_validation: videos of the "validation" split (0: no such split).
      num_test: videos of the "test" split.
      min_segments: shortest video, in segments.
      max_segments: longest video, in segments.
      noise: noise level; 1 is the tuned default.
      context_strength: magnitude of the context signature; 0 removes the
        action-context confusion.
      num_scenes: background prototypes `S`.
    """
    num_classes: int = 5
    feature_dim: int = 256
    num_train: int = 200
    num_validation: int = 50
    num_test: int = 100
    min_segments: int = 60
    max_segments: int = 300
    noise: float = 1.0
    context_strength: float = 2.0
    num_scenes: int = 6

    def validate(self):
        """Raises UserError for a config no dataset can be made from."""
        if self.num_classes < 1:
            raise UserError(f"synthetic data needs at least 1 class, got {self.num_classes}")
        if self.feature_dim < 8:
            raise UserError(f"synthetic feature_dim must be at least 8, got {self.feature_dim}")
        if min(self.num_train, self.num_validation, self.num_test) < 0:
            raise UserError("synthetic split sizes must not be negative")
        # 20 segments leave room for two classes of one 3-segment instance each.
        if not 20 <= self.min_segments <= self.max_segments:
            raise UserError("synthetic videos need 20 <= min_segments <= max_segments, got "
                            f"{self.min_segments} and {self.max_segments}")
        if self.noise < 0 or self.context_strength < 0:
            raise UserError("synthetic noise and context_strength must not be negative")
        if self.num_scenes < 1:
            raise UserError(f"synthetic data needs at least 1 scene, got {self.num_scenes}")


@dataclasses.dataclass
class Layout:
    """What happens in each segment of one synthetic video.

    Attributes:
      kind: [T] int, BACKGROUND, CONTEXT or ACTION.
      class_id: [T] int, class of an action or context segment, -1 elsewhere.
      strength: [T] float, intensity of the action or context, 0 on background.
      scene: [T] int, background scene index.
      instances: action instances (start_segment, end_segment_exclusive,
        class_id), in temporal order.
    """
    kind: np.ndarray
    class_id: np.ndarray
    strength: np.ndarray
    scene: np.ndarray
    instances: List[Tuple[int, int, int]]

    @property
    def num_segments(self):
        return len(self.kind)


@dataclasses.dataclass
class _Prototypes:
    """One stream's prototypes: scenes [S, D], action [C, D], context [C, D]."""
    scenes: np.ndarray
    action: np.ndarray
    context: np.ndarray


def keyed_rng(seed, purpose, a=0, b=0):
    """The numpy Generator of one purpose and (a, b) key under `seed`."""
    # Fixed-length keys: numpy's SeedSequence treats trailing zeros of keys of
    # different lengths alike.
    return np.random.default_rng([seed, purpose, a, b])


def _draw_prototypes(rng, config):
    shape = (config.num_classes, config.feature_dim)
    scenes = rng.normal(0.4, 0.35, (config.num_scenes, config.feature_dim))
    # Every class's action shares a common "actionness" pattern (motion,
    # people) next to a pattern of its own.
    common = (rng.random(config.feature_dim) < 0.1) * rng.uniform(0.6, 1.4, config.feature_dim)
    action = np.where(rng.random(shape) < 0.15, rng.uniform(0.6, 1.4, shape), common)
    support = action > 0
    shared = support & (rng.random(shape) < 0.5)
    own = ~support & (rng.random(shape) < 0.15)
    context = 0.5 * action * shared + own * rng.uniform(0.5, 1.0, shape)
    return _Prototypes(scenes, action, context)


def _context_length(rng):
    return 0 if rng.random() < 0.25 else int(rng.integers(2, 9))


def sample_layout(rng, config):
    """Draws the events of one video (step 2 of the module docstring).

    Args:
      rng: numpy Generator.
      config: SyntheticConfig.

    Returns:
      Layout with T in [config.min_segments, config.max_segments].
    """
    t = int(rng.integers(config.min_segments, config.max_segments + 1))
    num_video_classes = 1 if config.num_classes == 1 or rng.random() < 0.75 else 2
    classes = rng.choice(config.num_classes, size=num_video_classes, replace=False)
    instances = [[int(c), int(round(np.exp(rng.uniform(np.log(3), np.log(30)))))]
                 for c in classes for _ in range(rng.integers(1, 5))]
    # Actions and their minimum gaps fill at most half of the video.
    while sum(n for _, n in instances) + 2 * len(instances) > t // 2:
        per_class = collections.Counter(c for c, _ in instances)
        removable = [i for i, (c, _) in enumerate(instances) if per_class[c] > 1]
        if removable:
            del instances[removable[rng.integers(len(removable))]]
        else:
            longest = max(range(len(instances)), key=lambda i: instances[i][1])
            instances[longest][1] = max(3, instances[longest][1] * 2 // 3)
    instances = [instances[i] for i in rng.permutation(len(instances))]
    n = len(instances)
    free = t - sum(length for _, length in instances)
    gaps = np.array([0] + [2] * (n - 1) + [0])
    gaps += rng.multinomial(free - gaps.sum(), rng.dirichlet(np.ones(n + 1)))

    kind = np.full(t, BACKGROUND)
    class_id = np.full(t, -1)
    strength = np.zeros(t)
    spans = []  # (start, end, class)
    pos = int(gaps[0])
    for i, (c, length) in enumerate(instances):
        spans.append((pos, pos + length, c))
        kind[pos:pos + length] = ACTION
        class_id[pos:pos + length] = c
        strength[pos:pos + length] = rng.uniform(0.6, 1.2) * rng.uniform(0.85, 1.0, length)
        pos += length + int(gaps[i + 1])

    def add_context(start, end, c):
        if end > start:
            kind[start:end] = CONTEXT
            class_id[start:end] = c
            strength[start:end] = rng.uniform(0.5, 1.0)

    before = [_context_length(rng) for _ in range(n)]
    after = [_context_length(rng) for _ in range(n)]
    first_start, _, first_class = spans[0]
    add_context(first_start - min(before[0], first_start), first_start, first_class)
    for i in range(n - 1):
        (_, left_end, left_class), (right_start, _, right_class) = spans[i], spans[i + 1]
        gap = right_start - left_end
        if left_class == right_class and gap <= 12:
            add_context(left_end, right_start, left_class)
            continue
        left = min(after[i], gap // 2)
        right = min(before[i + 1], gap - left)
        add_context(left_end, left_end + left, left_class)
        add_context(right_start - right, right_start, right_class)
    _, last_end, last_class = spans[-1]
    add_context(last_end, last_end + min(after[-1], t - last_end), last_class)

    scene = np.full(t, rng.integers(config.num_scenes))
    if rng.random() < 0.4:
        scene[rng.integers(1, t):] = rng.integers(config.num_scenes)
    return Layout(kind, class_id, strength, scene, spans)


def blur(track):
    """[T] -> [T]: a segment overlapping a boundary sees a bit of both sides."""
    return np.convolve(track, [0.25, 0.5, 0.25], mode="same")


def ar1_noise(rng, t, d, correlation):
    """[T, D] Gaussian noise, unit variance, AR(1) along T with `correlation`."""
    white = rng.normal(0, 1, (t, d))
    noise = np.empty_like(white)
    noise[0] = white[0]
    for i in range(1, t):
        noise[i] = correlation * noise[i - 1] + np.sqrt(1 - correlation ** 2) * white[i]
    return noise


def render_stream(rng, layout, prototypes, profile, config):
    """Features of one stream for a layout (step 3 of the module docstring).

    Args:
      rng: numpy Generator of this video and stream.
      layout: the video's Layout.
      prototypes: the stream's _Prototypes.
      profile: the stream's StreamProfile.
      config: SyntheticConfig (feature_dim, noise, context_strength).

    Returns:
      float32 array [T, D], non-negative.
    """
    t, d = layout.num_segments, config.feature_dim
    x = profile.scene_gain * prototypes.scenes[layout.scene] + rng.normal(0, 0.1, d)
    for c in np.unique(layout.class_id[layout.class_id >= 0]):
        action = prototypes.action[c] * np.exp(rng.normal(0, 0.25, d))
        context = prototypes.context[c] * np.exp(rng.normal(0, 0.25, d))
        of_class = layout.class_id == c
        w = blur(layout.strength * (of_class & (layout.kind == ACTION)))
        k = blur(layout.strength * (of_class & (layout.kind == CONTEXT)))
        x += profile.action_gain * w[:, None] * action
        x += config.context_strength * profile.context_gain * k[:, None] * context
    x += config.noise * profile.noise_std * ar1_noise(rng, t, d, 0.5)
    return np.maximum(x, 0).astype(np.float32)


class SyntheticGenerator:
    """Makes the videos of one seed and config; each video is reproducible alone."""

    def __init__(self, config, seed=0):
        config.validate()
        self.config = config
        self.seed = seed
        self._prototypes = {
            stream: _draw_prototypes(keyed_rng(seed, _PROTOTYPES, i), config)
            for i, stream in enumerate(STREAMS)}

    def video(self, split, index):
        """Returns (Video, Layout) of video `index` of `split`."""
        split_code = SPLITS.index(split)
        layout = sample_layout(keyed_rng(self.seed, _LAYOUT, split_code, index), self.config)
        features = {
            stream: render_stream(
                keyed_rng(self.seed, _RENDER, split_code, index * len(STREAMS) + i),
                layout, self._prototypes[stream], STREAM_PROFILES[stream], self.config)
            for i, stream in enumerate(STREAMS)}
        return make_video(split, index, features, layout), layout


def make_video(split, index, features, layout):
    """The records.Video of video `index` of `split`: features and its Layout's
    labels and ground truth."""
    return records.Video(
        video_id=f"synthetic_{split}_{index:05d}",
        features=features,
        labels=sorted({c for _, _, c in layout.instances}),
        duration=layout.num_segments * SECONDS_PER_SEGMENT,
        seconds_per_segment=SECONDS_PER_SEGMENT,
        gt=[(s * SECONDS_PER_SEGMENT, e * SECONDS_PER_SEGMENT, c)
            for s, e, c in layout.instances])

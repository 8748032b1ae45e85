"""Declared ranges of the numeric settings: each config dataclass names its
fields' valid intervals, and building the config checks them (one line
naming the flag, its range and the value)."""
from typing import ClassVar, Mapping

from dgam_tf.errors import UserError

# How a range is said in an error line, where words read better than intervals.
_RANGE_WORDS = {"[1, inf)": "at least 1", "(0, inf)": "positive", "[0, inf)": "not negative"}


def _within(value, interval):
    """Whether the number `value` lies in `interval`, written "[0, 1)" etc.
    NaN lies in none."""
    low, high = (float(v) for v in interval[1:-1].split(","))
    above = value >= low if interval[0] == "[" else value > low
    below = value <= high if interval[-1] == "]" else value < high
    return above and below


class Ranged:
    """Checks the numeric fields named in RANGES when a config is built.

    RANGES: {field: interval}; a field holding a tuple or a mapping has each
    number checked (a mapping of tuples, e.g. loss_weights, is one flag per
    key: --loss_weights_rgb). FLAGS: {field: flag} where the flag is named
    otherwise. None (unset) passes.

    Raises:
      UserError: one line naming the flag, its range and the value.
    """
    RANGES: ClassVar[Mapping[str, str]] = {}
    FLAGS: ClassVar[Mapping[str, str]] = {}

    def __post_init__(self):
        for name, interval in self.RANGES.items():
            for flag, value in _numbers(self.FLAGS.get(name, name), getattr(self, name)):
                if not _within(value, interval):
                    raise UserError(f"--{flag} must be "
                                    f"{_RANGE_WORDS.get(interval, 'in ' + interval)}, "
                                    f"got {value:g}")


def _numbers(flag, value):
    """[(flag, number)] of a field's value (a number, None, tuple or mapping)."""
    if value is None:
        return []
    if isinstance(value, Mapping):
        return [pair for key, v in value.items() for pair in _numbers(
            f"{flag}_{key}" if isinstance(v, (tuple, list)) else flag, v)]
    if isinstance(value, (tuple, list)):
        return [(flag, v) for v in value]
    return [(flag, value)]

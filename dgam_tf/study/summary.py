"""The numbers of a study, from its runs' metrics (plain dicts, as the
metrics files hold them): each run's last, validation-selected and
test-selected evaluation, their mean, sample sd and range over seeds,
differences paired by seed, the module-swap table, and the console tables.

All values are fractions, as in metrics.json; the console shows percent."""
import statistics

from dgam_tf.evaluation import detection
from dgam_tf.training.actions import selection_score

RULES = ("last", "validation-selected", "test-selected")
TEST_SELECTED_CAVEAT = (
    "test-selected: the best fused mAP@0.5 of the test evaluations every --eval_every "
    "epochs (and the last), chosen on the test set itself as the release and most "
    "papers do: optimistic, not an estimate on unseen data")
NO_BASEBALL = "AP@0.5 (19 classes, no BaseballPitch)"
EXCLUDED_CLASS = "BaseballPitch"   # the release's `indices.any()` bug can cost its AP
# Metrics of the short tables (paired differences, module swap), when present.
HEADLINE = ("mAP@0.5", "average_mAP_0.1:0.7", "average_mAP_0.5:0.95", NO_BASEBALL)
SWAPS = ("O/O", "O/N", "N/O", "N/N")   # attention/classifier; O = no_gam, N = gam


def metric_values(metrics):
    """{name: value} of one evaluation row: "mAP@<t>" per tIoU, the named
    averages and "average_mAP" (all thresholds), and, when the classes
    include BaseballPitch (THUMOS14), the AP@0.5 mean of the other classes."""
    thresholds = [round(t, 6) for t in metrics["tiou_thresholds"]]
    out = {f"mAP@{t:g}": m for t, m in zip(thresholds, metrics["mAP"])}
    out.update({k: v for k, v in detection.add_average_mAPs(metrics).items()
                if k.startswith("average_mAP")})
    classes = metrics["ap_per_class"]
    if EXCLUDED_CLASS in classes and 0.5 in thresholds:
        at = thresholds.index(0.5)
        out[NO_BASEBALL] = statistics.fmean(
            ap[at] for name, ap in classes.items() if name != EXCLUDED_CLASS)
    return out


def rows(metrics):
    """{row: metric_values}: each stream alone, then "fused" (a one-stream
    model: its stream)."""
    if "streams" not in metrics:
        return {metrics["source"]["streams"][0]: metric_values(metrics)}
    return {**{s: metric_values(m) for s, m in metrics["streams"].items()},
            "fused": metric_values(metrics)}


def test_selected(last, record, epochs):
    """(epoch, metrics) of the best fused mAP@0.5 (actions.selection_score)
    among the recorded test evaluations and the last one (at `epochs`); the
    earliest wins a tie."""
    candidates = [(e["epoch"], e) for e in record["evaluations"] if e["epoch"] < epochs]
    candidates.append((epochs, last))
    return max(candidates, key=lambda c: (selection_score(c[1])[1], -c[0]))


def stats(per_seed):
    """{"per_seed", "mean", "sd" (sample, None for one seed), "min", "max"}
    of {seed: value}."""
    values = list(per_seed.values())
    return {"per_seed": per_seed, "mean": statistics.fmean(values),
            "sd": statistics.stdev(values) if len(values) > 1 else None,
            "min": min(values), "max": max(values)}


def _table(evaluations):
    """{seed: rows(metrics)} -> {row: {metric: stats over seeds}}; seeds
    without that evaluation (None) are left out; None if all are."""
    by_seed = {seed: rows(m) for seed, m in evaluations.items() if m is not None}
    if not by_seed:
        return None
    first = next(iter(by_seed.values()))
    return {row: {name: stats({seed: r[row][name] for seed, r in by_seed.items()})
                  for name in first[row]} for row in first}


def summarize(evaluations, swaps=None):
    """The study.json object.

    Args:
      evaluations: {variant: {seed: {rule: metrics or None, "epoch": the
        test-selected epoch}}}, variant "as given" without --study_variants.
      swaps: {combination in SWAPS: {seed: metrics}} or None.

    Returns:
      {"caveat", "seeds", "variants", "test_selected_epochs", "results":
      {variant: {rule: {row: {metric: stats}} or None}}, "paired": {"<first>
      - <other>": {rule: {row: {metric: stats of the per-seed difference}}}},
      "module_swap": {combination: {row: {metric: stats}}} or None}.
    """
    variants = list(evaluations)
    seeds = list(evaluations[variants[0]])
    results = {v: {rule: _table({s: e[rule] for s, e in evaluations[v].items()})
                   for rule in RULES} for v in variants}
    paired = {}
    for other in variants[1:]:
        paired[f"{variants[0]} - {other}"] = {
            rule: _difference(results[variants[0]][rule], results[other][rule])
            for rule in RULES if results[variants[0]][rule] and results[other][rule]}
    return {"caveat": TEST_SELECTED_CAVEAT, "seeds": seeds, "variants": variants,
            "test_selected_epochs": {v: {s: e["epoch"] for s, e in evaluations[v].items()}
                                     for v in variants},
            "results": results, "paired": paired,
            "module_swap": {c: _table(m) for c, m in swaps.items()} if swaps else None}


def _difference(first, other):
    """{row: {metric: stats of first - other per seed}} of two _table results."""
    return {row: {name: stats({seed: v - other[row][name]["per_seed"][seed]
                               for seed, v in first[row][name]["per_seed"].items()})
                  for name in first[row]} for row in first}


def _cell(s, signed=False):
    if s is None:
        return "n/a"
    sign = "+" if signed else ""
    sd = "" if s["sd"] is None else f" ± {100 * s['sd']:.2f}"
    return f"{100 * s['mean']:{sign}.2f}{sd} ({100 * s['min']:{sign}.1f} to {100 * s['max']:{sign}.1f})"


def _label(name):
    return name.replace("average_mAP_", "avg mAP ").replace("average_mAP", "avg mAP all")


def format_study(study, where):
    """The console tables of a study.json object: per variant, every metric
    of the fused row (and mAP@0.5 of each stream) under each selection rule,
    mean ± sample sd (min to max) in percent; the differences paired by seed;
    the module swap. The test-selected column carries its caveat."""
    seeds = ", ".join(map(str, study["seeds"]))
    lines = []
    for variant, by_rule in study["results"].items():
        rules = [r for r in RULES if by_rule[r]]
        table = by_rule["last"]
        fused = list(table)[-1]
        title = f"{where}" + ("" if variant == "as given" else f", {variant}")
        lines += ["", f"Study of {len(study['seeds'])} seeds ({seeds}) in {title}: mAP (%), "
                  "mean ± sample sd (min to max) over seeds",
                  f"{'':<24}" + "".join(f"{r:<34}" for r in rules)]
        names = [(fused, n) for n in table[fused]] + [(row, "mAP@0.5") for row in table
                                                       if row != fused]
        for row, name in names:
            if name in table[row]:
                lines.append(f"{(row + ' ' + _label(name)):<24}" + "".join(
                    f"{_cell(by_rule[r][row][name]):<34}" for r in rules))
        if "validation-selected" not in rules:
            lines.append("validation-selected: n/a (the data has no validation split)")
        lines.append(TEST_SELECTED_CAVEAT)
        lines.append("test-selected epochs: " + ", ".join(
            f"seed {s} {e}" for s, e in study["test_selected_epochs"][variant].items()))
    for pair, by_rule in study["paired"].items():
        lines += ["", f"Paired by seed, {pair} (mAP points, fused): per seed, then mean ± sd "
                  "(min to max)", f"{'seed':<45} " + " ".join(f"{s:>6}" for s in study["seeds"])]
        for rule, table in by_rule.items():
            fused = list(table)[-1]
            for name in HEADLINE:
                if name in table[fused]:
                    s = table[fused][name]
                    lines.append(f"{rule:<20} {_label(name):<24} " + " ".join(
                        f"{100 * v:+6.2f}" for v in s["per_seed"].values())
                        + f"   {_cell(s, signed=True)}")
        if any(rule == "test-selected" for rule in by_rule):
            lines.append(TEST_SELECTED_CAVEAT)
    if study["module_swap"]:
        lines += ["", "Module swap (attention/classifier; O = no_gam, N = gam; last "
                  "checkpoints), fused mAP (%), mean ± sd (min to max)"]
        for combination, table in study["module_swap"].items():
            fused = list(table)[-1]
            lines.append(f"{combination:<5} " + "   ".join(
                f"{_label(n)} {_cell(table[fused][n])}" for n in HEADLINE if n in table[fused]))
    return "\n".join(lines)

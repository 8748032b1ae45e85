"""study.png: the fused mAP of every seed per tIoU, with the mean and sample
sd over seeds, one panel per selection rule, one colour per variant (Agg
canvas, no pyplot state)."""
import io

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from dgam_tf import files
from dgam_tf.study.summary import RULES, TEST_SELECTED_CAVEAT

PNG_DPI = 100


def draw(study):
    """The study.json object's figure: a Figure."""
    rules = [r for r in RULES if any(by_rule[r] for by_rule in study["results"].values())]
    fig = Figure(figsize=(5 * len(rules), 4.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(rules), sharey=True, squeeze=False)[0]
    colors = colormaps["tab10"]
    for ax, rule in zip(axes, rules):
        for k, (variant, by_rule) in enumerate(study["results"].items()):
            table = by_rule[rule]
            if table is None:
                continue
            fused = table[list(table)[-1]]
            names = [n for n in fused if n.startswith("mAP@")]
            tiou = np.array([float(n[4:]) for n in names])
            offset = 0.012 * (k - (len(study["results"]) - 1) / 2)
            mean = np.array([100 * fused[n]["mean"] for n in names])
            sd = np.array([100 * (fused[n]["sd"] or 0.0) for n in names])
            for n, t in zip(names, tiou):
                points = 100 * np.array(list(fused[n]["per_seed"].values()))
                ax.plot(np.full(points.shape, t + offset), points, ".", color=colors(k),
                        alpha=0.6)
            ax.errorbar(tiou + offset, mean, yerr=sd, color=colors(k), capsize=3,
                        label=f"{variant} (mean ± sd)")
        ax.set_title(rule + ("*" if rule == "test-selected" else ""))
        ax.set_xlabel("tIoU")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    axes[0].set_ylabel(f"fused mAP (%), {len(study['seeds'])} seeds (dots)")
    if "test-selected" in rules:
        fig.suptitle("* " + TEST_SELECTED_CAVEAT, fontsize="x-small", wrap=True)
    return fig


def write(study, path):
    """Writes `draw(study)` to `path` as a PNG, atomically."""
    buffer = io.BytesIO()
    draw(study).savefig(buffer, format="png", dpi=PNG_DPI)
    files.atomic_write_bytes(path, buffer.getvalue())

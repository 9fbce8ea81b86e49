"""Measure the slider demos of the notebooks as a learner meets them: ``./course latency``.

Each callback is timed as ``SliderDemo.set`` runs it: compute, in-place redraw and the PNG render the
learner sees, over representative slider values (the extremes included), cold (empty cache) and cached, in
three rounds. "cold" is the time to the first picture of a new setting: a demo with a preview shows the preview
first; "asked" is the time until the picture of the asked setting is shown (the background compute done; the
same as cold for a demo without a preview). The benchmark waits for it before the next move, as a learner who
looks at the picture does.
Prints median and 95th percentile in milliseconds per demo.
"""
from __future__ import annotations

import statistics
import sys
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..demos import controlnet, ddim, dit, guidance, imagen, ldm, lpips, pipeline, vq, vqgan, welcome  # noqa: E402

# each notebook's demos module, by the notebook's number: its notebook_demos() is what the notebook shows
NOTEBOOKS = {"00": welcome, "01": ddim, "02": guidance, "03": vq, "04": lpips, "05": vqgan, "06": ldm, "07": controlnet, "08": imagen,
             "09": dit, "10": pipeline}


def _demos(names=None) -> dict:
    """{label: (demo, values, budget kind)} for the measured demos whose labels are in ``names`` (all when None).
    Only the notebooks that ``names`` needs are set up, and only the demos named are built (building loads models,
    samples, trains a codebook)."""
    out = {}
    for number, module in NOTEBOOKS.items():
        if names is not None and not any(n.startswith(number + " ") for n in names):
            continue
        sliders = module.notebook_demos()
        for label, m in sliders.measured.items():
            if names is None or label in names:
                out[label] = (sliders[m.demo], list(m.values), m.budget)
    return out


def measure(names=None, rounds: int = 3) -> dict:
    """{demo: {"cold": (median, p95), "asked": (median, p95), "cached": (median, p95), "previews": fraction,
    "budget": kind}} in ms; ``names`` restricts them.

    Each of ``rounds`` rounds empties the demo's cache (its own memos too) and sets every representative value
    twice: the first time is cold (compute + redraw, or the preview; then the asked picture is waited for), the
    second cached (redraw). ``previews`` is the fraction of cold moves answered by a preview first. The 95th percentile is numpy's (linear
    interpolation), over rounds x values callbacks: with one round and six values it would be the maximum, and one
    hiccup of the machine would decide it.
    """
    import IPython.display
    import numpy as np

    IPython.display.display = lambda *a, **k: None  # no frontend here: SliderDemo still renders the PNG
    out = {}
    for name, (demo, values, budget) in _demos(names).items():
        demo.set(**values[0])  # the first figure is built in the notebook cell, not in a callback
        demo.wait()
        times = {"cold": [], "asked": [], "cached": []}
        previews = demo.previews
        for _ in range(rounds):
            demo.clear_cache()
            for phase in ("cold", "cached"):
                for v in values:
                    t0 = time.perf_counter()
                    demo.set(**v)
                    times[phase].append(time.perf_counter() - t0)
                    if phase == "cold":
                        demo.wait()
                        times["asked"].append(time.perf_counter() - t0)
            plt.close("all")
        out[name] = {phase: (round(1000 * statistics.median(ts)), round(1000 * float(np.percentile(ts, 95))))
                     for phase, ts in times.items()}
        out[name]["previews"] = round((demo.previews - previews) / len(times["asked"]), 2)
        out[name]["budget"] = budget
    return out


def main():
    res = measure()
    print(f"{'demo':30s} {'cold median':>12s} {'cold p95':>9s} {'asked p95':>10s} {'previews':>9s} "
          f"{'cached median':>14s} {'cached p95':>11s}  (ms)")
    for name, r in res.items():
        print(f"{name:30s} {r['cold'][0]:>12d} {r['cold'][1]:>9d} {r['asked'][1]:>10d} {r['previews']:>9.2f} "
              f"{r['cached'][0]:>14d} {r['cached'][1]:>11d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

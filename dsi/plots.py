"""``dsi info --plot``: the training log of an index as a picture (matplotlib, optional)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from docid.io import atomic_open

# The keys every point of training_log.jsonl has; any other number in a point is a dev metric.
_AXES = ("step", "seconds", "epoch", "loss")
# (label, seconds per unit, longest run drawn in it)
_TIME_UNITS = (("seconds", 1.0, 120.0), ("minutes", 60.0, 7200.0), ("hours", 3600.0, math.inf))


def plot_training_log(points: Sequence[Mapping[str, float]], path: str | Path) -> Path:
    """Draw ``points`` (``training_log.jsonl``: step, seconds, epoch, loss, maybe dev metrics)
    as loss over steps (with any dev metric on a second axis) and loss over minutes, into
    ``path``; its suffix picks the format (png, pdf, svg, ...). Returns the path written."""
    path = Path(path)
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display: a file is all that is drawn
        from matplotlib.figure import Figure
    except ImportError:
        raise ValueError(
            "--plot needs matplotlib, which is not installed (pip install matplotlib)."
        ) from None
    if not points:
        raise ValueError("The index has no training log to plot (training_log.jsonl is empty).")
    figure = Figure(figsize=(10, 4), layout="constrained")
    kinds = figure.canvas.get_supported_filetypes()
    kind = path.suffix.lower().lstrip(".")
    if kind not in kinds:
        raise ValueError(
            f"--plot {path}: unknown image format {kind or '(no suffix)'!r} "
            f"(use one of {', '.join(sorted(kinds))})."
        )
    steps = [p["step"] for p in points]
    losses = [p["loss"] for p in points]
    by_step, by_time = figure.subplots(1, 2)
    by_step.plot(steps, losses, marker="." if len(points) < 50 else None, label="loss")
    by_step.set(xlabel="step", ylabel="training loss", title="Loss over steps")
    metrics = sorted(
        {
            key
            for point in points
            for key, value in point.items()
            if key not in _AXES and isinstance(value, (int, float))
        }
    )
    if metrics:
        dev = by_step.twinx()
        for number, key in enumerate(metrics, start=1):
            logged = [p for p in points if isinstance(p.get(key), (int, float))]
            xs, ys = [p["step"] for p in logged], [p[key] for p in logged]
            dev.plot(xs, ys, color=f"C{number}", marker="o", label=key)
        dev.set_ylabel("dev metric")
        figure.legend(loc="outside lower center", ncols=len(metrics) + 1)
    # The unit that keeps the tick labels short: a short run in seconds, a long one in hours.
    last = max(p["seconds"] for p in points)
    unit, scale = next((u, s) for u, s, upto in _TIME_UNITS if last <= upto)
    times = [p["seconds"] / scale for p in points]
    by_time.plot(times, losses, color="C0", marker="." if len(points) < 50 else None)
    by_time.set(xlabel=unit, ylabel="training loss", title="Loss over time")
    with atomic_open(path) as handle:
        figure.savefig(handle, format=kind)
    return path

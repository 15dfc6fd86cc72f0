"""Gantt charts: a PNG/RGB image (matplotlib, imported lazily from the ``plot`` extra) and ANSI text."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from instances import JobShopInstance, SchedEnvError
from sched_env.schedule import Schedule

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - depends on the installed extras
        raise SchedEnvError("Gantt images need matplotlib: pip install 'sched-env[plot]'") from None
    return plt


def _job_colors(n_jobs: int) -> np.ndarray:
    """One colour per job, neighbouring jobs far apart: tab20's ten dark hues, then its ten light
    ones (tab20 itself pairs a hue's dark and light shade as jobs 0/1, 2/3, ...); beyond 20 jobs,
    hues stepped by the golden angle with alternating saturation and lightness."""
    plt = _pyplot()
    if n_jobs <= 20:
        order = [*range(0, 20, 2), *range(1, 20, 2)]
        return plt.get_cmap("tab20")(np.array(order[:n_jobs]))
    from matplotlib.colors import hsv_to_rgb

    j = np.arange(n_jobs)
    hsv = np.stack([(j * 0.381966) % 1.0, 0.55 + 0.2 * (j % 2), 0.95 - 0.2 * (j % 3)], axis=1)
    return np.concatenate([hsv_to_rgb(hsv), np.ones((n_jobs, 1))], axis=1)


def gantt_figure(
    schedule: Schedule,
    instance: JobShopInstance | None = None,
    *,
    title: str | None = None,
    downtimes: np.ndarray | None = None,
    now: int | None = None,
    time_unit: str = "time units",
) -> Figure:
    """A matplotlib figure: one row per machine, one colour per job (named in a legend, and on the
    bars wide enough), the makespan marked, time in ``time_unit``. When the instance has due dates,
    each job's due date is a marker in its colour on the row of its last operation, ringed in red
    when the job ends late. For a running shop: ``downtimes`` (rows machine, start, end, kind as in
    a scenario) are drawn as hatched grey windows, and ``now`` as a vertical line with the work done
    by then drawn solid and the planned rest faded, with a legend saying which is which."""
    plt = _pyplot()
    n_machines = instance.n_machines if instance is not None else int(schedule.machine.max(initial=-1)) + 1
    n_jobs = instance.n_jobs if instance is not None else int(schedule.job.max(initial=-1)) + 1
    height = min(0.45 * n_machines + 2.2, 14)
    fig, ax = plt.subplots(figsize=(13, height), dpi=100)
    colors = _job_colors(max(n_jobs, 1))
    _draw_operations(ax, schedule, colors, now, label=n_jobs <= 30 and n_machines <= 30)
    horizon = schedule.makespan
    legend = []
    if instance is not None and instance.due_dates is not None and len(schedule):
        horizon = max(horizon, _draw_due_dates(ax, schedule, instance, colors, legend))
    if downtimes is not None and len(downtimes):
        horizon = max(horizon, int(np.max(downtimes[:, 2])))
        legend.append(_draw_downtimes(ax, np.asarray(downtimes)))
    makespan = schedule.makespan
    ax.axvline(makespan, color="crimson", linestyle="--", linewidth=1.2)
    ax.text(makespan, -0.9, f"makespan {makespan} ", color="crimson", va="bottom", ha="right", fontsize=9)
    if now is not None:
        legend += _draw_now(ax, now)
    _legend(ax, legend, colors, n_jobs if n_jobs <= 40 else 0)
    ax.set_yticks(range(n_machines))
    ax.set_yticklabels([f"M{m}" for m in range(n_machines)], fontsize=8 if n_machines <= 30 else 5)
    ax.set_ylim(n_machines - 0.5, -1.2)
    ax.set_xlim(0, horizon * 1.04 + 1)
    ax.set_xlabel(f"time ({time_unit})")
    ax.set_ylabel("machine")
    name = instance.name if instance is not None else schedule.instance_name
    ax.set_title(title or f"{name or 'schedule'}: makespan {makespan}")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def _legend(ax, marks: list, colors: np.ndarray, n_jobs: int) -> None:
    """One legend beside the axes (never over a bar): what the marks mean, then which colour is which job."""
    from matplotlib.patches import Patch

    jobs = [Patch(facecolor=colors[j], edgecolor="black", linewidth=0.6, label=f"job {j}") for j in range(n_jobs)]
    if marks or jobs:
        ax.legend(handles=marks + jobs, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False,
                  ncol=1 if len(marks + jobs) <= 24 else 2)  # fmt: skip


def _draw_due_dates(ax, schedule: Schedule, instance: JobShopInstance, colors: np.ndarray, legend: list) -> int:
    """Each scheduled job's due date on the row of its last operation; late jobs ringed in red.
    Returns the latest due date drawn (the time axis must reach it)."""
    from matplotlib.lines import Line2D

    latest, late_any = 0, False
    for j in np.unique(schedule.job).tolist():
        rows = np.flatnonzero(schedule.job == j)
        last = rows[np.argmax(schedule.end[rows])]
        due = int(instance.due_dates[j])
        late = int(schedule.end[last]) > due
        late_any |= late
        ax.plot([due], [schedule.machine[last] - 0.48], marker="v", markersize=8, color=colors[j % len(colors)],
                markeredgecolor="red" if late else "black", markeredgewidth=1.6 if late else 0.6, zorder=5)  # fmt: skip
        latest = max(latest, due)
    legend.append(Line2D([], [], marker="v", color="grey", markeredgecolor="black", linestyle="", label="due date"))
    if late_any:
        legend.append(Line2D([], [], marker="v", color="grey", markeredgecolor="red", markeredgewidth=1.6,
                             linestyle="", label="due date of a late job"))  # fmt: skip
    return latest


def _draw_operations(ax, schedule: Schedule, colors: np.ndarray, now: int | None, *, label: bool) -> None:
    """One bar per operation; with ``now``, the planned ones (starting at or after it) faded."""
    durations = schedule.end - schedule.start
    planned = np.zeros(len(schedule), dtype=bool) if now is None else schedule.start >= now
    for rows, alpha, style in ((~planned, 1.0, "-"), (planned, 0.45, "--")):
        if rows.any():
            ax.barh(schedule.machine[rows], durations[rows], left=schedule.start[rows], height=0.8, alpha=alpha,
                    color=colors[schedule.job[rows] % len(colors)], edgecolor="black", linewidth=0.6, linestyle=style)  # fmt: skip
    if label:  # label the bars when they can be read
        for j, s, d, m in zip(schedule.job, schedule.start, durations, schedule.machine):
            if d >= 0.03 * max(schedule.makespan, 1):
                ax.text(s + d / 2, m, str(j), ha="center", va="center", fontsize=7)


def _draw_downtimes(ax, downtimes: np.ndarray):
    from matplotlib.patches import Patch

    for machine, start, end, _kind in downtimes.tolist():
        ax.barh(machine, end - start, left=start, height=0.95, color="lightgrey", edgecolor="dimgrey", hatch="//",
                linewidth=0.6, zorder=0)  # fmt: skip
    return Patch(facecolor="lightgrey", edgecolor="dimgrey", hatch="//", label="machine down (breakdown, maintenance)")


def _draw_now(ax, now: int) -> list:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    ax.axvline(now, color="black", linewidth=1.5)
    ax.text(now, -0.9, f" now = {now}", color="black", va="bottom", fontsize=9)
    return [
        Line2D([0], [0], color="black", linewidth=1.5, label=f"now (t = {now})"),
        Patch(facecolor="tab:blue", edgecolor="black", label="done or running"),
        Patch(facecolor="tab:blue", edgecolor="black", alpha=0.45, linestyle="--", label="planned"),
    ]


def save_gantt(schedule: Schedule, path: str | os.PathLike, instance: JobShopInstance | None = None, **kwargs) -> Path:
    """Draw the Gantt chart to an image file (format from the suffix, e.g. .png, .svg, .pdf)."""
    plt = _pyplot()
    fig = gantt_figure(schedule, instance, **kwargs)
    path = Path(path)
    try:
        fig.savefig(path, bbox_inches="tight")  # the job legend sits beside the axes
    finally:
        plt.close(fig)
    return path


def gantt_rgb(schedule: Schedule, instance: JobShopInstance | None = None) -> np.ndarray:
    """The Gantt chart as an ``(H, W, 3)`` uint8 array (the env's ``rgb_array`` render)."""
    plt = _pyplot()
    fig = gantt_figure(schedule, instance)
    try:
        fig.canvas.draw()
        return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    finally:
        plt.close(fig)


_ANSI_COLORS = [31, 32, 33, 34, 35, 36, 91, 92, 93, 94, 95, 96]
_SYMBOLS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def gantt_text(
    schedule: Schedule, instance: JobShopInstance | None = None, *, width: int = 80, color: bool = True
) -> str:
    """A terminal Gantt chart: one line per machine, each job drawn with its own symbol/colour."""
    n_machines = instance.n_machines if instance is not None else int(schedule.machine.max(initial=-1)) + 1
    makespan = max(schedule.makespan, 1)
    scale = width / makespan
    lines = []
    name = instance.name if instance is not None else schedule.instance_name
    lines.append(f"{name or 'schedule'}  makespan {schedule.makespan}  (1 char = {makespan / width:.3g} time units)")
    for m in range(n_machines):
        cells = [" "] * width
        codes: list[int | None] = [None] * width
        for i in np.flatnonzero(schedule.machine == m):
            j = int(schedule.job[i])
            first = int(schedule.start[i] * scale)
            last = max(first + 1, int(round(schedule.end[i] * scale)))
            for c in range(first, min(last, width)):
                cells[c] = _SYMBOLS[j % len(_SYMBOLS)]
                codes[c] = _ANSI_COLORS[j % len(_ANSI_COLORS)]
        if color:
            row = "".join(f"\x1b[{code}m{ch}\x1b[0m" if code else ch for ch, code in zip(cells, codes))
        else:
            row = "".join(cells)
        lines.append(f"M{m:<3}|{row}|")
    return "\n".join(lines)

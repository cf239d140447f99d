"""Reports of a compare: PNG charts, one self-contained HTML file, and a terminal table.

The HTML report has a section per model (its table and charts) and the environment (versions,
commit, machine, wall time) at the foot. The headline column is the paired difference to
``none`` with its 95% confidence interval; p-values are paired t-tests adjusted by Holm's method
over the model's techniques. Charts: dot-and-interval plots (no truncated bars), learning curves
with a band over seeds on a y-axis shared by the model's panels, and reliability diagrams that
plot only bins holding at least :data:`MIN_BIN_COUNT` test predictions, with the counts shown.
"""

from __future__ import annotations

import base64
import html
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dropkit.experiments._atomic import save_figure, write_text
from dropkit.experiments.compare import Row

__all__ = [
    "COLUMNS",
    "DPI",
    "MIN_BIN_COUNT",
    "environment",
    "format_cell",
    "reliable_bins",
    "render_terminal",
    "table_rows",
    "write_report",
]

COLUMNS = (
    "model",
    "technique",
    "rate",
    "train size",
    "seeds",
    "test score",
    "Δ vs none [95% CI]",
    "p (t, Holm)",
    "p (t-test)",
    "p (Wilcoxon)",
    "val score",
    "test NLL",
    "ECE",
    "gap",
    "s / run",
)

#: Columns left out of the terminal table (the HTML report has them all).
TERMINAL_HIDDEN = ("p (t-test)", "p (Wilcoxon)", "val score")
#: Resolution of every chart.
DPI = 150
#: A reliability bin is plotted only when it holds at least this many test predictions
#: (summed over the row's seeds and folds): a bin of one sample is noise.
MIN_BIN_COUNT = 20
_FONTS: dict[str, Any] = {
    "font.size": 11,
    "axes.titlesize": 12,
    "axes.labelsize": 11,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "legend.fontsize": 9,
}


def format_cell(mean: float, std: float, percent: bool = False) -> str:
    """``mean ± std`` with 4 decimals (2 for percentages): the table's one number format."""
    if math.isnan(mean):
        return "–"
    if percent:
        return f"{100 * mean:.2f} ± {100 * std:.2f}"
    return f"{mean:.4f} ± {std:.4f}"


def _p(value: float | None) -> str:
    return "–" if value is None else f"{value:.3g}"


def _delta(row: Row, percent: bool) -> str:
    if row.delta_vs_none is None:
        return "–"
    scale, digits = (100.0, 2) if percent else (1.0, 4)
    text = f"{scale * row.delta_vs_none:+.{digits}f}"
    if row.delta_ci is not None:
        low, high = row.delta_ci
        text += f" [{scale * low:+.{digits}f}, {scale * high:+.{digits}f}]"
    return text


def table_rows(rows: Sequence[Row]) -> list[list[str]]:
    """The summary table as strings (what both the terminal and the HTML show)."""
    table = []
    for row in rows:
        percent = bool(row.reliability)  # classification: accuracy shown in %
        table.append(
            [
                row.model,
                row.technique,
                f"{row.rate:g}",
                "all" if row.train_size is None else str(row.train_size),
                str(len(row.seeds)),
                format_cell(*Row.stats(row.test_score), percent=percent),
                _delta(row, percent),
                _p(row.p_value_holm),
                _p(row.p_value_t),
                _p(row.p_value_wilcoxon),
                format_cell(*Row.stats(row.val_score), percent=percent),
                format_cell(*Row.stats(row.test_nll)),
                format_cell(*Row.stats(row.test_ece)),
                format_cell(*Row.stats(row.gap)),
                f"{Row.stats(row.wall_s)[0]:.1f}",
            ]
        )
    return table


def render_terminal(rows: Sequence[Row], title: str = "dropkit compare") -> None:
    """Print the summary table with rich."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:
        console = Console(width=200)  # a log file should not wrap every cell
    shown = [i for i, c in enumerate(COLUMNS) if c not in TERMINAL_HIDDEN]
    if all(row.train_size is None for row in rows):
        shown.remove(COLUMNS.index("train size"))
    table = Table(title=title)
    for index in shown:
        table.add_column(COLUMNS[index], justify="left" if index < 2 else "right", no_wrap=True)
    for cells in table_rows(rows):
        table.add_row(*(cells[index] for index in shown))
    console.print(table)


def _label(row: Row) -> str:
    size = "" if row.train_size is None else f", n={row.train_size}"
    return row.technique if row.technique == "none" else f"{row.technique} p={row.rate:g}{size}"


def _interval(values: Sequence[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95% t interval (0 for one value)."""
    from scipy import stats

    array = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    if array.size == 0:
        return math.nan, math.nan
    if array.size == 1:
        return float(array[0]), 0.0
    half = stats.t.ppf(0.975, array.size - 1) * array.std(ddof=1) / math.sqrt(array.size)
    return float(array.mean()), float(half)


def _plots(rows: Sequence[Row], directory: Path) -> dict[str, list[tuple[str, Path]]]:
    """Every chart of every model, as ``{model: [(caption, path), ...]}``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written: dict[str, list[tuple[str, Path]]] = {}

    def save(figure: Any, name: str, caption: str, model: str) -> None:
        path = directory / name
        try:
            save_figure(figure, path, dpi=DPI, bbox_inches="tight")  # whole or not at all
        finally:
            plt.close(figure)
        written.setdefault(model, []).append((caption, path))

    with matplotlib.rc_context(_FONTS):  # type: ignore[arg-type]
        for model in dict.fromkeys(r.model for r in rows):
            model_rows = [r for r in rows if r.model == model]
            percent = bool(model_rows[0].reliability)
            scale = 100.0 if percent else 1.0
            unit = "test accuracy (%)" if percent else "test score (−RMSE)"
            seeds = max(len(r.seeds) for r in model_rows)
            _curves(plt, model_rows, model, seeds, save)
            _dots(plt, model_rows, model, scale, unit, save)
            _sweeps(plt, model_rows, model, scale, unit, save)
            _reliability(plt, model_rows, model, save)
    return written


def _curves(plt: Any, model_rows: list[Row], model: str, seeds: int, save: Any) -> None:
    # Learning curves: one panel per (technique, rate), one y-axis for the model's panels, a
    # band of ± one standard deviation over seeds: where validation loss turns up.
    columns = min(3, len(model_rows))
    lines = math.ceil(len(model_rows) / columns)
    figure, axes = plt.subplots(
        lines,
        columns,
        figsize=(4.2 * columns, 3.0 * lines),
        squeeze=False,
        sharey=True,
        constrained_layout=True,
    )
    for axis, row in zip(axes.flat, model_rows, strict=False):
        epochs = np.arange(1, len(row.curves["train_loss"]) + 1)
        for key, label, colour in (
            ("train_loss", "train", "tab:blue"),
            ("val_loss", "validation", "tab:orange"),
        ):
            mean = np.asarray(row.curves[key])
            spread = np.asarray(row.curves_std.get(key, np.zeros_like(mean)))
            axis.plot(epochs, mean, color=colour, label=label)
            axis.fill_between(epochs, mean - spread, mean + spread, color=colour, alpha=0.25)
        axis.set_title(_label(row))
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
    for axis in axes[:, 0]:
        axis.set_ylabel("loss")
    for axis in list(axes.flat)[len(model_rows) :]:
        axis.axis("off")
    axes.flat[0].legend()
    figure.suptitle(f"{model}: loss, mean ± 1 sd over {seeds} seed(s)")
    save(
        figure,
        f"curves-{model}.png",
        f"{model}: learning curves (train and validation loss; line = mean over seeds, band = "
        "± 1 standard deviation; one y-axis for all panels)",
        model,
    )


def _dots(plt: Any, model_rows: list[Row], model: str, scale: float, unit: str, save: Any) -> None:
    # Dot-and-interval: the test score (mean, 95% t interval over seeds) and the paired
    # difference to `none` with its 95% interval; no bars, so no truncated axis.
    labels = [_label(r) for r in model_rows]
    positions = np.arange(len(model_rows))[::-1]
    height = max(2.6, 0.45 * len(model_rows) + 1.2)
    figure, (left, right) = plt.subplots(
        1, 2, figsize=(10.5, height), sharey=True, constrained_layout=True
    )
    means, halves = zip(*(_interval(r.test_score) for r in model_rows), strict=True)
    left.errorbar(
        scale * np.asarray(means),
        positions,
        xerr=scale * np.asarray(halves),
        fmt="o",
        capsize=4,
        color="tab:blue",
    )
    left.set_yticks(positions, labels)
    left.set_xlabel(unit)
    left.set_title("test score, mean and 95% CI")
    left.grid(axis="x", alpha=0.3)
    compared = [(p, r) for p, r in zip(positions, model_rows, strict=True) if r.delta_ci]
    for position, row in compared:
        assert row.delta_ci is not None and row.delta_vs_none is not None
        low, high = row.delta_ci
        colour = "tab:green" if low > 0 else "tab:red" if high < 0 else "tab:gray"
        right.errorbar(
            scale * row.delta_vs_none,
            position,
            xerr=[[scale * (row.delta_vs_none - low)], [scale * (high - row.delta_vs_none)]],
            fmt="o",
            capsize=4,
            color=colour,
        )
    right.axvline(0.0, color="black", lw=1)
    right.set_xlabel(f"Δ vs none ({'points' if scale == 100 else 'score'})")
    right.set_title("paired difference to none, 95% CI")
    right.grid(axis="x", alpha=0.3)
    save(
        figure,
        f"final-{model}.png",
        f"{model}: test score (left) and paired difference to none (right), mean and 95% "
        "t interval over seeds; green/red: the interval excludes 0",
        model,
    )


def _sweeps(
    plt: Any, model_rows: list[Row], model: str, scale: float, unit: str, save: Any
) -> None:
    # Rate sweep (Srivastava 2014 Fig. 9 shape) and data-set size (Fig. 10 shape).
    swept = [
        t
        for t in dict.fromkeys(r.technique for r in model_rows)
        if len({r.rate for r in model_rows if r.technique == t}) > 1
    ]
    if swept:
        figure, axis = plt.subplots(figsize=(6.4, 4.0), constrained_layout=True)
        for technique in swept:
            points = sorted(
                (r for r in model_rows if r.technique == technique), key=lambda r: r.rate
            )
            means, halves = zip(*(_interval(r.test_score) for r in points), strict=True)
            axis.errorbar(
                [r.rate for r in points],
                scale * np.asarray(means),
                yerr=scale * np.asarray(halves),
                marker="o",
                capsize=3,
                label=technique,
            )
        base = [r for r in model_rows if r.technique == "none"]
        if base:
            axis.axhline(scale * _interval(base[0].test_score)[0], color="gray", ls="--",
                         label="none")  # fmt: skip
        axis.set_xlabel("dropout rate p")
        axis.set_ylabel(unit)
        axis.legend()
        axis.grid(alpha=0.3)
        axis.set_title(f"{model}: rate sweep (mean, 95% CI)")
        save(figure, f"sweep-{model}.png", f"{model}: test score against the rate", model)

    sizes = sorted({r.train_size for r in model_rows if r.train_size is not None})
    if len(sizes) > 1:
        figure, axis = plt.subplots(figsize=(6.4, 4.0), constrained_layout=True)
        for label in dict.fromkeys(_label(r).split(", n=")[0] for r in model_rows):
            points = sorted(
                (r for r in model_rows if r.train_size and _label(r).startswith(label)),
                key=lambda r: r.train_size or 0,
            )
            means, halves = zip(*(_interval(r.test_score) for r in points), strict=True)
            axis.errorbar(
                [r.train_size or 0 for r in points],
                scale * np.asarray(means),
                yerr=scale * np.asarray(halves),
                marker="o",
                capsize=3,
                label=label,
            )
        axis.set_xscale("log")
        axis.set_xticks(sizes, [str(size) for size in sizes])
        axis.minorticks_off()
        axis.set_xlabel("training-set size")
        axis.set_ylabel(unit)
        axis.legend()
        axis.grid(alpha=0.3)
        axis.set_title(f"{model}: effect of the data-set size (mean, 95% CI)")
        save(
            figure,
            f"size-{model}.png",
            f"{model}: test score against training-set size",
            model,
        )


def reliable_bins(
    reliability: dict[str, list[float]], minimum: int = MIN_BIN_COUNT
) -> tuple[np.ndarray, np.ndarray]:
    """Mean confidence and accuracy of the bins holding at least ``minimum`` predictions (the
    points a reliability diagram plots)."""
    count = np.asarray(reliability["count"], dtype=float)
    used = count >= minimum
    confidence = np.asarray(reliability["confidence"], dtype=float)[used] / count[used]
    accuracy = np.asarray(reliability["correct"], dtype=float)[used] / count[used]
    return confidence, accuracy


def _reliability(plt: Any, model_rows: list[Row], model: str, save: Any) -> None:
    # Reliability diagrams (classification only): accuracy against confidence per bin, only
    # for bins holding MIN_BIN_COUNT predictions, over a panel of the bin counts.
    calibrated = [r for r in model_rows if r.reliability]
    if not calibrated:
        return
    figure, (top, bottom) = plt.subplots(
        2,
        1,
        figsize=(5.6, 5.8),
        sharex=True,
        gridspec_kw={"height_ratios": [3, 1.3]},
        constrained_layout=True,
    )
    top.plot([0, 1], [0, 1], color="gray", ls="--", lw=1, label="perfect calibration")
    bins = len(calibrated[0].reliability["count"])
    edges = np.linspace(0.0, 1.0, bins + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    for row in calibrated:
        confidence, accuracy = reliable_bins(row.reliability)
        (line,) = top.plot(confidence, accuracy, marker="o", label=_label(row))
        bottom.step(centres, row.reliability["count"], where="mid", color=line.get_color())
    bottom.axhline(MIN_BIN_COUNT, color="black", ls=":", lw=1, label=f"min {MIN_BIN_COUNT}")
    top.set_ylabel("accuracy")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.legend(loc="upper left")
    top.grid(alpha=0.3)
    top.set_title(f"{model}: reliability (test set, all seeds)")
    bottom.set_yscale("log")
    bottom.set_xlabel("confidence")
    bottom.set_ylabel("predictions / bin")
    bottom.legend(loc="upper left")
    bottom.grid(alpha=0.3)
    save(
        figure,
        f"reliability-{model}.png",
        f"{model}: reliability diagram ({bins} equal-width bins; only bins with at least "
        f"{MIN_BIN_COUNT} test predictions over the seeds are plotted); below, the predictions "
        "per bin",
        model,
    )


def _git_commit() -> str:
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no", "."],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    return commit + (" (with uncommitted changes)" if dirty else "")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(
    *, wall_s: float | None = None, jobs: int | None = None, runs: Sequence[Any] = ()
) -> list[tuple[str, str]]:
    """What the report's foot states: versions, commit, machine, wall and CPU time."""
    import importlib.metadata

    import torch

    def version(name: str) -> str:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "–"

    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    packages = ("dropkit", "torch", "numpy", "scipy", "scikit-learn", "matplotlib")
    lines = [
        (
            "versions",
            ", ".join(f"{name} {version(name)}" for name in packages)
            + f", Python {platform.python_version()}",
        ),
        ("commit", _git_commit()),
        (
            "machine",
            f"{platform.platform()}; {_cpu_model()}; {cores} usable core(s); "
            f"torch {torch.get_num_threads()} thread(s) in the main process",
        ),
        ("written", time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())),
        (
            "command",
            " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv)),
        ),
    ]
    if wall_s is not None:
        text = f"{wall_s:.1f} s for the runs of this invocation"
        if jobs is not None:
            text += f" ({jobs} job(s))"
        lines.append(("wall time", text))
    if runs:
        run_wall = sum(float(r.get("wall_s") or 0.0) for _, r in runs)
        run_cpu = sum(float(r.get("cpu_s") or 0.0) for _, r in runs)
        lines.append(
            ("run time", f"{len(runs)} runs: {run_wall:.0f} s wall, {run_cpu:.0f} s CPU in all")
        )
    return lines


_STYLE = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1250px;padding:0 1em;
line-height:1.4}.scroll{overflow-x:auto}table{border-collapse:collapse;font-size:14px}
td,th{border:1px solid #ccc;padding:3px 8px;white-space:nowrap}th{background:#f3f3f3}
td{text-align:right;font-variant-numeric:tabular-nums}td.text{text-align:left}
img{max-width:100%;height:auto;border:1px solid #eee;margin:6px 0}figure{margin:1.2em 0}
figcaption{font-size:14px;color:#333}footer{margin-top:3em;border-top:1px solid #ccc;
font-size:13px}footer td,footer th{text-align:left;white-space:normal;border:none}"""


def _table(rows: Sequence[Row], model: str) -> str:
    shown = range(len(COLUMNS))
    head = "".join(f"<th>{html.escape(COLUMNS[i])}</th>" for i in shown)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="text">{html.escape(cells[i])}</td>'
            if i < 2
            else f"<td>{html.escape(cells[i])}</td>"
            for i in shown
        )
        + "</tr>"
        for cells in table_rows(rows)
    )
    return (
        f"<div class='scroll'><table class='summary' id='summary-{html.escape(model)}'>"
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"
    )


def write_report(
    rows: Sequence[Row],
    directory: str | Path,
    *,
    title: str = "dropkit compare",
    notes: Sequence[str] = (),
    environment: Sequence[tuple[str, str]] | None = None,
) -> Path:
    """Write ``report.html`` (PNGs embedded as base64) and the PNGs into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    figures = _plots(rows, directory)
    sections = []
    for model in dict.fromkeys(r.model for r in rows):
        model_rows = [r for r in rows if r.model == model]
        images = "".join(
            f"<figure><img alt='{html.escape(caption)}' src='data:image/png;base64,"
            f"{base64.b64encode(path.read_bytes()).decode()}'><figcaption>"
            f"{html.escape(caption)}</figcaption></figure>"
            for caption, path in figures.get(model, [])
        )
        sections.append(
            f"<section id='model-{html.escape(model)}'><h2>Model {html.escape(model)}</h2>"
            f"{_table(model_rows, model)}{images}</section>"
        )
    notes_html = "".join(f"<p>{html.escape(note)}</p>" for note in notes)
    foot = "".join(
        f"<tr><th>{html.escape(key)}</th><td>{html.escape(value)}</td></tr>"
        for key, value in (environment if environment is not None else _safe_environment())
    )
    document = (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>{notes_html}"
        "<p>Scores are accuracy (%) for classification, −RMSE for regression; mean ± standard "
        "deviation over seeds (folds averaged within a seed). <b>Δ vs none</b> is the mean "
        "paired difference to <i>none</i> of the same model (paired by seed), with its 95% "
        "t confidence interval. <b>p (t, Holm)</b>: the paired t-test's p-value adjusted by "
        "Holm's method over the model's techniques (family-wise error rate); the raw paired "
        "t-test and Wilcoxon signed-rank p-values follow (with n seeds the two-sided Wilcoxon "
        "p cannot go below 2/2<sup>n</sup>: 0.0625 for 5). Gap = training score (eval mode) − "
        "test score.</p>"
        f"{''.join(sections)}<footer><h2>Environment</h2><table>{foot}</table></footer>"
        "</body></html>"
    )
    path = directory / "report.html"
    return write_text(path, document)


def _safe_environment() -> list[tuple[str, str]]:
    try:
        return environment()
    except Exception as error:  # the report must not fail for want of a version string
        return [("environment", f"unavailable: {error}")]

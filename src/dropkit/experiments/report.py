"""Reports of a compare: PNG charts, one self-contained HTML file, and a terminal table."""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dropkit.experiments._atomic import save_figure, write_text
from dropkit.experiments.compare import Row

__all__ = ["format_cell", "render_terminal", "table_rows", "write_report"]

COLUMNS = (
    "model",
    "technique",
    "rate",
    "train size",
    "seeds",
    "test score",
    "Δ vs none",
    "p (t-test)",
    "p (Wilcoxon)",
    "val score",
    "test NLL",
    "ECE",
    "gap",
    "s / run",
)


#: Columns left out of the terminal table (the HTML report has them all).
TERMINAL_HIDDEN = ("p (Wilcoxon)", "val score")


def format_cell(mean: float, std: float, percent: bool = False) -> str:
    """``mean ± std`` with 4 decimals (2 for percentages): the table's one number format."""
    if math.isnan(mean):
        return "–"
    if percent:
        return f"{100 * mean:.2f} ± {100 * std:.2f}"
    return f"{mean:.4f} ± {std:.4f}"


def _p(value: float | None) -> str:
    return "–" if value is None else f"{value:.3g}"


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
                "–"
                if row.delta_vs_none is None
                else (
                    f"{100 * row.delta_vs_none:+.2f}" if percent else f"{row.delta_vs_none:+.4f}"
                ),
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
        table.add_column(COLUMNS[index], justify="left" if index < 2 else "right")
    for cells in table_rows(rows):
        table.add_row(*(cells[index] for index in shown))
    console.print(table)


def _label(row: Row) -> str:
    size = "" if row.train_size is None else f", n={row.train_size}"
    return row.technique if row.technique == "none" else f"{row.technique} p={row.rate:g}{size}"


def _plots(rows: Sequence[Row], directory: Path) -> list[tuple[str, Path]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written: list[tuple[str, Path]] = []

    def save(figure: object, name: str, caption: str) -> None:
        path = directory / name
        figure.tight_layout()  # type: ignore[attr-defined]
        save_figure(figure, path, dpi=90)  # whole or not at all
        plt.close(figure)  # type: ignore[arg-type]
        written.append((caption, path))

    models = list(dict.fromkeys(r.model for r in rows))
    for model in models:
        model_rows = [r for r in rows if r.model == model]
        # Learning curves: one panel per (technique, rate): where validation loss turns up.
        columns = min(4, len(model_rows))
        lines = math.ceil(len(model_rows) / columns)
        figure, axes = plt.subplots(
            lines, columns, figsize=(3.6 * columns, 2.6 * lines), squeeze=False
        )
        for axis, row in zip(axes.flat, model_rows, strict=False):
            epochs = np.arange(1, len(row.curves["train_loss"]) + 1)
            axis.plot(epochs, row.curves["train_loss"], label="train")
            axis.plot(epochs, row.curves["val_loss"], label="validation")
            axis.set_title(_label(row), fontsize=9)
            axis.set_xlabel("epoch", fontsize=8)
            axis.set_ylabel("loss", fontsize=8)
        for axis in list(axes.flat)[len(model_rows) :]:
            axis.axis("off")
        axes.flat[0].legend(fontsize=8)
        save(figure, f"curves-{model}.png", f"{model}: learning curves (train vs validation loss)")

        # Final metric with error bars (mean ± std over seeds).
        figure, axis = plt.subplots(figsize=(max(4.0, 0.7 * len(model_rows) + 2), 3.2))
        means = [100 * Row.stats(r.test_score)[0] for r in model_rows]
        stds = [100 * Row.stats(r.test_score)[1] for r in model_rows]
        axis.bar(range(len(model_rows)), means, yerr=stds, capsize=4, color="tab:blue")
        axis.set_xticks(
            range(len(model_rows)),
            [_label(r) for r in model_rows],
            rotation=35,
            ha="right",
            fontsize=8,
        )
        low = min(m - s for m, s in zip(means, stds, strict=True))
        axis.set_ylim(max(0.0, low - 5), min(100.0, max(means) + max(stds) + 3))
        axis.set_ylabel("test score (%)")
        axis.set_title(f"{model}: test score, mean ± std over seeds", fontsize=10)
        save(figure, f"final-{model}.png", f"{model}: final test score with error bars")

        # Rate sweep (Srivastava 2014 Fig. 9 shape): score against rate, per technique.
        swept = [
            t
            for t in dict.fromkeys(r.technique for r in model_rows)
            if len({r.rate for r in model_rows if r.technique == t}) > 1
        ]
        if swept:
            figure, axis = plt.subplots(figsize=(5, 3.2))
            for technique in swept:
                points = sorted(
                    (r for r in model_rows if r.technique == technique), key=lambda r: r.rate
                )
                axis.errorbar(
                    [r.rate for r in points],
                    [100 * Row.stats(r.test_score)[0] for r in points],
                    yerr=[100 * Row.stats(r.test_score)[1] for r in points],
                    marker="o",
                    capsize=3,
                    label=technique,
                )
            base = [r for r in model_rows if r.technique == "none"]
            if base:
                axis.axhline(
                    100 * Row.stats(base[0].test_score)[0], color="gray", ls="--", label="none"
                )
            axis.set_xlabel("dropout rate p")
            axis.set_ylabel("test score (%)")
            axis.legend(fontsize=8)
            axis.set_title(f"{model}: rate sweep", fontsize=10)
            save(figure, f"sweep-{model}.png", f"{model}: test score against the rate")

        # Data-set size (Srivastava 2014 Fig. 10 shape): score against the training-set size.
        sizes = sorted({r.train_size for r in model_rows if r.train_size is not None})
        if len(sizes) > 1:
            figure, axis = plt.subplots(figsize=(5, 3.2))
            for label in dict.fromkeys(_label(r).split(", n=")[0] for r in model_rows):
                points = sorted(
                    (r for r in model_rows if r.train_size and _label(r).startswith(label)),
                    key=lambda r: r.train_size or 0,
                )
                axis.errorbar(
                    [r.train_size or 0 for r in points],
                    [100 * Row.stats(r.test_score)[0] for r in points],
                    yerr=[100 * Row.stats(r.test_score)[1] for r in points],
                    marker="o",
                    capsize=3,
                    label=label,
                )
            axis.set_xscale("log")
            axis.set_xticks(sizes, [str(size) for size in sizes])
            axis.minorticks_off()
            axis.set_xlabel("training-set size")
            axis.set_ylabel("test score (%)")
            axis.legend(fontsize=8)
            axis.set_title(f"{model}: effect of the data-set size", fontsize=10)
            save(figure, f"size-{model}.png", f"{model}: test score against training-set size")

        # Reliability diagrams (classification only): accuracy against confidence per bin.
        calibrated = [r for r in model_rows if r.reliability]
        if calibrated:
            figure, axis = plt.subplots(figsize=(4.2, 4))
            axis.plot([0, 1], [0, 1], color="gray", ls="--", lw=1)
            for row in calibrated:
                count = np.asarray(row.reliability["count"])
                used = count > 0
                confidence = np.asarray(row.reliability["confidence"])[used] / count[used]
                accuracy = np.asarray(row.reliability["correct"])[used] / count[used]
                axis.plot(confidence, accuracy, marker=".", label=_label(row))
            axis.set_xlabel("confidence")
            axis.set_ylabel("accuracy")
            axis.legend(fontsize=7)
            axis.set_title(f"{model}: reliability (test set)", fontsize=10)
            save(figure, f"reliability-{model}.png", f"{model}: reliability diagram")
    return written


_STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 7px}
td{text-align:right;font-variant-numeric:tabular-nums}td.text{text-align:left}
img{max-width:100%;border:1px solid #eee;margin:6px 0}figure{margin:1em 0}"""


def write_report(
    rows: Sequence[Row],
    directory: str | Path,
    *,
    title: str = "dropkit compare",
    notes: Sequence[str] = (),
) -> Path:
    """Write ``report.html`` (PNGs embedded as base64) and the PNGs into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    figures = _plots(rows, directory)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="text">{html.escape(c)}</td>' if i < 2 else f"<td>{html.escape(c)}</td>"
            for i, c in enumerate(cells)
        )
        + "</tr>"
        for cells in table_rows(rows)
    )
    images = "".join(
        f"<figure><img alt='{html.escape(caption)}' src='data:image/png;base64,"
        f"{base64.b64encode(path.read_bytes()).decode()}'><figcaption>{html.escape(caption)}"
        "</figcaption></figure>"
        for caption, path in figures
    )
    notes_html = "".join(f"<p>{html.escape(note)}</p>" for note in notes)
    document = (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>{notes_html}"
        "<p>Scores are accuracy (%) for classification, −RMSE for regression; mean ± std over "
        "seeds (folds averaged within a seed). Δ and p-values pair each row with <i>none</i> "
        "of the same model by seed. Gap = training score (eval mode) − test score.</p>"
        f"<h2>Summary</h2><table id='summary'><thead><tr>{head}</tr></thead><tbody>{body}"
        f"</tbody></table><h2>Charts</h2>{images}</body></html>"
    )
    path = directory / "report.html"
    return write_text(path, document)

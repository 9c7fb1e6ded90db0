"""Report figures, drawn with matplotlib's object API on the Agg canvas.

No pyplot: a ``Figure`` built directly is never registered with a GUI backend or a
global figure manager, so reports render headless, in threads, and leak nothing.
Every function takes plain numbers (lists / numpy arrays) and returns a ``Figure``;
:func:`figure_png` turns it into PNG bytes.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from scarce.report.fonts import figure_labels

#: Above this many classes, confusion-matrix cells carry no numbers and no tick labels.
MAX_LABELLED_CLASSES = 30
#: Per-class bars shown at most (the worst classes first).
MAX_BARS = 40


def new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def figure_png(fig: Figure) -> bytes:
    """PNG bytes of ``fig`` (Agg)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _series(rows: Sequence[dict], key: str) -> tuple[list[int], list[float]]:
    pts = [(r["epoch"], r[key]) for r in rows if isinstance(r.get(key), (int, float))]
    return [p[0] for p in pts], [p[1] for p in pts]


def training_curves(rows: Sequence[dict], best_epoch: int | None = None) -> Figure:
    """Train loss, val top-1 (raw model and EMA) and learning rate per epoch (0-based, as in
    metrics.jsonl, summary.json and the CLI).

    ``rows``: metrics.jsonl records (``epoch`` 0-based, ``train_loss``, ``val_top1``,
    ``val_top1_ema``, ``lr``); missing keys are simply not drawn.
    """
    fig = new_figure(12, 3.6)
    ax_loss, ax_top1, ax_lr = fig.subplots(1, 3)
    ax_loss.plot(*_series(rows, "train_loss"), marker=".", color="tab:red", label="train loss")
    ax_loss.set(title="train loss", xlabel="epoch", ylabel="loss")
    for key, label, color in (
        ("val_top1", "val top-1 (model)", "tab:blue"),
        ("val_top1_ema", "val top-1 (EMA)", "tab:green"),
    ):
        x, y = _series(rows, key)
        if x:
            ax_top1.plot(x, y, marker=".", color=color, label=label)
    if best_epoch is not None and best_epoch >= 0:
        for ax in (ax_loss, ax_top1):
            ax.axvline(best_epoch, color="gray", linestyle=":", label=f"best epoch ({best_epoch})")
    ax_top1.set(title="validation top-1", xlabel="epoch", ylabel="top-1", ylim=(0, 1))
    ax_lr.plot(*_series(rows, "lr"), marker=".", color="tab:purple")
    ax_lr.set(title="learning rate", xlabel="epoch", ylabel="lr")
    for ax in (ax_loss, ax_top1, ax_lr):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in (ax_loss, ax_top1):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    return fig


def confusion_matrix_figure(cm: np.ndarray, classes: Sequence[str]) -> Figure:
    """Confusion matrix ``cm`` ``[C, C]`` (rows: true class, columns: predicted), counts.

    Colours are row-normalised (recall), so rare classes are as visible as common ones.
    """
    c = len(classes)
    size = min(14.0, max(5.0, 0.55 * c + 2.5))
    fig = new_figure(size, size * 0.85)
    ax = fig.subplots()
    rates = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, shrink=0.8, label="fraction of the true class")
    axis = "class index (the per-class table lists them)"
    if c <= MAX_LABELLED_CLASSES:
        labels, families = figure_labels(classes)
        ax.set_xticks(range(c), labels, rotation=45, ha="right", fontsize=8, fontfamily=families)
        ax.set_yticks(range(c), labels, fontsize=8, fontfamily=families)
        axis = "class" if labels == list(classes) else "class (#: index in the per-class table)"
        for i in range(c):
            for j in range(c):
                if cm[i, j]:
                    ax.text(
                        j,
                        i,
                        str(int(cm[i, j])),
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if rates[i, j] > 0.5 else "black",
                    )
    else:  # too many to name: indices, as integers
        for locator in (ax.xaxis, ax.yaxis):
            locator.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel=f"predicted {axis}", ylabel=f"true {axis}", title=f"confusion matrix ({int(cm.sum())} images)")
    return fig


def per_class_figure(accuracy: Sequence[float], classes: Sequence[str], counts: Sequence[int]) -> Figure:
    """Horizontal bars of per-class accuracy, worst first (at most ``MAX_BARS`` classes)."""
    order = [i for i in np.argsort(np.asarray(accuracy, dtype=float), kind="stable") if not math.isnan(accuracy[i])]
    shown = order[:MAX_BARS]
    fig = new_figure(8, max(2.5, 0.28 * len(shown) + 1.2))
    ax = fig.subplots()
    y = np.arange(len(shown))
    values = [accuracy[i] for i in shown]
    ax.barh(y, values, color=["tab:red" if v < np.nanmean(accuracy) else "tab:blue" for v in values])
    labels, families = figure_labels(classes)
    ax.set_yticks(y, [f"{labels[i]} (n={counts[i]})" for i in shown], fontsize=8, fontfamily=families)
    ax.invert_yaxis()
    ax.axvline(float(np.nanmean(accuracy)), color="gray", linestyle=":", label="mean over classes")
    for yi, v in zip(y, values):
        inside = v > 0.85  # near the right edge the label goes inside the bar
        ax.text(
            v - 0.01 if inside else v + 0.01,
            yi,
            f"{v:.2f}",
            va="center",
            ha="right" if inside else "left",
            fontsize=7,
            color="white" if inside else "black",
        )
    title = "per-class accuracy (test)" + (f", {len(shown)} worst of {len(order)}" if len(order) > len(shown) else "")
    ax.set(xlim=(0, 1), xlabel="accuracy", title=title)
    ax.legend(fontsize=8, loc="upper right")
    return fig


def _reliability_axes(ax, bins: dict, title: str) -> None:
    edges = np.asarray(bins["edges"])
    counts = np.asarray(bins["counts"])
    width = np.diff(edges)
    acc = np.where(counts > 0, bins["accuracy"], np.nan)
    conf = np.where(counts > 0, bins["confidence"], np.nan)
    ax.bar(
        edges[:-1],
        np.nan_to_num(acc),
        width=width,
        align="edge",
        edgecolor="black",
        color="tab:blue",
        alpha=0.8,
        label="accuracy",
    )
    # The gap spans accuracy..confidence whichever is higher: over- and under-confidence alike.
    ax.bar(
        edges[:-1],
        np.nan_to_num(np.abs(conf - acc)),
        bottom=np.nan_to_num(np.fmin(acc, conf)),
        width=width,
        align="edge",
        color="tab:red",
        alpha=0.3,
        hatch="//",
        label="gap to mean confidence",
    )
    ax.plot([0, 1], [0, 1], color="gray", linestyle="--", label="perfect calibration")
    ax.set(
        xlim=(0, 1),
        ylim=(0, 1),
        xlabel="confidence (top probability)",
        ylabel="accuracy",
        title=f"{title}: ECE {bins['ece']:.4f}",
    )
    ax.legend(fontsize=8, loc="upper left")


def reliability_figure(before: dict, after: dict | None, temperature: float | None = None) -> Figure:
    """Reliability diagrams (``reliability_bins`` dicts) before and after temperature scaling."""
    panels = [(before, "before temperature (T=1)")]
    if after is not None:
        panels.append((after, f"after temperature (T={temperature:.3g})"))
    fig = new_figure(5.2 * len(panels), 4.4)
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    for ax, (bins, title) in zip(axes, panels):
        _reliability_axes(ax, bins, title)
    return fig


def timing_figure(rows: Sequence[dict]) -> Figure:
    """Seconds per epoch and training throughput (images/s)."""
    fig = new_figure(10, 3.2)
    ax_s, ax_ips = fig.subplots(1, 2)
    ax_s.bar(*_series(rows, "seconds"), color="tab:gray")
    ax_s.set(title="seconds per epoch", xlabel="epoch", ylabel="s")
    ax_ips.plot(*_series(rows, "images_per_s"), marker=".", color="tab:orange")
    ax_ips.set(title="training throughput", xlabel="epoch", ylabel="images / s")
    ax_ips.set_ylim(bottom=0)  # a zero baseline: small jitter should not look like a collapse
    for ax in (ax_s, ax_ips):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return fig


def confidence_bins_figure(
    edges: Sequence[float],
    counts: Sequence[int],
    base_acc: Sequence[float],
    vote_acc: Sequence[float],
    threshold: float | None,
) -> Figure:
    """Accuracy of the base model and of the vote per base-confidence bin, with bin sizes."""
    edges = np.asarray(edges)
    centers, width = (edges[:-1] + edges[1:]) / 2, np.diff(edges)
    counts = np.asarray(counts)
    mask = counts > 0
    fig = new_figure(9, 4)
    ax = fig.subplots()
    ax.bar(
        centers[mask] - width[mask] / 4,
        np.asarray(base_acc)[mask],
        width=width[mask] / 2,
        color="tab:blue",
        label="base model",
    )
    ax.bar(
        centers[mask] + width[mask] / 4,
        np.asarray(vote_acc)[mask],
        width=width[mask] / 2,
        color="tab:green",
        label="ensemble answer",
    )
    for x, n in zip(centers[mask], counts[mask]):
        ax.text(x, 1.01, f"n={int(n)}", ha="center", fontsize=7)
    if threshold is not None and threshold <= 1:
        ax.axvline(threshold, color="tab:red", linestyle="--", label=f"threshold {threshold:g}")
    ax.set(
        xlim=(0, 1),
        ylim=(0, 1.08),
        xlabel="base model confidence",
        ylabel="accuracy",
        title="accuracy by base-confidence bin",
    )
    ax.legend(fontsize=8, loc="lower right")
    return fig


def threshold_figure(
    thresholds: Sequence[float],
    accuracy: Sequence[float],
    replaced: Sequence[float],
    used: float | None,
    base_accuracy: float,
) -> Figure:
    """Plurality-vote accuracy and fraction of replaced answers against the threshold."""
    fig = new_figure(9, 4)
    ax = fig.subplots()
    ax.plot(thresholds, accuracy, marker=".", color="tab:green", label="plurality-vote accuracy")
    ax.axhline(base_accuracy, color="tab:blue", linestyle=":", label=f"base model ({base_accuracy:.4f})")
    if used is not None:
        ax.axvline(min(used, max(thresholds)), color="tab:red", linestyle="--", label=f"used threshold {used:g}")
    ax.set(xlabel="threshold (base confidence below it: plurality vote)", ylabel="accuracy", title="threshold curve")
    ax.grid(alpha=0.3)
    twin = ax.twinx()
    twin.plot(thresholds, replaced, color="tab:gray", alpha=0.6, label="answers replaced")
    twin.set(ylabel="fraction of answers replaced", ylim=(0, 1))
    lines = ax.get_legend_handles_labels()
    extra = twin.get_legend_handles_labels()
    ax.legend(lines[0] + extra[0], lines[1] + extra[1], fontsize=8, loc="best")
    return fig

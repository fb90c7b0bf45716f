"""What a person reads at the end of a job: plain-text tables (Markdown-compatible) and the PNG plots.

    table(headers, rows)                      every job's summary table
    plot_curves(panels, path, title)          metric curves over training steps (metrics.jsonl rows)
    plot_methods(results, path)               evaluation: one bar per (dataset, method), per metric
    plot_before_after(compare, path, title)   the main job: each method's metrics before and after training

matplotlib is imported inside the plot functions (Agg backend): importing this module stays cheap.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any, Sequence


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table with aligned columns."""
    cells = [[fmt(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    line = lambda items: "| " + " | ".join(s.ljust(w) for s, w in zip(items, widths)) + " |"  # noqa: E731
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(headers), sep] + [line(r) for r in cells])


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _label(*parts: str, width: int = 14) -> str:
    """A tick label that wraps instead of running into its neighbours."""
    return "\n".join(textwrap.fill(p, width, break_on_hyphens=True) for p in parts if p)


def plot_curves(panels: Sequence[tuple[str, Sequence[dict[str, Any]], Sequence[str]]], path: Path, title: str) -> None:
    """One panel per (title, metrics.jsonl rows, metric keys); x is each row's `step`."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(4.6 * max(len(panels), 1), 3.8), squeeze=False)
    for ax, (name, rows, keys) in zip(axes[0], panels):
        for k in keys:
            pts = [(r["step"], r[k]) for r in rows if isinstance(r.get(k), (int, float))]
            if pts:
                ax.plot(*zip(*pts), marker="o", ms=3, label=k)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("step")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


METRIC_TITLES = {
    "accuracy": "both-order accuracy (95% Wilson)",
    "consistency": "positional consistency (right in both orders, 95% Wilson)",
    "position_preference": "says Response 1 (0.5 = no position preference)",
    "valid_judgment_rate": "valid-format judgments",
}


def _labels(values: Sequence[float | None]) -> list[str]:
    """Bar labels: the value, or '-' where it was not measured (e.g. no valid verdict to take a share of)."""
    return ["-" if v is None else f"{v:.2f}" for v in values]


def _errors(values: Sequence[float], cis: Sequence[Any]) -> Any:
    """Matplotlib's yerr for bars with intervals (None: a bar without one)."""
    if not any(cis):
        return None
    return [
        [max(0.0, v - ci[0]) if ci else 0.0 for v, ci in zip(values, cis)],
        [max(0.0, ci[1] - v) if ci else 0.0 for v, ci in zip(values, cis)],
    ]


def plot_methods(results: Sequence[dict[str, Any]], path: Path, title: str = "") -> None:
    """Evaluation results: per metric, grouped bars (datasets on x, one bar per method), with the
    number of pairs each bar rests on in the tick label."""
    plt = _pyplot()
    datasets = list(dict.fromkeys(r["dataset"] for r in results))
    methods = list(dict.fromkeys(r["method"] for r in results))
    items = {r["dataset"]: r["n_items"] for r in results}
    fig, axes = plt.subplots(1, len(METRIC_TITLES), figsize=(max(12, 2.6 * len(datasets) + 6), 4.6), sharey=True)
    width = 0.8 / len(methods)
    for ax, (key, title) in zip(axes, METRIC_TITLES.items()):
        for k, method in enumerate(methods):
            mine = [next((r for r in results if r["dataset"] == d and r["method"] == method), {}) for d in datasets]
            raw = [r.get(key) for r in mine]
            values = [v or 0.0 for v in raw]
            cis = [r.get(f"{key}_ci") for r in mine]
            xs = [i + k * width for i in range(len(datasets))]
            bars = ax.bar(xs, values, width, label=method, yerr=_errors(values, cis), capsize=2)
            ax.bar_label(bars, labels=_labels(raw), fontsize=6)
        ticks = [i + width * (len(methods) - 1) / 2 for i in range(len(datasets))]
        ax.set_xticks(ticks, [_label(d, f"({items[d]} pairs)") for d in datasets], fontsize=8)
        ax.set_title(textwrap.fill(title, 32), fontsize=10)
        ax.set_ylim(0, 1.05)
    axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_before_after(compare: Sequence[dict[str, Any]], path: Path, title: str) -> None:
    """One panel per metric; on x each (dataset, method), with a before and an after bar."""
    plt = _pyplot()
    fig, axes = plt.subplots(
        1, len(METRIC_TITLES), figsize=(min(20, max(13, 0.8 * len(compare) * len(METRIC_TITLES))), 4.6)
    )
    labels = [_label(c["dataset"], c["method"], f"({c['pairs']} pairs)") for c in compare]
    xs = list(range(len(compare)))
    for ax, (m, name) in zip(axes, METRIC_TITLES.items()):
        for shift, when in ((-0.2, "before"), (0.2, "after")):
            raw = [c[m][when] for c in compare]
            values = [v or 0 for v in raw]
            cis = [c.get(f"{m}_ci", {}).get(when) for c in compare]
            bars = ax.bar([x + shift for x in xs], values, 0.4, label=when, yerr=_errors(values, cis), capsize=2)
            ax.bar_label(bars, labels=_labels(raw), fontsize=6)  # a 0.00 bar is visible as its label
        ax.set_xticks(xs, labels, fontsize=7)
        ax.set_ylim(0, 1.05)
        ax.set_title(textwrap.fill(name, 32), fontsize=10)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)

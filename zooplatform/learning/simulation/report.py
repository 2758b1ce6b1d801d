"""The simulation's output: tables (per round and final), the JSON file and the PNG plots."""
from __future__ import annotations

import json
import math
from pathlib import Path

ARM_STYLE = {  # colour, line style, label (drawn in this order: the platform's wide line stays visible
    # under the random arm's where they coincide, as they do when no model runs)
    "platform": ("#1b6ca8", "-", ("platform (BALD priorities + machine)", "platform (no model: no priorities)")),
    "random_priority": ("#e07b39", "-", ("random priorities + machine", "random priorities, no model")),
    "fixed40": ("#555555", "--", ("fixed 40 votes, majority (GZ2)",) * 2),
}
LINE = {"platform": {"lw": 4, "alpha": 0.55, "marker": "o", "ms": 7}, "random_priority": {"lw": 1.5, "marker": "s", "ms": 4},
        "fixed40": {"lw": 1.5, "marker": "o", "ms": 4}}
ROUND_COLUMNS = [("arm", "arm", "{}"), ("round", "round", "{}"), ("human_votes", "votes", "{}"),
                 ("retired", "retired", "{}"), ("retired_fraction", "retired%", "{:.0%}"),
                 ("votes_per_retired", "votes/ret", "{:.1f}"), ("votes_per_retired_no_gold", "no-gold", "{:.1f}"),
                 ("accuracy", "acc", "{:.3f}"), ("path_accuracy", "path acc", "{:.3f}"),
                 ("model_accuracy", "model acc", "{:.3f}"), ("machine", "machine", "{}"),
                 ("speedup_vs_fixed40", "speed-up", "{:.2f}x"), ("elapsed_s", "t [s]", "{}")]


def _cell(row: dict, key: str, fmt: str) -> str:
    if key == "machine":
        value = (row.get("retired_by_reason") or {}).get("machine", 0)
    else:
        value = row.get(key)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    try:
        return fmt.format(value)
    except (ValueError, TypeError):
        return str(value)


def table(rows: list[dict], columns=ROUND_COLUMNS) -> str:
    """A plain-text table with one line per row (arm and round in ``row["arm"]``/``row["round"]``)."""
    head = [title for _, title, _ in columns]
    body = [[_cell(r, key, fmt) for key, _, fmt in columns] for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]
    line = lambda cells: "  ".join(c.rjust(w) for c, w in zip(cells, widths))
    return "\n".join([line(head), line(["-" * w for w in widths]), *(line(b) for b in body)])


def round_line(arm: str, row: dict) -> str:
    """One round as a single line (printed while the simulation runs)."""
    return table([{**row, "arm": arm}]).splitlines()[-1]


def final_table(report: dict) -> str:
    rows = [{**report[arm], "arm": arm, "round": "final"} for arm in ARM_STYLE if arm in report]
    return table(rows)


def per_question_table(report: dict) -> str:
    arms = [a for a in ARM_STYLE if a in report]
    questions = report["galaxies"]["tree_questions"]
    lines = ["question".ljust(20) + "".join(a.rjust(18) for a in arms)]
    for q in questions:
        cells = []
        for a in arms:
            pq = (report[a].get("per_question") or {}).get(q)
            cells.append(f"{pq['accuracy']:.3f} (n={pq['n']})".rjust(18) if pq else "-".rjust(18))
        lines.append(q.ljust(20) + "".join(cells))
    return "\n".join(lines)


def json_write(report: dict, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(report, indent=2, default=str, allow_nan=False) + "\n")
    tmp.replace(path)
    return path


PLOTS = [("votes_per_retired", "human votes per retired galaxy", None),
         ("retired_fraction", "fraction of galaxies retired", (0, 1.03)),
         ("accuracy", "accuracy of retired labels", (0.5, 1.01)),
         ("model_accuracy", "model accuracy (first question, all galaxies)", (0.3, 1.01))]


def plots_write(report: dict, directory: str | Path, prefix: str = "simulate", *, summary_only: bool = False) -> list[Path]:
    """One PNG per metric (every arm on the same axes, against the cumulative human votes), unless
    ``summary_only``, and a 2x2 summary of all four (``<prefix>_summary.png``). Returns the paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, NullFormatter, ScalarFormatter

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rounds = report["rounds"]
    title = (f"{report['galaxies']['source']}: {report['galaxies']['n']} galaxies, "
             f"{report['population']['n']} volunteers, seed {report['config']['seed']}")
    target = report.get("target", {})

    has_model = any(r.get("model_accuracy") is not None for rs in rounds.values() for r in rs)

    def draw(ax, key: str, label: str, ylim):
        for arm, (colour, style, name) in ARM_STYLE.items():
            rows = [r for r in rounds.get(arm, []) if r.get(key) is not None]
            if not rows:
                continue
            x = [r["human_votes"] for r in rows]
            y = [r[key] for r in rows]
            suffix = " (first question)" if key == "accuracy" else ""
            ax.plot(x, y, style, color=colour, **LINE[arm],
                    label=name[0 if has_model else 1] + (" (budget-matched)" if arm == "fixed40" else "") + suffix)
            if key == "accuracy":
                path = [(r["human_votes"], r["path_accuracy"]) for r in rows if r.get("path_accuracy") is not None]
                if path and report["galaxies"]["tree_questions"][1:]:
                    ax.plot(*zip(*path), ":", color=colour, marker="x", ms=4, lw=1, label=f"{arm}: whole path")
            final = report.get(arm, {}).get(key)
            if arm == "fixed40" and final is not None and key != "accuracy":
                ax.axhline(final, color=colour, ls=":", lw=1, label=f"fixed 40, complete: {final:.3g}")
        if key == "votes_per_retired":
            if target:
                ax.axhline(target["votes_per_retired_at_most"], color="#2a9d2a", ls="-.", lw=1,
                           label=f"target: {target['votes_per_retired_at_most']:g} (10x fewer)")
            ax.set_yscale("log")
            ax.yaxis.set_major_locator(FixedLocator([1, 2, 4, 8, 10, 20, 40, 80, 160]))
            ax.yaxis.set_major_formatter(ScalarFormatter())
            ax.yaxis.set_minor_formatter(NullFormatter())
        if key == "accuracy" and target:
            ax.axhline(target["accuracy_at_least"], color="#2a9d2a", ls="-.", lw=1, label="target: 0.95")
        if key == "model_accuracy" and has_model and report["galaxies"].get("majority_answer_share") is not None:
            ax.axhline(report["galaxies"]["majority_answer_share"], color="#999999", ls=":", lw=1,
                       label="always the commonest answer")
        if ylim:
            ax.set_ylim(*ylim)
        if key == "model_accuracy" and not has_model:
            ax.text(0.5, 0.5, "no model in this run\n(no images: model_accuracy is null)", ha="center",
                    va="center", transform=ax.transAxes)
        ax.set_xlabel("human classifications so far (one point per round)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="best")

    paths = []
    for key, label, ylim in [] if summary_only else PLOTS:
        fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
        draw(ax, key, label, ylim)
        ax.set_title(title, fontsize=9)
        fig.tight_layout()
        path = directory / f"{prefix}_{key}.png"
        fig.savefig(path)
        plt.close(fig)
        paths.append(path)
    fig, axes = plt.subplots(2, 2, figsize=(12, 8), dpi=100)
    for ax, (key, label, ylim) in zip(axes.flat, PLOTS):
        draw(ax, key, label, ylim)
    fig.suptitle(title)
    fig.tight_layout()
    path = directory / f"{prefix}_summary.png"
    fig.savefig(path)
    plt.close(fig)
    paths.append(path)
    return paths

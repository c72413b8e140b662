"""Report figures: each function draws one figure and writes it to ``path`` (PNG or SVG by suffix).

Figures are built on :class:`matplotlib.figure.Figure`, which saves through the Agg renderer
without pyplot or a display and leaves pyplot's global state alone, so they run headless and in
parallel Snakemake jobs (and do not switch the backend of a notebook that imports them).
Categorical colours use the Okabe-Ito palette and continuous maps are cividis (sequential) or PuOr
(diverging), which stay readable under the common colour-vision deficiencies; markers or line
styles double the colour where the number of categories exceeds the palette.
"""

from __future__ import annotations

import textwrap
from collections.abc import Hashable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from matplotlib.transforms import ScaledTranslation
from scipy.cluster import hierarchy

from scalex.analysis.defaults import correlate_with_reference, normalise_name
from scalex.layout import AXES_REMOVED, RAW, TEXT
from scalex.vectors import cosine_matrix

#: Okabe-Ito colours (black last), safe for the common colour-vision deficiencies.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*", "h", "<", ">"]
LINESTYLES = ["-", "--", ":", "-."]
NEUTRAL = "#999999"
LEAN_A, LEAN_B = PALETTE[1], PALETTE[3]
DIVERGING = "PuOr_r"
SEQUENTIAL = "cividis"
#: What the bias figures call their score: the published SCALEX cosine score is a signed cosine
#: difference, not an estimate of how many images show a value (that is ``findings_figure``).
SCALEX_SCORE = "published SCALEX score (cosine; not validated as a share)"
UNRESOLVED_HATCH = "////"
#: What each clustering variant holds, for the titles.
VARIANTS = {RAW: RAW, AXES_REMOVED: f"{AXES_REMOVED} (identity axes projected out)"}


#: Resolution of the saved PNGs; labels are placed at it, as text extents vary with the dpi.
DPI = 150


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    return path


def _colours(labels: Sequence[Hashable]) -> dict:
    """Stable colour per category, in order of first appearance."""
    uniq = list(dict.fromkeys(labels))
    return {c: PALETTE[i % len(PALETTE)] for i, c in enumerate(uniq)}


def _pair(table: pd.DataFrame, pair: Sequence[str] | None) -> tuple[str, str]:
    pair = pair or table.attrs.get("pair") or ("a", "b")
    return str(pair[0]), str(pair[1])


def _where(readout: str | None = None, variant: str | None = None) -> str:
    """Which numbers a figure shows, for its title (``content readout, axes_removed (...)``)."""
    parts = [f"{readout} readout"] if readout else []
    if variant:
        parts.append(VARIANTS.get(variant, str(variant)))
    return ", ".join(parts)


def _title(head: str | None, readout: str | None = None, variant: str | None = None) -> str:
    """A title line naming the readout (and clustering variant), so a figure read on its own,
    out of its folder, still says which numbers it shows."""
    where = _where(readout, variant)
    if head and where:
        return f"{head} — {where}"
    return head or where


def _ci_note(table: pd.DataFrame) -> str:
    level, n_boot = table.attrs.get("level"), table.attrs.get("n_boot")
    if level is None:
        return "whiskers: bootstrap CI over seeds and templates"
    return f"whiskers: {level:.0%} bootstrap CI over seeds and templates ({n_boot} replicates)"


#: Label placement: gap between a point and its label, and padding around a label, in points.
_LABEL_GAP, _LABEL_PAD = 2.5, 2.0
#: Where a label may sit around its point, in order of preference: up-right, right, down-right,
#: up-left, left, down-left, above, below (unit steps of the label's half size plus the gap).
_SPOTS = np.array([(1, 1), (1, 0), (1, -1), (-1, 1), (-1, 0), (-1, -1), (0, 1), (0, -1)], float)


def place_labels(
    ax: Axes,
    xy: np.ndarray,
    labels: Sequence[str],
    fontsize: float = 7,
    marker_size: float = 6.0,
    rings: int = 12,
) -> list:
    """Label each point so that no two labels overlap and no label covers a marker.

    Deterministic: the most crowded points choose first, each label takes the first free spot of
    eight around its point (up-right first) and, when all are taken, of the eight one label
    height further out, ring by ring, with a thin leader line once it leaves its point; if none
    is free it takes the spot of least overlap. Extents are measured as drawn at the saved
    resolution (text widths vary with the dpi), so the figure is laid out first and the axes'
    limits are frozen; the labels stay inside the axes and out of the layout, so they cannot
    move the axes they were placed in. Call it last. Returns the annotations.
    """
    fig = ax.figure
    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    shown_dpi = fig.dpi
    fig.set_dpi(DPI)
    try:
        return _place_labels(ax, xy, labels, fontsize, marker_size, rings)
    finally:
        fig.set_dpi(shown_dpi)


def _place_labels(
    ax: Axes,
    xy: np.ndarray,
    labels: Sequence[str],
    fontsize: float,
    marker_size: float,
    rings: int,
) -> list:
    fig = ax.figure
    # The layout, twice (a constrained layout with fixed aspects settles in two passes): the
    # axes' place on the page is final from here on.
    fig.canvas.draw()
    fig.canvas.draw()
    ax.set_xlim(ax.get_xlim())
    ax.set_ylim(ax.get_ylim())
    renderer = fig.canvas.get_renderer()
    px = fig.dpi / 72.0  # display pixels per point
    xy = np.asarray(xy, dtype=float).reshape(-1, 2)
    pts = ax.transData.transform(xy)
    keep = np.flatnonzero(np.isfinite(pts).all(axis=1))
    half = np.zeros((len(labels), 2))
    for i in keep:
        probe = ax.text(0, 0, str(labels[i]), fontsize=fontsize)
        box = probe.get_window_extent(renderer)
        probe.remove()
        half[i] = box.width / 2 + _LABEL_PAD * px, box.height / 2 + _LABEL_PAD * px
    gap, radius = _LABEL_GAP * px, marker_size / 2 * px + _LABEL_PAD * px
    # Clear of its own (round) marker: beside it a radius away, diagonally a corner closer.
    clear = np.where(np.abs(_SPOTS).sum(axis=1) == 2, 0.5, 1.0) * marker_size / 2 * px + gap
    frame = ax.bbox
    lo, hi = np.array([frame.x0, frame.y0]), np.array([frame.x1, frame.y1])
    # Crowded first: points with the most others within a label's reach pick their spot first.
    reach = np.hypot(*pts[keep].T[:, :, None] - pts[keep].T[:, None, :]) < 4 * half[keep, 1:].max(
        initial=1.0
    )
    order = keep[np.argsort(-reach.sum(axis=1), kind="stable")]
    placed = np.empty((0, 4))  # x0, y0, x1, y1 of the labels placed so far
    markers = np.column_stack([pts[keep] - radius, pts[keep] + radius])
    centre = np.zeros_like(pts)
    ring_of = np.zeros(len(labels), int)
    for i in order:
        best, best_cost = None, np.inf
        for ring in range(rings + 1):
            out = clear + ring * 2 * half[i, 1]
            cand = pts[i] + _SPOTS * (half[i] + out[:, None])
            boxes = np.column_stack([cand - half[i], cand + half[i]])
            shift = np.clip(lo - boxes[:, :2], 0, None) - np.clip(boxes[:, 2:] - hi, 0, None)
            boxes += np.tile(shift, 2)  # inside the axes
            cost = _overlap(boxes, placed) + 0.25 * _overlap(boxes, markers[keep != i])
            k = int(np.argmin(cost))
            if cost[k] < best_cost:
                best, best_cost, ring_of[i] = boxes[k], cost[k], ring
            if best_cost == 0:
                break
        placed = np.vstack([placed, best])
        centre[i] = (best[:2] + best[2:]) / 2
    annotations = []
    for i in keep:
        offset = (centre[i] - pts[i]) / px
        arrow = (
            {"arrowstyle": "-", "color": "#777777", "lw": 0.5, "shrinkA": 0, "shrinkB": 3}
            if ring_of[i] > 0
            else None
        )
        ann = ax.annotate(
            str(labels[i]),
            tuple(xy[i]),
            xytext=tuple(offset),
            textcoords="offset points",
            ha="center",
            va="center",
            fontsize=fontsize,
            arrowprops=arrow,
            annotation_clip=False,
        )
        ann.set_in_layout(False)
        annotations.append(ann)
    return annotations


def _overlap(boxes: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Total overlap area of each box (x0, y0, x1, y1) with the ``others``."""
    if not len(others):
        return np.zeros(len(boxes))
    w = np.minimum(boxes[:, None, 2], others[None, :, 2]) - np.maximum(
        boxes[:, None, 0], others[None, :, 0]
    )
    h = np.minimum(boxes[:, None, 3], others[None, :, 3]) - np.maximum(
        boxes[:, None, 1], others[None, :, 1]
    )
    return (np.clip(w, 0, None) * np.clip(h, 0, None)).sum(axis=1)


def bias_bar(
    table: pd.DataFrame,
    path: str | Path,
    pair: Sequence[str] | None = None,
    title: str | None = None,
    readout: str | None = None,
) -> Path:
    """Ranked horizontal bars of the pooled bias score with CI whiskers (from ``default_bias``).

    The score is the published SCALEX cosine score, so the axis is symmetric about 0 and named as
    such (it is no share of images), and bars whose CI crosses 0 are hatched and pale: their
    lean is not resolved with these prompts and seeds.
    """
    a, b = _pair(table, pair)
    rows = table[table["step"].astype(str) == "all"].sort_values("score", kind="stable")
    n = len(rows)
    fig = Figure(figsize=(7.5, max(2.8, 0.28 * n + 1.8)), layout="constrained")
    ax = fig.add_subplot()
    y = np.arange(n)
    score = rows["score"].to_numpy(dtype=float)
    low, high = rows["ci_low"].to_numpy(dtype=float), rows["ci_high"].to_numpy(dtype=float)
    err = np.abs(np.vstack([score - low, high - score]))
    unresolved = (low <= 0) & (high >= 0)
    # Same sides as the per-step heatmap (PuOr_r): orange leans to a, purple to b.
    colours = [LEAN_A if s > 0 else LEAN_B for s in score]
    for i in range(n):
        pale = bool(unresolved[i])
        ax.barh(
            y[i],
            score[i],
            color=to_rgba(colours[i], 0.35 if pale else 1.0),
            edgecolor=colours[i],
            hatch=UNRESOLVED_HATCH if pale else None,
            lw=0.8,
        )
    ax.errorbar(score, y, xerr=err, fmt="none", ecolor="#333333", capsize=2, lw=1)
    ax.axvline(0, color="black", lw=0.8)
    reach = float(np.nanmax(np.abs(np.concatenate([low, high, score])))) if n else 1.0
    reach = 1.08 * reach if np.isfinite(reach) and reach > 0 else 1.0
    ax.set_xlim(-reach, reach)
    ax.set_yticks(y, rows["concept"].astype(str))
    ax.set_xlabel(
        f"published SCALEX score = cos(d, d_{a}) − cos(d, d_{b})\n(signed cosine; 0 = no lean)"
    )
    head = title or f"{SCALEX_SCORE[0].upper()}{SCALEX_SCORE[1:]}: {a} vs {b}"
    ax.set_title(f"{_title(head, readout)}\n{_ci_note(table)}", fontsize=10)
    ax.legend(
        handles=[
            Patch(color=LEAN_A, label=f"closer to '{a}'"),
            Patch(color=LEAN_B, label=f"closer to '{b}'"),
            Patch(
                facecolor="white",
                edgecolor="#555555",
                hatch=UNRESOLVED_HATCH,
                label="CI crosses 0 (lean not resolved)",
            ),
        ],
        loc="best",
        fontsize=8,
    )
    return _save(fig, path)


def bias_profile(
    table: pd.DataFrame,
    path: str | Path,
    pair: Sequence[str] | None = None,
    title: str | None = None,
    max_lines: int = 10,
    readout: str | None = None,
) -> Path:
    """Bias score per denoising step: lines with CI bands, or a heatmap when concepts are many."""
    a, b = _pair(table, pair)
    per_step = table[table["step"].astype(str) != "all"].copy()
    per_step["step"] = per_step["step"].astype(int)
    concepts = list(dict.fromkeys(per_step["concept"]))
    steps = sorted(per_step["step"].unique())
    grid = per_step.pivot(index="concept", columns="step", values="score").loc[concepts, steps]
    label = f"published SCALEX score: cos(d, d_{a}) − cos(d, d_{b})"
    heading = _title(title or f"Published SCALEX score per denoising step: {a} vs {b}", readout)
    if len(concepts) <= max_lines:
        fig = Figure(figsize=(7, 4.5), layout="constrained")
        ax = fig.add_subplot()
        for i, c in enumerate(concepts):
            r = per_step[per_step["concept"] == c].sort_values("step")
            colour = PALETTE[i % len(PALETTE)]
            ls = LINESTYLES[(i // len(PALETTE)) % len(LINESTYLES)]
            ax.plot(
                r["step"],
                r["score"],
                marker=MARKERS[i % len(MARKERS)],
                ls=ls,
                color=colour,
                label=str(c),
            )
            ax.fill_between(r["step"], r["ci_low"], r["ci_high"], color=colour, alpha=0.15)
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xticks(steps)
        ax.set_xlabel("kept denoising step")
        ax.set_ylabel(label)
        ax.legend(fontsize=8, bbox_to_anchor=(1.02, 1), loc="upper left")
        ax.set_title(f"{heading}\nbands: {_ci_note(table).removeprefix('whiskers: ')}", fontsize=10)
    else:
        fig = Figure(
            figsize=(2 + 0.6 * len(steps), 1.5 + 0.25 * len(concepts)), layout="constrained"
        )
        ax = fig.add_subplot()
        vmax = float(np.nanmax(np.abs(grid.to_numpy()))) or 1.0
        im = ax.imshow(grid.to_numpy(), cmap=DIVERGING, vmin=-vmax, vmax=vmax, aspect="auto")
        ax.set_xticks(range(len(steps)), [str(s) for s in steps])
        ax.set_yticks(range(len(concepts)), [str(c) for c in concepts])
        ax.set_xlabel("kept denoising step")
        fig.colorbar(im, ax=ax, label=label)
        ax.set_title(heading, fontsize=10)
    return _save(fig, path)


def reference_scatter(
    scores: pd.Series,
    reference: pd.Series,
    path: str | Path,
    correlation: dict | None = None,
    xlabel: str = "reference",
    ylabel: str = "bias score",
    title: str | None = None,
    readout: str | None = None,
) -> Path:
    """Bias score against an external reference per concept, labelled, correlation in the title."""
    corr = correlation or correlate_with_reference(scores, reference)
    ref_lookup = {normalise_name(k): v for k, v in reference.items()}
    names = list(corr["concepts"])
    x = np.array([ref_lookup[normalise_name(n)] for n in names], dtype=float)
    y = scores.loc[names].to_numpy(dtype=float)
    fig = Figure(figsize=(6.5, 5.5), layout="constrained")
    ax = fig.add_subplot()
    ax.scatter(x, y, color=PALETTE[0], s=22, zorder=3)
    if len(x) >= 2 and np.ptp(x) > 0:
        slope, icpt = np.polyfit(x, y, 1)
        xs = np.linspace(x.min(), x.max(), 2)
        ax.plot(xs, slope * xs + icpt, color=PALETTE[1], lw=1, ls="--", label="least squares")
        ax.legend(fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    lv = corr.get("level", 0.95)
    head = _title(title or f"{ylabel} vs {xlabel}", readout)
    ax.set_title(
        (head + "\n" if head else "")
        + f"Pearson r = {corr['pearson_r']:.2f} [{corr['pearson_ci_low']:.2f}, "
        f"{corr['pearson_ci_high']:.2f}], Spearman ρ = {corr['spearman_rho']:.2f} "
        f"[{corr['spearman_ci_low']:.2f}, {corr['spearman_ci_high']:.2f}]\n"
        f"n = {corr['n']} concepts, {lv:.0%} bootstrap CIs over concepts",
        fontsize=9,
    )
    place_labels(ax, np.column_stack([x, y]), [str(n) for n in names], marker_size=5)
    return _save(fig, path)


def descriptor_heatmap(
    table: pd.DataFrame,
    path: str | Path,
    title: str | None = None,
    readout: str | None = None,
) -> Path:
    """Per axis, a concepts x descriptor-values heatmap of alignment with the top value boxed.

    Alignments often all lie in a narrow band (say 0.80-0.95), so the colours span the data's
    2nd-98th percentiles rather than -1..1 (the colourbar says so and is extended where values
    fall outside), and every cell carries its value.
    """
    axes_names = list(dict.fromkeys(table["axis"]))
    concepts = list(dict.fromkeys(table["concept"]))
    widths = [max(2, table.loc[table["axis"] == ax_, "descriptor"].nunique()) for ax_ in axes_names]
    fig = Figure(figsize=(3.0 + 0.8 * sum(widths), 2.0 + 0.3 * len(concepts)), layout="constrained")
    subplots = fig.subplots(1, len(axes_names), squeeze=False, width_ratios=widths)[0]
    values_all = table["alignment"].to_numpy(dtype=float)
    values_all = values_all[np.isfinite(values_all)]
    vmin, vmax = robust_range(values_all)
    extend = _extend(values_all, vmin, vmax)
    im = None
    for ax, axis in zip(subplots, axes_names, strict=True):
        part = table[table["axis"] == axis]
        values = list(dict.fromkeys(part["descriptor"]))
        grid = part.pivot(index="concept", columns="descriptor", values="alignment")
        grid = grid.reindex(index=concepts, columns=values)
        arr = grid.to_numpy(dtype=float)
        im = ax.imshow(arr, cmap=SEQUENTIAL, vmin=vmin, vmax=vmax, aspect="auto")
        for (i, j), val in np.ndenumerate(arr):
            if np.isfinite(val):
                light = (min(max(val, vmin), vmax) - vmin) / ((vmax - vmin) or 1.0) > 0.6
                ax.text(
                    j,
                    i,
                    f"{val:.2f}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="black" if light else "white",
                )
        for _, r in part[part["rank"] == 1].iterrows():
            i, j = concepts.index(r["concept"]), values.index(r["descriptor"])
            clear = bool(r.get("margin_ci_low", 0) > 0)
            ls = "-" if clear else "--"
            # A white halo under a black frame stays visible on dark and light cells alike.
            for ec, lw in (("white", 3.5), ("black", 1.5)):
                ax.add_patch(
                    Rectangle((j - 0.45, i - 0.45), 0.9, 0.9, fill=False, ec=ec, lw=lw, ls=ls)
                )
        ax.set_xticks(range(len(values)), [str(v) for v in values], rotation=45, ha="right")
        ax.set_yticks(range(len(concepts)), [str(c) for c in concepts])
        ax.set_title(f"axis: {axis}", fontsize=10)
    fig.colorbar(
        im,
        ax=list(subplots),
        extend=extend,
        label="alignment cos(d_c, d_(v c))\ncolours span the data's 2nd–98th percentile",
    )
    head = _title(title or "Descriptor alignment per axis", readout)
    fig.suptitle(
        f"{head}\nframe: top-1 value; solid = margin CI above 0, dashed = not",
        fontsize=10,
    )
    return _save(fig, path)


def robust_range(
    values: np.ndarray, percentiles: tuple[float, float] = (2, 98)
) -> tuple[float, float]:
    """A colour range fitted to the data: its percentiles, widened when the data are constant,
    so that one outlier or a narrow band still leaves the values told apart."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if not values.size:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(values, percentiles))
    if hi - lo < 1e-9:
        pad = max(abs(lo) * 0.01, 1e-3)
        lo, hi = lo - pad, hi + pad
    return lo, hi


def _extend(values: np.ndarray, vmin: float, vmax: float) -> str:
    below, above = bool((values < vmin).any()), bool((values > vmax).any())
    return {(True, True): "both", (True, False): "min", (False, True): "max"}.get(
        (below, above), "neither"
    )


def dendrogram(
    linkage: np.ndarray,
    labels: Sequence[str],
    clusters: Sequence[Hashable],
    path: str | Path,
    title: str | None = None,
    readout: str | None = None,
    variant: str | None = None,
) -> Path:
    """Dendrogram of a scipy linkage; links and leaf labels coloured by the given cluster labels.

    A link takes a cluster's colour when every leaf under it belongs to that cluster, grey
    otherwise, so the colours show the chosen cut rather than scipy's own threshold.
    """
    n = len(labels)
    if len(clusters) != n or linkage.shape[0] != n - 1:
        raise ValueError("need one label and one cluster per leaf and n - 1 linkage rows")
    colours = _colours(sorted(set(clusters), key=str))
    members: list[set] = [{clusters[i]} for i in range(n)]
    for left, right in linkage[:, :2].astype(int):
        members.append(members[left] | members[right])

    def link_colour(k: int) -> str:
        m = members[k]
        return colours[next(iter(m))] if len(m) == 1 else NEUTRAL

    fig = Figure(figsize=(7, max(3, 0.22 * n + 1.2)), layout="constrained")
    ax = fig.add_subplot()
    dn = hierarchy.dendrogram(
        linkage,
        labels=[str(x) for x in labels],
        orientation="left",
        link_color_func=link_colour,
        ax=ax,
        leaf_font_size=8,
    )
    by_label = {str(lab): c for lab, c in zip(labels, clusters, strict=True)}
    for tick in ax.get_yticklabels():
        tick.set_color(colours[by_label[tick.get_text()]])
    ax.set_xlabel("linkage distance (1 − cosine)")
    ax.set_title(
        _title(title or f"Hierarchical clustering of {n} concept directions", readout, variant),
        fontsize=10,
    )
    ax.legend(
        handles=[Patch(color=c, label=f"cluster {k}") for k, c in colours.items()],
        fontsize=7,
        loc="lower left",
        ncol=max(1, len(colours) // 12 + 1),
    )
    del dn
    return _save(fig, path)


def cluster_order(clusters: Sequence[Hashable], order: Sequence[int] | None = None) -> np.ndarray:
    """Indices grouping items by cluster, keeping ``order`` (e.g. dendrogram leaves) within."""
    base = np.arange(len(clusters)) if order is None else np.asarray(order)
    first = {}
    for i in base:
        first.setdefault(clusters[i], len(first))
    return np.array(sorted(base, key=lambda i: first[clusters[i]]), dtype=int)


def similarity_heatmap(
    similarity: np.ndarray,
    ids: Sequence[str],
    clusters: Sequence[Hashable],
    path: str | Path,
    order: Sequence[int] | None = None,
    title: str | None = None,
    readout: str | None = None,
    variant: str | None = None,
) -> Path:
    """Cosine-similarity matrix with rows/columns grouped by cluster and cluster blocks outlined."""
    sim = np.asarray(similarity, dtype=float)
    n = len(ids)
    if sim.shape != (n, n) or len(clusters) != n:
        raise ValueError("similarity must be square with one id and one cluster per row")
    idx = cluster_order(clusters, order)
    s = sim[np.ix_(idx, idx)]
    off = s[~np.eye(n, dtype=bool)]
    vmax = float(np.nanmax(np.abs(off))) if off.size else 1.0
    size = min(14, 3 + 0.18 * n)
    fig = Figure(figsize=(size + 1.5, size), layout="constrained")
    ax = fig.add_subplot()
    im = ax.imshow(s, cmap=DIVERGING, vmin=-vmax, vmax=vmax)
    labs = [clusters[i] for i in idx]
    bounds = [i for i in range(1, n) if labs[i] != labs[i - 1]]
    edges = [0, *bounds, n]
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        ax.add_patch(
            Rectangle((lo - 0.5, lo - 0.5), hi - lo, hi - lo, fill=False, ec="black", lw=1.2)
        )
    if n <= 80:
        ax.set_xticks(range(n), [str(ids[i]) for i in idx], rotation=90, fontsize=7)
        ax.set_yticks(range(n), [str(ids[i]) for i in idx], fontsize=7)
    else:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=ax, label="cosine similarity of directions", shrink=0.8)
    head = title or f"Concept similarity, grouped into {len(edges) - 1} clusters"
    ax.set_title(_title(head, readout, variant), fontsize=10)
    return _save(fig, path)


def classical_mds(distances: np.ndarray, n_components: int = 2) -> np.ndarray:
    """Classical (Torgerson) MDS: coordinates whose Euclidean distances best match ``distances``."""
    d = np.asarray(distances, dtype=float)
    n = d.shape[0]
    j = np.eye(n) - np.full((n, n), 1.0 / n)
    b = -0.5 * j @ (d**2) @ j
    vals, vecs = np.linalg.eigh((b + b.T) / 2)
    top = np.argsort(vals)[::-1][:n_components]
    coords = vecs[:, top] * np.sqrt(np.clip(vals[top], 0, None))
    if coords.shape[1] < n_components:
        coords = np.pad(coords, ((0, 0), (0, n_components - coords.shape[1])))
    # Fix each axis's sign so reruns give the same picture.
    signs = np.sign(coords[np.argmax(np.abs(coords), axis=0), range(n_components)])
    return coords * np.where(signs == 0, 1, signs)


def concept_map(
    ids: Sequence[str],
    clusters: Sequence[Hashable],
    path: str | Path,
    similarity: np.ndarray | None = None,
    directions: np.ndarray | None = None,
    sets: Sequence[Hashable] | None = None,
    method: str = "mds",
    title: str | None = None,
    readout: str | None = None,
    variant: str | None = None,
) -> Path:
    """2-D map of concepts: classical MDS of 1 − cosine, or PCA of the directions.

    Colour shows the cluster, marker shape the concept's set (e.g. professions, identities).
    """
    fig = concept_map_figure(
        ids,
        clusters,
        similarity=similarity,
        directions=directions,
        sets=sets,
        method=method,
        title=title,
        readout=readout,
        variant=variant,
    )
    return _save(fig, path)


#: Size (inches) of the map's own part of the concept map; the legends get a strip to its right.
_MAP_SIZE = (7.5, 6.0)
_LEGEND_PAD = 0.15  # inches around and between the legends
_LABEL_WIDTH = 40  # characters per line of a set name in the legend
_MEMBERS_SHOWN = 6  # cluster members named in the legend before "+N more"


def cluster_label(cluster: Hashable, members: Sequence[str], shown: int = _MEMBERS_SHOWN) -> str:
    """``cluster 1: doctor, nurse, surgeon`` (the first ``shown`` members, then "+N more"),
    wrapped, so the legend says what each colour is rather than only a number."""
    names = [str(m) for m in members]
    text = ", ".join(names[:shown])
    if len(names) > shown:
        text += f", +{len(names) - shown}\u00a0more"  # no line break inside "+N more"
    return textwrap.fill(f"cluster {cluster}: {text}", _LABEL_WIDTH, subsequent_indent="  ")


def concept_map_figure(
    ids: Sequence[str],
    clusters: Sequence[Hashable],
    similarity: np.ndarray | None = None,
    directions: np.ndarray | None = None,
    sets: Sequence[Hashable] | None = None,
    method: str = "mds",
    title: str | None = None,
    readout: str | None = None,
    variant: str | None = None,
) -> Figure:
    """The figure :func:`concept_map` saves (same arguments, less ``path``).

    The legends (clusters, each with its first members, above; sets below) sit in a strip right
    of the map whose size is measured from the legends themselves, and the figure grows by that
    strip, so that no legend reaches past the figure's edge or covers the other however many sets
    there are and however long their names (wrapped at 40 characters). Up to 80 concepts are
    labelled, placed by :func:`place_labels` so that no two labels overlap.
    """
    n = len(ids)
    if method == "mds":
        if similarity is None:
            if directions is None:
                raise ValueError("concept_map needs a similarity matrix or directions")
            similarity = cosine_matrix(directions)
        coords = classical_mds(1.0 - np.asarray(similarity, dtype=float))
        xlabel, ylabel = "MDS 1", "MDS 2"
    elif method == "pca":
        if directions is None:
            raise ValueError("method='pca' needs the directions")
        x = np.asarray(directions, dtype=float)
        x = x - x.mean(axis=0)
        uu, sv, _ = np.linalg.svd(x, full_matrices=False)
        coords = uu[:, :2] * sv[:2]
        var = sv**2 / max(float(np.sum(sv**2)), 1e-300)
        xlabel, ylabel = f"PC 1 ({var[0]:.0%} var.)", f"PC 2 ({var[1]:.0%} var.)"
    else:
        raise ValueError(f"method must be 'mds' or 'pca'; got {method!r}")
    sets = list(sets) if sets is not None else ["concept"] * n
    colours = _colours(sorted(set(clusters), key=str))
    set_names = list(dict.fromkeys(sets))
    markers = {s: MARKERS[i % len(MARKERS)] for i, s in enumerate(set_names)}
    fig = Figure(figsize=_MAP_SIZE, layout="constrained")
    FigureCanvasAgg(fig)  # a renderer, to measure the legends
    ax = fig.add_subplot()
    for i in range(n):
        ax.scatter(
            coords[i, 0],
            coords[i, 1],
            color=colours[clusters[i]],
            marker=markers[sets[i]],
            s=36,
            edgecolors="black",
            linewidths=0.4,
        )
    ax.margins(0.08)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    what = "classical MDS of 1 − cosine" if method == "mds" else "PCA of directions"
    ax.set_title(_title(title or f"Map of {n} concepts ({what})", readout, variant), fontsize=10)

    # Figure legends, which the constrained layout leaves alone: it lays the map out in the
    # rectangle left of the legend strip (set below), and the legends are stacked in the strip.
    members = {k: [str(ids[i]) for i in range(n) if clusters[i] == k] for k in colours}
    handles = [[Patch(color=c, label=cluster_label(k, members[k])) for k, c in colours.items()]]
    titles = ["cluster: members"]
    if len(set_names) > 1:
        handles.append(
            [
                Line2D(
                    [],
                    [],
                    ls="",
                    marker=markers[s],
                    color="#555555",
                    label=textwrap.fill(str(s), _LABEL_WIDTH),
                )
                for s in set_names
            ]
        )
        titles.append("set")
    inches = fig.dpi_scale_trans.inverted()
    renderer = fig.canvas.get_renderer()
    ncols = [1] * len(handles)
    while True:
        legends = [
            fig.legend(handles=h, title=t, fontsize=7, loc="upper left", borderaxespad=0, ncols=c)
            for h, t, c in zip(handles, titles, ncols, strict=True)
        ]
        sizes = [inches.transform_bbox(leg.get_window_extent(renderer)) for leg in legends]
        height = sum(b.height for b in sizes) + (len(sizes) + 1) * _LEGEND_PAD
        # Too tall for the map's height: spread the tallest legend that can over more columns.
        taller = [
            i
            for i in sorted(range(len(sizes)), key=lambda i: -sizes[i].height)
            if ncols[i] < len(handles[i])
        ]
        if height <= _MAP_SIZE[1] or not taller:
            break
        for leg in legends:
            leg.remove()
        ncols[taller[0]] += 1
    strip = max(b.width for b in sizes) + 2 * _LEGEND_PAD
    width = _MAP_SIZE[0] + strip
    fig.set_size_inches(width, max(_MAP_SIZE[1], height))
    fig.get_layout_engine().set(rect=(0, 0, _MAP_SIZE[0] / width, 1))
    top = 0.0  # inches below the figure's top edge
    for leg, size in zip(legends, sizes, strict=True):
        top += _LEGEND_PAD
        # Anchored in inches from the figure's top-right corner, which holds at any save dpi.
        leg.set_bbox_to_anchor(
            (1.0, 1.0),
            transform=fig.transFigure
            + ScaledTranslation(-(strip - _LEGEND_PAD), -top, fig.dpi_scale_trans),
        )
        top += size.height
    if n <= 80:
        place_labels(ax, coords, [str(i) for i in ids])
    return fig


def silhouette_curve(
    ks: Sequence[int],
    scores: Sequence[float],
    chosen_k: int,
    path: str | Path,
    title: str | None = None,
    readout: str | None = None,
    variant: str | None = None,
) -> Path:
    """Mean silhouette against the number of clusters, with the chosen k marked."""
    ks = np.asarray(ks)
    scores = np.asarray(scores, dtype=float)
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(ks, scores, marker="o", color=PALETTE[0])
    if chosen_k in set(ks.tolist()):
        s = scores[list(ks).index(chosen_k)]
        ax.plot(
            [chosen_k],
            [s],
            marker="*",
            ms=16,
            color=PALETTE[5],
            ls="",
            label=f"chosen k = {chosen_k}",
        )
        ax.legend(fontsize=8)
    ax.set_xlabel("number of clusters k")
    ax.set_ylabel("mean silhouette (cosine distance)")
    ax.set_title(_title(title or "Choosing the number of clusters", readout, variant), fontsize=10)
    return _save(fig, path)


def discovery_bars(
    table: pd.DataFrame,
    path: str | Path,
    max_queries: int = 6,
    title: str | None = None,
    readout: str | None = None,
) -> Path:
    """Per query, the most and least aligned vocabulary prompts as horizontal bars."""
    queries = list(dict.fromkeys(table["query"]))[:max_queries]
    per_q = max((table["query"] == q).sum() for q in queries) if queries else 1
    fig = Figure(figsize=(5.5 * len(queries) or 5, 1.5 + 0.25 * per_q), layout="constrained")
    subplots = fig.subplots(1, max(1, len(queries)), squeeze=False)[0]
    for ax, q in zip(subplots, queries, strict=False):
        part = table[table["query"] == q]
        top = part[part["end"] == "top"].sort_values("cosine")
        bottom = part[part["end"] == "bottom"].sort_values("cosine")
        rows = pd.concat([bottom, top])
        y = np.arange(len(rows))
        colours = [PALETTE[0] if e == "top" else PALETTE[5] for e in rows["end"]]
        ax.barh(y, rows["cosine"], color=colours)
        ax.axvline(0, color="black", lw=0.8)
        ax.set_yticks(y, rows["name"].astype(str), fontsize=7)
        ax.set_xlabel("cosine with query direction")
        ax.set_title(f"query: {q}", fontsize=10)
    subplots[0].legend(
        handles=[
            Patch(color=PALETTE[0], label="most aligned"),
            Patch(color=PALETTE[5], label="least aligned"),
        ],
        fontsize=7,
    )
    head = title or "Vocabulary prompts most and least aligned with each query"
    fig.suptitle(_title(head, readout), fontsize=11)
    return _save(fig, path)


def readouts_scatter(wide: pd.DataFrame, path: str | Path, title: str | None = None) -> Path:
    """Each H-space readout's scores against the text-encoder control's, one panel each.

    The panels share both axes with equal limits and draw y = x, so a point's distance from the
    diagonal reads the same in every panel: on the diagonal, the readout says what the text
    encoder alone already says.
    """
    others = [c.removesuffix("_score") for c in wide.columns if c.endswith("_score")]
    others = [r for r in others if r != TEXT]
    k = max(1, len(others))
    fig = Figure(figsize=(4.4 * k, 4.9), layout="constrained")
    axes = fig.subplots(1, k, squeeze=False, sharex=True, sharey=True)[0]
    x = wide[f"{TEXT}_score"].to_numpy(float)
    ys = [wide[f"{r}_score"].to_numpy(float) for r in others]
    every = np.concatenate([x, *ys])
    every = every[np.isfinite(every)]
    lo, hi = (float(every.min()), float(every.max())) if every.size else (-1.0, 1.0)
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    pad = 0.08 * ((hi - lo) or 1.0)
    lims = (lo - pad, hi + pad)
    for ax, readout, y in zip(axes, others, ys, strict=False):
        ax.axhline(0, color=NEUTRAL, lw=0.6)
        ax.axvline(0, color=NEUTRAL, lw=0.6)
        ax.plot(lims, lims, ls="--", color="#555555", lw=0.9, label="y = x (same as text alone)")
        ax.scatter(x, y, color=PALETTE[0], s=18, zorder=3)
        rho = pd.Series(x).corr(pd.Series(y), method="spearman")
        ax.set_title(f"{readout} readout vs text encoder alone\nSpearman ρ = {rho:.2f}", fontsize=9)
        ax.set_xlabel("text encoder alone (text readout)")
        ax.set_ylabel(f"{readout} readout")
        ax.set_aspect("equal", adjustable="box")
        ax.legend(fontsize=7, loc="best")
    axes[0].set_xlim(lims)
    axes[0].set_ylim(lims)
    what = "published SCALEX score (cosine) per concept: each readout vs the text encoder alone"
    fig.suptitle(f"{title} — {what}" if title else what[0].upper() + what[1:], fontsize=10)
    for ax, y in zip(axes, ys, strict=False):
        place_labels(ax, np.column_stack([x, y]), [str(n) for n in wide["concept"]], fontsize=6)
    return _save(fig, path)


#: Mark of a concept whose majority value the text encoder alone already gives.
TEXT_AGREES_MARK = " ‡"


def findings_plot(table: pd.DataFrame, axis: str, readout: str) -> Figure:
    """The figure :func:`findings_figure` saves (same arguments, less ``path``)."""
    rows = table[table["axis"] == axis]
    if rows.empty:
        raise ValueError(f"findings_figure: no rows for axis {axis!r}")
    values = list(dict.fromkeys(rows["value"].astype(str)))
    first = values[0]
    rows = rows[rows["value"].astype(str) == first]
    rows = rows.sort_values(["share", "concept"], kind="stable", na_position="first")
    n = len(rows)
    share = rows["share"].to_numpy(dtype=float)
    low, high = rows["ci_low"].to_numpy(dtype=float), rows["ci_high"].to_numpy(dtype=float)
    text = rows["text_share"].to_numpy(dtype=float) if "text_share" in rows else np.full(n, np.nan)
    agrees = (
        rows["text_agrees"].fillna(False).astype(bool).to_numpy()
        if "text_agrees" in rows
        else np.zeros(n, bool)
    )
    samples = rows["samples"].to_numpy() if "samples" in rows else np.full(n, np.nan)

    fig = Figure(figsize=(7.5, max(3.0, 0.3 * n + 2.2)), layout="constrained")
    ax = fig.add_subplot()
    y = np.arange(n)
    ax.axvline(0.5, color="#555555", lw=0.9, ls="--", zorder=1)
    err = np.abs(np.vstack([share - low, high - share]))
    model = ax.errorbar(
        share,
        y,
        xerr=err,
        fmt="o",
        color=PALETTE[0],
        ecolor=PALETTE[0],
        capsize=2.5,
        ms=6,
        lw=1.2,
        zorder=3,
        label="share of the model's samples (CI)",
    )
    handles = [model]
    for part in (model.lines[0], *model.lines[1], *model.lines[2]):
        part.set_clip_on(False)  # a share of 0 or 1 sits on the frame, whole
    if np.isfinite(text).any():
        control = ax.scatter(
            text,
            y,
            marker="o",
            s=46,
            facecolors="none",
            edgecolors=PALETTE[5],
            lw=1.3,
            zorder=4,
            label="text encoder alone",
            clip_on=False,
        )
        handles.append(control)
    labels = [
        str(c) + (TEXT_AGREES_MARK if a else "")
        for c, a in zip(rows["concept"], agrees, strict=True)
    ]
    ax.set_yticks(y, labels)
    ax.set_ylim(-0.7, n - 0.3)
    ax.set_xlim(0, 1)
    xlabel = f"share of generated samples showing '{first}'"
    if len(values) > 2:
        xlabel += f"\n(first of {len(values)} values: {', '.join(values)}; the others not shown)"
    ax.set_xlabel(xlabel)
    ax.grid(axis="x", color="#dddddd", lw=0.6)
    ax.set_axisbelow(True)

    half = "0.5: no majority" if len(values) == 2 else "0.5: half the samples"
    handles.append(Line2D([], [], ls="--", color="#555555", label=half))
    if agrees.any():
        handles.append(
            Line2D(
                [],
                [],
                ls="",
                label=f"{TEXT_AGREES_MARK.strip()} text encoder alone gives the same majority",
            )
        )
    fig.legend(handles=handles, fontsize=7, loc="outside lower center", ncols=2, frameon=False)

    finite_n = samples[pd.notna(samples)]
    constant_n = len(set(finite_n.tolist())) == 1
    if not constant_n:
        right = ax.secondary_yaxis("right")
        right.set_yticks(y, [f"n = {int(v)}" if pd.notna(v) else "" for v in samples])
        right.tick_params(length=0, labelsize=7)
    where = f"{readout} readout"
    if "method_validated" in rows:
        from scalex.analysis.findings import validation_label

        where += f"\n{validation_label(rows)}"
    notes = [_share_ci_note(rows)]
    if constant_n:
        notes.append(f"n = {int(finite_n[0])} samples per concept")
    ax.set_title(f"{axis}: estimated share per concept — {where}\n" + "; ".join(notes), fontsize=10)
    return fig


def findings_figure(table: pd.DataFrame, axis: str, path: str | Path, readout: str) -> Path:
    """The run's headline finding for one identity axis: per concept, the estimated share of
    its generated samples that show the axis's first value, with CI whiskers, sorted, beside the
    text-encoder control (hollow) and a "‡" where the text encoder alone gives the same majority.

    For an axis of more than two values only the first value's share is drawn, and the x-label
    says so. ``table`` is ``findings.tsv`` (:func:`scalex.analysis.findings.findings_table`).
    """
    return _save(findings_plot(table, axis, readout), path)


def _share_ci_note(rows: pd.DataFrame) -> str:
    level = rows.attrs.get("level")
    what = f"{level:.0%} " if level is not None else ""
    over = ""
    if "resampled" in rows and rows["resampled"].notna().any():
        over = f" over {rows['resampled'].dropna().astype(str).iloc[0].replace('+', ' and ')}"
    return f"whiskers: {what}bootstrap CI{over}"


def _side(names: Sequence[str]) -> str:
    names = [str(n) for n in names]
    return names[0] if len(names) == 1 else "(" + " + ".join(names) + ")"


def steering_plot(
    images: np.ndarray,
    alphas: Sequence[float],
    seeds: Sequence[int],
    prompt: str,
    positive: Sequence[str],
    negative: Sequence[str] = (),
    readout: str | None = None,
    unit: str = "mean_diff",
    scale: float | None = None,
    max_seeds: int = 16,
) -> Figure:
    """The figure :func:`steering_grid` saves (same arguments, less ``path``)."""
    images = np.asarray(images)
    n_alpha, n_seed = images.shape[:2]
    if n_alpha != len(alphas) or n_seed != len(seeds):
        raise ValueError(
            f"images {images.shape[:2]} do not match {len(alphas)} alphas x {len(seeds)} seeds"
        )
    shown = min(n_seed, max_seeds)
    h, w = images.shape[2:4]
    tile = max(0.9, min(1.6, 12.0 / max(n_alpha, 1), 16.0 / max(shown, 1)))
    fig = Figure(figsize=(0.6 + tile * n_alpha, 1.6 + tile * shown * h / w), layout="constrained")
    grid = fig.subplots(shown, n_alpha, squeeze=False, gridspec_kw={"wspace": 0.02, "hspace": 0.02})
    smooth = "antialiased" if max(h, w) >= 128 else "nearest"
    for j, alpha in enumerate(alphas):
        for i in range(shown):
            ax = grid[i, j]
            ax.imshow(np.clip(images[j, i], 0, 1), interpolation=smooth)
            ax.set_xticks([])
            ax.set_yticks([])
            if float(alpha) == 0:  # the unsteered stock image: framed, to compare against
                for spine in ax.spines.values():
                    spine.set(color="black", lw=2)
            else:
                for spine in ax.spines.values():
                    spine.set(color="#bbbbbb", lw=0.5)
        head = f"α = {float(alpha):+g}".replace("-", "−") if float(alpha) else "α = 0\n(unsteered)"
        grid[0, j].set_title(head, fontsize=9)
    for i in range(shown):
        grid[i, 0].set_ylabel(f"seed {seeds[i]}", fontsize=8)
    direction = _side(positive) + (f" − {_side(negative)}" if len(negative) else "")
    if unit == "mean_diff":
        how = f"α = 1 moves H-space by the whole mean difference {direction}"
        how += f" (norm {scale:.3g})" if scale is not None else ""
    else:
        how = "α in raw H-space units"
    seeds_note = "rows: seeds (the same initial noise along a row)"
    if shown < n_seed:
        seeds_note += f"; the first {shown} of {n_seed} seeds shown"
    where = f", from the {readout} readout" if readout else ""
    width = max(40, int(11 * (0.6 + tile * n_alpha)))
    lines = [
        textwrap.fill(f"Steering “{prompt}”", width),
        textwrap.fill(f"along the direction {direction}{where}", width),
        textwrap.fill(how, width),
        textwrap.fill(seeds_note, width),
    ]
    fig.suptitle("\n".join(lines), fontsize=9)
    return fig


def steering_grid(
    images: np.ndarray,
    alphas: Sequence[float],
    seeds: Sequence[int],
    path: str | Path,
    prompt: str,
    positive: Sequence[str],
    negative: Sequence[str] = (),
    readout: str | None = None,
    unit: str = "mean_diff",
    scale: float | None = None,
    max_seeds: int = 16,
) -> Path:
    """Steered images (A, S, H, W, 3) in [0, 1]: one column per alpha ("α = …", the unsteered
    α = 0 framed), one row per seed, under a title naming the prompt, the direction (positive −
    negative concepts) and the readout it came from, so the grid reads without its config."""
    fig = steering_plot(
        images, alphas, seeds, prompt, positive, negative, readout, unit, scale, max_seeds
    )
    return _save(fig, path)


def comparison_plot(
    table: pd.DataFrame, axis: str, readout: str, validated: bool = True, fdr: float = 0.05
) -> Figure:
    """The figure :func:`comparison_figure` saves (same arguments, less ``path``)."""
    rows = table[table["axis"] == axis]
    if rows.empty:
        raise ValueError(f"comparison_figure: no rows for axis {axis!r}")
    rows = rows.sort_values(["difference", "concept"], kind="stable")
    n = len(rows)
    first = str(rows["value"].iloc[0])
    base, new = rows["base"].to_numpy(float), rows["new"].to_numpy(float)
    low = base + rows["ci_low"].to_numpy(float)
    high = base + rows["ci_high"].to_numpy(float)
    flagged = rows["flagged"].astype(bool).to_numpy()
    fig = Figure(figsize=(7.5, max(3.0, 0.3 * n + 2.4)), layout="constrained")
    ax = fig.add_subplot()
    y = np.arange(n)
    changed, unchanged = PALETTE[5], NEUTRAL
    for i in range(n):
        colour = changed if flagged[i] else unchanged
        ax.plot(
            [base[i], new[i]], [y[i], y[i]], color=colour, lw=2.2, zorder=2, solid_capstyle="butt"
        )
        ax.plot([low[i], high[i]], [y[i] + 0.22] * 2, color=colour, lw=1.0, zorder=2)
        for edge in (low[i], high[i]):
            ax.plot([edge, edge], [y[i] + 0.14, y[i] + 0.30], color=colour, lw=1.0, zorder=2)
    ax.scatter(base, y, s=42, facecolors="white", edgecolors="#333333", lw=1.2, zorder=3)
    ax.scatter(
        new, y, s=42, c=[changed if f else unchanged for f in flagged], edgecolors="#333333",
        lw=0.6, zorder=4,
    )  # fmt: skip
    ax.set_yticks(
        y, [f"{c} *" if f else str(c) for c, f in zip(rows["concept"], flagged, strict=True)]
    )
    for label, f in zip(ax.get_yticklabels(), flagged, strict=True):
        if f:
            label.set_fontweight("bold")
    ax.set_ylim(-0.7, n - 0.3)
    ax.set_xlim(0, 1)
    ax.axvline(0.5, color="#555555", lw=0.9, ls="--", zorder=1)
    ax.set_xlabel(f"share of generated samples showing '{first}'")
    ax.grid(axis="x", color="#dddddd", lw=0.6)
    ax.set_axisbelow(True)
    handles = [
        Line2D([], [], ls="", marker="o", mfc="white", mec="#333333", label="base model"),
        Line2D([], [], ls="", marker="o", mfc=unchanged, mec="#333333", label="new model"),
        Line2D([], [], color=changed, lw=2.2, label=f"flagged change * (q <= {fdr:g})"),
        Line2D([], [], color=unchanged, lw=1.0, label="base + 95% paired CI of the difference"),
    ]
    fig.legend(handles=handles, fontsize=7, loc="outside lower center", ncols=2, frameon=False)
    where = f"{readout} readout " + ("(validated)" if validated else "(NOT validated)")
    resampled = str(rows["resampled"].iloc[0]).replace("+", " and ") if "resampled" in rows else ""
    ax.set_title(
        f"{axis}: base -> new share per concept — {where}\n{int(flagged.sum())} of {n} changes "
        f"flagged; paired bootstrap over {resampled}, Benjamini-Hochberg across all pairs",
        fontsize=10,
    )
    return fig


def comparison_figure(
    table: pd.DataFrame,
    axis: str,
    path: str | Path,
    readout: str,
    validated: bool = True,
    fdr: float = 0.05,
) -> Path:
    """A comparison's dumbbell figure for one identity axis: per concept, the base model's share
    (hollow) and the new model's (filled), joined; the paired CI of the difference drawn from the
    base share; flagged changes in colour, bold and starred. ``table`` is the comparison's
    ``diff.tsv`` (:func:`scalex.analysis.compare.share_differences`)."""
    return _save(comparison_plot(table, axis, readout, validated, fdr), path)


def check_plot(table: pd.DataFrame, reader: str) -> Figure:
    """The figure :func:`check_figure` saves (same arguments, less ``path``)."""
    from scalex.analysis.check import MIN_AGREEMENT, PASSED

    n = len(table)
    fig = Figure(figsize=(7.5, max(2.6, 0.55 * n + 1.8)), layout="constrained")
    ax = fig.add_subplot()
    y = np.arange(n)[::-1]
    agree = table["agreement"].to_numpy(dtype=float)
    low, high = table["ci_low"].to_numpy(dtype=float), table["ci_high"].to_numpy(dtype=float)
    passed = (table["status"] == PASSED).to_numpy()
    colours = [PALETTE[2] if ok else PALETTE[5] for ok in passed]
    ax.barh(y, np.nan_to_num(agree), color=colours, height=0.55, zorder=2)
    ax.errorbar(
        agree,
        y,
        xerr=np.abs(np.vstack([agree - low, high - agree])),
        fmt="none",
        ecolor="#333333",
        capsize=3,
        lw=1,
        zorder=3,
    )
    ax.scatter(table["chance"], y, marker="|", s=260, color="#111111", zorder=4, label="chance")
    ax.axvline(MIN_AGREEMENT, color="#555555", ls="--", lw=0.9, zorder=1)
    labels = [
        f"{a}\n{s}: κ {k:.2f}, n {d}, undetermined {u:.0%}"
        for a, s, k, d, u in zip(
            table["axis"],
            table["status"],
            table["kappa"].astype(float),
            table["determined"],
            table["undetermined_rate"].astype(float),
            strict=True,
        )
    ]
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of checked samples whose vote names what their own image shows")
    handles = [
        Patch(color=PALETTE[2], label="passed"),
        Patch(color=PALETTE[5], label="failed"),
        Line2D([], [], ls="", marker="|", ms=12, color="#111111", label="chance (shares alone)"),
        Line2D([], [], ls="--", color="#555555", label=f"pass: CI low ≥ {MIN_AGREEMENT:.2f}"),
    ]
    fig.legend(handles=handles, fontsize=7, loc="outside lower center", ncols=4, frameon=False)
    ax.set_title(
        f"Check on this model: each vote against its own image ({reader} reader)", fontsize=10
    )
    return fig


def check_figure(table: pd.DataFrame, reader: str, path: str | Path) -> Path:
    """The check's outcome per identity axis: agreement of the votes with their own images
    (CI whiskers), chance beside it, and whether the axis passed the declared rule."""
    return _save(check_plot(table, reader), path)

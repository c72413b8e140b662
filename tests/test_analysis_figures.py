"""Every figure function writes a non-empty image from small synthetic inputs."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scalex.analysis import figures
from scalex.analysis.defaults import default_bias
from scalex.analysis.descriptors import descriptor_alignment
from scalex.analysis.discovery import rank_vocabulary
from scipy.cluster.hierarchy import fcluster, linkage

PNG = b"\x89PNG\r\n\x1a\n"


def _check(path: Path) -> None:
    assert path.exists() and path.stat().st_size > 2000
    head = path.read_bytes()[:200]
    assert head.startswith(PNG) if path.suffix == ".png" else b"<svg" in head or b"<?xml" in head


@pytest.fixture(scope="module")
def bias_table() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    diffs = {n: rng.standard_normal((3, 4, 3, 16)).astype(np.float32) for n in "abcdefghijkl"}
    diffs["woman"] = rng.standard_normal((3, 4, 3, 16)).astype(np.float32) + 1
    diffs["man"] = rng.standard_normal((3, 4, 3, 16)).astype(np.float32) - 1
    return default_bias(diffs, ("woman", "man"), n_boot=30)


def test_bias_figures(tmp_path, bias_table):
    _check(figures.bias_bar(bias_table, tmp_path / "bar.png"))
    _check(figures.bias_bar(bias_table, tmp_path / "bar.svg"))
    few = bias_table[bias_table["concept"].isin(["a", "b", "c"])]
    few.attrs = bias_table.attrs
    _check(figures.bias_profile(few, tmp_path / "profile_lines.png"))
    _check(figures.bias_profile(bias_table, tmp_path / "profile_heat.png", max_lines=5))


def test_reference_scatter(tmp_path, bias_table):
    pooled = bias_table[bias_table["step"] == "all"].set_index("concept")["score"]
    ref = pd.Series(np.arange(len(pooled), dtype=float), index=[c.upper() for c in pooled.index])
    out = figures.reference_scatter(
        pooled, ref, tmp_path / "sub" / "scatter.png", xlabel="% women", ylabel="score"
    )
    _check(out)


def test_descriptor_heatmap(tmp_path):
    rng = np.random.default_rng(1)
    names = ["nurse", "judge"]
    axes = {"age": ["young", "old"], "mood": ["happy", "sad", "calm"]}
    diffs = {}
    for c in names:
        diffs[c] = rng.standard_normal((2, 3, 2, 8)).astype(np.float32)
        for vs in axes.values():
            for v in vs:
                diffs[f"{v}-{c}"] = rng.standard_normal((2, 3, 2, 8)).astype(np.float32)
    table = descriptor_alignment(diffs, names, axes, n_boot=20)
    _check(figures.descriptor_heatmap(table, tmp_path / "desc.png"))


def test_cluster_figures(tmp_path):
    rng = np.random.default_rng(2)
    centres = rng.standard_normal((3, 20))
    dirs = np.repeat(centres, 5, axis=0) + 0.3 * rng.standard_normal((15, 20))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    sim = dirs @ dirs.T
    z = linkage(dirs, method="average", metric="cosine")
    clusters = fcluster(z, 3, criterion="maxclust")
    ids = [f"concept{i}" for i in range(15)]
    sets = ["professions"] * 8 + ["identities"] * 7
    _check(figures.dendrogram(z, ids, clusters, tmp_path / "dendro.png"))
    _check(figures.similarity_heatmap(sim, ids, clusters, tmp_path / "sim.png"))
    _check(figures.concept_map(ids, clusters, tmp_path / "mds.png", similarity=sim, sets=sets))
    _check(figures.concept_map(ids, clusters, tmp_path / "pca.png", directions=dirs, method="pca"))
    _check(figures.silhouette_curve([2, 3, 4, 5], [0.3, 0.6, 0.5, 0.4], 3, tmp_path / "sil.png"))


def test_classical_mds_recovers_distances():
    rng = np.random.default_rng(3)
    pts = rng.standard_normal((10, 2))
    dist = np.linalg.norm(pts[:, None] - pts[None], axis=-1)
    coords = figures.classical_mds(dist)
    np.testing.assert_allclose(np.linalg.norm(coords[:, None] - coords[None], axis=-1), dist, 1e-6)


def test_cluster_order_groups_clusters():
    order = figures.cluster_order([2, 1, 2, 1, 3], order=[4, 0, 1, 2, 3])
    assert order.tolist() == [4, 0, 2, 1, 3]


def test_discovery_bars(tmp_path):
    rng = np.random.default_rng(4)
    lat = rng.standard_normal((200, 12)).astype(np.float32)
    words = [f"word{i}" for i in range(200)]
    table = rank_vocabulary(lat, words, rng.standard_normal((2, 12)), k=6)
    _check(figures.discovery_bars(table, tmp_path / "disc.png"))


def test_concept_map_legends_fit_in_figure(tmp_path):
    """Many sets with long names: both legends lie inside the figure, apart from each other and
    from the map (they were once placed past the right edge and over each other)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.legend import Legend

    rng = np.random.default_rng(5)
    n = 36
    dirs = rng.standard_normal((n, 12))
    ids = [f"concept{i}" for i in range(n)]
    clusters = [i % 7 for i in range(n)]
    sets = [f"set {i % 18}: " + "a rather long descriptive name " * 4 for i in range(n)]
    fig = figures.concept_map_figure(ids, clusters, directions=dirs, sets=sets)
    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legends = fig.findobj(Legend)
    assert len(legends) == 2
    page = fig.bbox
    boxes = [leg.get_window_extent(renderer) for leg in legends]
    for box in boxes:
        assert page.x0 - 0.5 <= box.x0 and box.x1 <= page.x1 + 0.5, (box, page)
        assert page.y0 - 0.5 <= box.y0 and box.y1 <= page.y1 + 0.5, (box, page)
    assert not boxes[0].overlaps(boxes[1])
    (ax,) = fig.axes
    assert not any(ax.get_window_extent(renderer).overlaps(box) for box in boxes)
    _check(
        figures.concept_map(ids, clusters, tmp_path / "long_sets.png", directions=dirs, sets=sets)
    )


# -- what a reader sees: titles, labels, scales ----------------------------------------------------
@pytest.fixture
def drawn(monkeypatch):
    """The figures the figure functions save, drawn, by file name."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    figs = {}
    save = figures._save

    def keep(fig, path):
        if not isinstance(fig.canvas, FigureCanvasAgg):
            FigureCanvasAgg(fig)
        fig.canvas.draw()
        figs[Path(path).name] = fig
        return save(fig, path)

    monkeypatch.setattr(figures, "_save", keep)
    return figs


def _titles(fig) -> str:
    parts = [ax.get_title() for ax in fig.axes]
    if fig._suptitle is not None:
        parts.append(fig._suptitle.get_text())
    return "\n".join(parts)


def _text_boxes(ax):
    """Each label's own extent (an annotation's extent would include its leader line)."""
    from matplotlib.text import Text

    ax.figure.canvas.draw()  # at the figure's dpi again, after saving at another
    renderer = ax.figure.canvas.get_renderer()
    return [(t.get_text(), Text.get_window_extent(t, renderer)) for t in ax.texts]


def test_bias_bar_is_the_published_score_and_marks_unresolved_leans(tmp_path, bias_table, drawn):
    figures.bias_bar(bias_table, tmp_path / "bar.png", readout="prompt")
    fig = drawn["bar.png"]
    (ax,) = fig.axes
    assert figures.SCALEX_SCORE.lower() in ax.get_title().lower()
    assert "prompt readout" in ax.get_title()
    assert "published SCALEX score" in ax.get_xlabel()
    lo, hi = ax.get_xlim()
    assert lo == pytest.approx(-hi)  # a signed score, not a share from 0
    rows = bias_table[bias_table["step"] == "all"].sort_values("score", kind="stable")
    crosses = ((rows["ci_low"] <= 0) & (rows["ci_high"] >= 0)).to_numpy()
    assert crosses.any() and not crosses.all()  # the fixture has both kinds
    hatched = np.array([bool(p.get_hatch()) for p in ax.patches])
    np.testing.assert_array_equal(hatched, crosses)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("CI crosses 0" in t for t in labels)


def test_titles_name_the_readout_and_variant(tmp_path, drawn):
    rng = np.random.default_rng(6)
    dirs = rng.standard_normal((6, 8))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    ids = [f"c{i}" for i in range(6)]
    clusters = [1, 1, 2, 2, 3, 3]
    where = {"readout": "content", "variant": "axes_removed"}
    z = linkage(dirs, method="average", metric="cosine")
    figures.dendrogram(z, ids, clusters, tmp_path / "d.png", **where)
    figures.similarity_heatmap(dirs @ dirs.T, ids, clusters, tmp_path / "s.png", **where)
    figures.concept_map(ids, clusters, tmp_path / "m.png", directions=dirs, **where)
    figures.silhouette_curve([2, 3], [0.2, 0.3], 3, tmp_path / "k.png", **where)
    for name in ("d.png", "s.png", "m.png", "k.png"):
        title = _titles(drawn[name])
        assert "content readout" in title and "axes_removed" in title, (name, title)
    few = pd.DataFrame(
        {
            "concept": ["a", "a", "b", "b"],
            "axis": "gender",
            "descriptor": ["female", "male"] * 2,
            "alignment": [0.9, 0.8, 0.85, 0.95],
            "rank": [1, 2, 2, 1],
        }
    )
    figures.descriptor_heatmap(few, tmp_path / "h.png", readout="text")
    assert "text readout" in _titles(drawn["h.png"])


def test_cluster_figures_step_passes_readout_and_variant(tmp_path, drawn):
    from scalex.steps.cluster_figures import run

    ids = ["doctor", "nurse", "judge", "chef"]
    sim = np.array(
        [[1, 0.9, 0.2, 0.1], [0.9, 1, 0.1, 0.2], [0.2, 0.1, 1, 0.8], [0.1, 0.2, 0.8, 1]], float
    )
    pd.DataFrame(sim, index=ids, columns=ids).to_csv(tmp_path / "sim.tsv", sep="\t")
    pd.DataFrame({"concept": ids, "cluster": [1, 1, 2, 2], "set": "professions"}).to_csv(
        tmp_path / "clusters.tsv", sep="\t", index=False
    )
    pd.DataFrame({"k": [2], "silhouette": [0.5], "chosen": [True]}).to_csv(
        tmp_path / "sil.tsv", sep="\t", index=False
    )
    out = tmp_path / "out"
    run(tmp_path / "sim.tsv", tmp_path / "clusters.tsv", tmp_path / "sil.tsv", out,
        readout="prompt", variant="raw")  # fmt: skip
    for name in ("dendrogram.png", "similarity_heatmap.png", "concept_map.png", "silhouette.png"):
        _check(out / name)
        assert "prompt readout, raw" in _titles(drawn[name]), name


def test_concept_map_labels_do_not_overlap_and_legend_names_members(drawn, tmp_path):
    rng = np.random.default_rng(7)
    n = 30
    # Three tight clumps: labels placed up-right of each point would pile on each other.
    centres = np.array([[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 0]])
    dirs = np.repeat(centres, 10, axis=0) + 0.02 * rng.standard_normal((n, 4))
    ids = [f"concept number {i}" for i in range(n)]
    clusters = [1] * 10 + [2] * 10 + [3] * 10
    figures.concept_map(ids, clusters, tmp_path / "crowd.png", directions=dirs)
    fig = drawn["crowd.png"]
    ax = fig.axes[0]
    boxes = _text_boxes(ax)
    assert sorted(t for t, _ in boxes) == sorted(ids)
    for i, (a, box_a) in enumerate(boxes):
        for b, box_b in boxes[i + 1 :]:
            assert not box_a.overlaps(box_b), (a, b)
    frame = ax.get_window_extent()
    assert all(frame.x0 <= b.x0 and b.x1 <= frame.x1 for _, b in boxes)
    legend = fig.legends[0]
    texts = [re.sub(r"[ \n]+", " ", t.get_text()) for t in legend.get_texts()]
    assert texts[0].startswith("cluster 1: concept number 0, concept number 1")
    assert "+4\u00a0more" in texts[0]  # 10 members, 6 named
    assert figures.cluster_label(2, ["doctor", "nurse"]) == "cluster 2: doctor, nurse"


def test_readouts_scatter_shares_axes_and_draws_identity(tmp_path, drawn):
    wide = pd.DataFrame(
        {
            "concept": list("abcde"),
            "text_score": [0.1, -0.2, 0.05, 0.3, -0.1],
            "prompt_score": [0.12, -0.25, 0.0, 0.28, -0.05],
            "content_score": [0.01, -0.02, 0.03, 0.6, 0.0],
        }
    )
    figures.readouts_scatter(wide, tmp_path / "r.png", title="defaults: gender")
    axes = drawn["r.png"].axes
    assert len(axes) == 2
    limits = {(ax.get_xlim(), ax.get_ylim()) for ax in axes}
    assert len(limits) == 1
    ((xlim, ylim),) = limits
    assert xlim == pytest.approx(ylim)
    assert xlim[0] <= -0.25 and xlim[1] >= 0.6  # every point of every panel inside
    for ax in axes:
        identity = [ln for ln in ax.get_lines() if ln.get_label().startswith("y = x")]
        assert identity
        x, y = identity[0].get_data()
        np.testing.assert_allclose(x, y)


def test_descriptor_heatmap_colours_fit_a_narrow_band(tmp_path, drawn):
    rng = np.random.default_rng(8)
    rows = []
    for c in ["nurse", "judge", "pilot", "chef"]:
        values = rng.uniform(0.80, 0.95, 2)
        for j, (v, a) in enumerate(zip(["female", "male"], values, strict=True)):
            rank = 1 + int(a < values[1 - j])
            rows.append({"concept": c, "axis": "gender", "descriptor": v, "alignment": a,
                         "rank": rank})  # fmt: skip
    table = pd.DataFrame(rows)
    figures.descriptor_heatmap(table, tmp_path / "narrow.png", readout="content")
    fig = drawn["narrow.png"]
    image = fig.axes[0].get_images()[0]
    vmin, vmax = image.get_clim()
    assert vmin >= 0.79 and vmax <= 0.96  # fitted to the data, not -1..1
    assert vmax - vmin > 0.5 * np.ptp(table["alignment"])
    cells = [t.get_text() for t in fig.axes[0].texts]
    assert sorted(cells) == sorted(f"{a:.2f}" for a in table["alignment"])
    colourbar = fig.axes[-1]
    assert "alignment" in colourbar.get_ylabel()
    assert figures.robust_range(np.full(5, 0.9))[0] < 0.9 < figures.robust_range(np.full(5, 0.9))[1]


def _findings() -> pd.DataFrame:
    concepts = ["nurse", "doctor", "judge", "pilot"]
    female = [0.9, 0.4, 0.55, 0.1]
    text = [0.8, 0.7, np.nan, 0.2]
    agrees = [True, False, False, True]
    rows = []
    for c, f, t, a in zip(concepts, female, text, agrees, strict=True):
        for v, s, ts in (("female", f, t), ("male", 1 - f, 1 - t)):
            rows.append(
                {"concept": c, "axis": "gender", "value": v, "share": s, "ci_low": s - 0.05,
                 "ci_high": s + 0.05, "samples": 64, "resampled": "seeds", "readout": "content",
                 "validated": True, "method_validated": True, "check": "passed",
                 "check_agreement": 0.97, "check_samples": 120, "text_share": ts,
                 "text_agrees": a}
            )  # fmt: skip
    for c, shares in (("nurse", [0.2, 0.5, 0.3]), ("doctor", [0.6, 0.3, 0.1])):
        for v, s in zip(["young", "middle-aged", "old"], shares, strict=True):
            rows.append(
                {"concept": c, "axis": "age", "value": v, "share": s, "ci_low": s - 0.1,
                 "ci_high": s + 0.1, "samples": 40 if c == "nurse" else 48,
                 "resampled": "seeds", "readout": "content", "validated": False,
                 "method_validated": True, "check": "not checked", "check_agreement": np.nan,
                 "check_samples": 0, "text_share": np.nan, "text_agrees": False}
            )  # fmt: skip
    return pd.DataFrame(rows)


def test_findings_figure(tmp_path):
    table = _findings()
    _check(figures.findings_figure(table, "gender", tmp_path / "gender.png", readout="content"))
    fig = figures.findings_plot(table, "gender", readout="content")
    ax = fig.axes[0]
    # Sorted by the share of 'female' (ascending from the bottom); "‡" where text agrees.
    ticks = [t.get_text() for t in ax.get_yticklabels()]
    assert ticks == ["pilot ‡", "doctor", "judge", "nurse ‡"]
    assert ax.get_xlim() == (0, 1)
    assert "showing 'female'" in ax.get_xlabel()
    assert any(ln.get_xdata()[0] == 0.5 and ln.get_linestyle() == "--" for ln in ax.get_lines())
    title = ax.get_title()
    assert title.startswith(
        "gender: estimated share per concept — content readout\n"
        "method validated; check passed on this model (agreement 0.97, n 120)"
    )
    assert "CI" in title and "n = 64 samples per concept" in title
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "text encoder alone" in legend
    assert any(t.startswith("‡ text encoder alone gives the same majority") for t in legend)
    hollow = [c for c in ax.collections if c.get_label() == "text encoder alone"]
    np.testing.assert_allclose(hollow[0].get_offsets()[:, 0], [0.2, 0.7, np.nan, 0.8])


def test_findings_figure_of_a_many_valued_axis_says_first_value_and_n(tmp_path):
    fig = figures.findings_plot(_findings(), "age", readout="prompt")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["nurse", "doctor"]
    assert "showing 'young'" in ax.get_xlabel() and "first of 3 values" in ax.get_xlabel()
    assert "method validated; not checked on this model" in ax.get_title()
    right = [a for a in ax.child_axes]
    assert [t.get_text() for t in right[0].get_yticklabels()] == ["n = 40", "n = 48"]
    with pytest.raises(ValueError, match="colour"):
        figures.findings_plot(_findings(), "colour", readout="content")


def test_steering_grid_labels_alphas_seeds_and_direction(tmp_path):
    from scalex.steps.steering import direction_readout

    rng = np.random.default_rng(9)
    images = rng.random((3, 2, 16, 16, 3))
    args = ([-1.0, 0.0, 2.0], [5, 7])
    fig = figures.steering_plot(
        images, *args, prompt="a photo of a doctor", positive=["woman"],
        negative=["man", "boy"], readout="prompt", scale=3.5,
    )  # fmt: skip
    grid = np.array(fig.axes).reshape(2, 3)  # rows: seeds, columns: alphas
    assert [ax.get_title() for ax in grid[0]] == ["α = −1", "α = 0\n(unsteered)", "α = +2"]
    assert [ax.get_ylabel() for ax in grid[:, 0]] == ["seed 5", "seed 7"]
    np.testing.assert_allclose(grid[1, 2].get_images()[0].get_array(), images[2, 1])
    title = fig._suptitle.get_text().replace("\n", " ")
    assert "a photo of a doctor" in title
    assert "woman − (man + boy)" in title and "prompt readout" in title
    _check(
        figures.steering_grid(
            images, *args, tmp_path / "grid.png", prompt="p", positive=["woman"], readout="content"
        )
    )
    assert (
        direction_readout(["t/content/directions/0.h5", "t/content/directions/1.h5"]) == "content"
    )
    assert direction_readout(["somewhere/d.h5"]) is None

"""Every figure function writes a non-empty image from small synthetic inputs."""

from __future__ import annotations

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

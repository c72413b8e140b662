"""Vocabulary discovery: planted best/worst prompts must come back exactly, chunked or not."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
from scalex.analysis.discovery import DISCOVERY_COLUMNS, rank_vocabulary

TOP_COS = [0.9, 0.8, 0.7, 0.6, 0.5]


def _plant(n: int, dim: int, n_queries: int, seed: int = 0):
    """Random vocabulary with rows at known cosines (+ and -) to each query, and their indices."""
    rng = np.random.default_rng(seed)
    latents = rng.standard_normal((n, dim), dtype=np.float32)
    queries = rng.standard_normal((n_queries, dim), dtype=np.float32)
    planted = rng.choice(n, size=(n_queries, 2 * len(TOP_COS)), replace=False)
    for qi in range(n_queries):
        q = queries[qi] / np.linalg.norm(queries[qi])
        for j, c in enumerate([*TOP_COS, *(-c for c in TOP_COS)]):
            r = rng.standard_normal(dim)
            r -= (r @ q) * q
            r /= np.linalg.norm(r)
            latents[planted[qi, j]] = 3.0 * (c * q + np.sqrt(1 - c * c) * r)  # scale is irrelevant
    return latents, queries, planted


def _brute_force(latents, queries, k):
    u = latents / np.linalg.norm(latents, axis=1, keepdims=True)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    sims = q @ u.T
    return np.argsort(-sims, axis=1, kind="stable")[:, :k], np.argsort(sims, axis=1)[:, :k]


def test_planted_top_and_bottom_exact_10k_x_1280():
    latents, queries, planted = _plant(10_000, 1280, 3)
    names = [f"prompt {i}" for i in range(len(latents))]
    t0 = time.perf_counter()
    df = rank_vocabulary(latents, names, queries, ["q0", "q1", "q2"], k=5)
    elapsed = time.perf_counter() - t0
    print(f"rank_vocabulary 10,000 x 1280, 3 queries: {elapsed * 1e3:.1f} ms")
    assert list(df.columns) == DISCOVERY_COLUMNS
    assert len(df) == 3 * 2 * 5
    for qi in range(3):
        part = df[df["query"] == f"q{qi}"]
        top = part[part["end"] == "top"].sort_values("rank")
        bottom = part[part["end"] == "bottom"].sort_values("rank")
        assert top["index"].tolist() == planted[qi, :5].tolist()
        assert bottom["index"].tolist() == planted[qi, 5:].tolist()
        assert top["name"].tolist() == [names[i] for i in planted[qi, :5]]
        np.testing.assert_allclose(top["cosine"], TOP_COS, atol=1e-5)
        np.testing.assert_allclose(bottom["cosine"], [-c for c in TOP_COS], atol=1e-5)


def test_matches_brute_force_with_any_chunking():
    latents, queries, _ = _plant(3000, 64, 4, seed=1)
    names = [str(i) for i in range(3000)]
    top, bottom = _brute_force(latents, queries, 25)
    whole = rank_vocabulary(latents, names, queries, k=25)
    tiny = rank_vocabulary(latents, names, queries, k=25, chunk_bytes=64 * 4 * 7)  # 7 rows
    pieces = [latents[a:b] for a, b in [(0, 1), (1, 1000), (1000, 1013), (1013, 3000)]]
    stream = rank_vocabulary(iter(pieces), names, queries, k=25)
    pd.testing.assert_frame_equal(whole, tiny)
    pd.testing.assert_frame_equal(whole, stream)
    for qi in range(4):
        part = whole[whole["query"] == f"query{qi}"]
        assert part[part["end"] == "top"]["index"].tolist() == top[qi].tolist()
        assert part[part["end"] == "bottom"]["index"].tolist() == bottom[qi].tolist()


def test_full_spatial_dimension_in_bounded_chunks():
    dim = 81_920  # 1280 x 8 x 8
    latents, queries, planted = _plant(120, dim, 2, seed=2)
    df = rank_vocabulary(latents, [str(i) for i in range(120)], queries, k=3, chunk_bytes=8 * 2**20)
    top = df[(df["query"] == "query1") & (df["end"] == "top")]
    assert top["index"].tolist() == planted[1, :3].tolist()


def test_edge_cases():
    latents = np.eye(4, 6, dtype=np.float32)
    latents[2] = 0  # zero row: no direction, never ranked
    df = rank_vocabulary(latents, list("abcd"), np.eye(6)[0], k=10)
    assert set(df["name"]) == {"a", "b", "d"}
    assert df[df["end"] == "top"]["name"].iloc[0] == "a"
    with pytest.raises(ValueError, match="names"):
        rank_vocabulary(latents, list("abc"), np.eye(6)[0])
    with pytest.raises(ValueError, match="zero"):
        rank_vocabulary(latents, list("abcd"), np.zeros(6))
    with pytest.raises(ValueError, match="shape"):
        rank_vocabulary(latents, list("abcd"), np.ones(5))

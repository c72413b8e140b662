"""Open-ended discovery: the prompts of a large vocabulary most and least aligned with a direction.

The vocabulary is an ``(N, D)`` matrix — each row one prompt's seed-averaged difference to the
baseline — that may be far larger than memory for D = C*h*w. It is read in row chunks and a running
top-k / bottom-k is kept per query, so memory is bounded by one chunk plus ``Q x k`` candidates.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from scalex.vectors import unit

DISCOVERY_COLUMNS = ["query", "end", "rank", "name", "index", "cosine"]

#: Default bytes of vocabulary rows read and multiplied at once.
DEFAULT_CHUNK_BYTES = 64 * 2**20


def _row_chunks(
    latents: np.ndarray | Iterable[np.ndarray], dim: int, chunk_bytes: int
) -> Iterable[np.ndarray]:
    """Yield float32 row blocks of a 2-D array (sliced lazily) or pass an iterator through."""
    if hasattr(latents, "shape") and hasattr(latents, "__getitem__"):
        if len(latents.shape) != 2 or latents.shape[1] != dim:
            raise ValueError(f"latents must have shape (N, {dim}); got {latents.shape}")
        rows = max(1, chunk_bytes // (4 * dim))
        for lo in range(0, latents.shape[0], rows):
            yield np.asarray(latents[lo : lo + rows], dtype=np.float32)
    else:
        for chunk in latents:
            chunk = np.asarray(chunk, dtype=np.float32)
            if chunk.ndim != 2 or chunk.shape[1] != dim:
                raise ValueError(f"every chunk must have shape (n, {dim}); got {chunk.shape}")
            yield chunk


def _merge(
    vals: np.ndarray, idx: np.ndarray, new_vals: np.ndarray, new_idx: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Keep the k largest values per row of ``[vals | new_vals]`` (unordered; sorted at the end)."""
    cand_v = np.concatenate([vals, new_vals], axis=1)
    cand_i = np.concatenate([idx, np.broadcast_to(new_idx, new_vals.shape)], axis=1)
    if cand_v.shape[1] > k:
        part = np.argpartition(-cand_v, k - 1, axis=1)[:, :k]
        cand_v = np.take_along_axis(cand_v, part, axis=1)
        cand_i = np.take_along_axis(cand_i, part, axis=1)
    return cand_v, cand_i


def rank_vocabulary(
    latents: np.ndarray | Iterable[np.ndarray],
    names: Sequence[str],
    queries: np.ndarray,
    query_names: Sequence[str] | None = None,
    k: int = 20,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> pd.DataFrame:
    """Top-k and bottom-k vocabulary prompts per query direction, by cosine similarity.

    ``latents`` is an ``(N, D)`` array (numpy, memmap or HDF5 dataset: read ``chunk_bytes`` at a
    time) or an iterable of ``(n_i, D)`` row chunks in the order of ``names``. ``queries`` is
    ``(Q, D)`` or ``(D,)``; it need not be unit-norm. Rows with zero norm have no direction and
    are skipped. Returns a DataFrame with columns ``query, end ("top"/"bottom"), rank, name,
    index, cosine``; ``rank`` 1 is the most (top) or least (bottom) aligned prompt.
    """
    q = unit(np.atleast_2d(np.asarray(queries, dtype=np.float32)), what="a query direction")
    n_q, dim = q.shape
    if query_names is None:
        query_names = [f"query{i}" for i in range(n_q)]
    if len(query_names) != n_q:
        raise ValueError(f"{len(query_names)} query names for {n_q} queries")
    if k < 1:
        raise ValueError(f"k must be at least 1; got {k}")

    empty_v = np.empty((n_q, 0), dtype=np.float32)
    empty_i = np.empty((n_q, 0), dtype=np.int64)
    top_v, top_i, bot_v, bot_i = empty_v, empty_i, empty_v, empty_i
    start = 0
    for chunk in _row_chunks(latents, dim, chunk_bytes):
        n = chunk.shape[0]
        rows = unit(chunk, zero="keep")  # a zero row has no direction: skipped below
        sims = q @ rows.T  # (Q, n)
        ok = np.any(rows != 0, axis=1)
        index = np.arange(start, start + n)[ok]
        sims = sims[:, ok]
        top_v, top_i = _merge(top_v, top_i, sims, index, k)
        neg_v, bot_i = _merge(-bot_v, bot_i, -sims, index, k)
        bot_v = -neg_v
        start += n
    if start != len(names):
        raise ValueError(f"{len(names)} names for {start} vocabulary rows")

    rows = []
    for qi, qname in enumerate(query_names):
        for end, vals, idx, sign in (("top", top_v, top_i, -1), ("bottom", bot_v, bot_i, 1)):
            order = np.lexsort((idx[qi], sign * vals[qi]))
            for r, j in enumerate(order, start=1):
                i = int(idx[qi, j])
                rows.append(
                    {
                        "query": qname,
                        "end": end,
                        "rank": r,
                        "name": names[i],
                        "index": i,
                        "cosine": float(vals[qi, j]),
                    }
                )
    return pd.DataFrame(rows, columns=DISCOVERY_COLUMNS)

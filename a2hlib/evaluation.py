"""Retrieval evaluation of a trained run: the numbers of `notebooks/03_retrieval_evaluation.ipynb`.

Two protocols (docs/METHOD.md §1): `asymmetric` (database = the learned codes B, as in ADSH and the
paper) and `symmetric` (database encoded by the network). Every mAP is reported under both tie
rules: `stable` (ties ranked by database index) and `aware` (expected AP over random tie orders).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from a2hlib import metrics
from a2hlib.codes import binarize, check_codes


@dataclass
class RetrievalReport:
    """Scalars (for metrics.json) and curves (for plots) of one protocol."""

    protocol: str
    scalars: dict[str, float]
    precision_at_n: tuple[np.ndarray, np.ndarray]       # (N values, precision)
    pr_by_radius: tuple[np.ndarray, np.ndarray]         # (precision[r], recall[r]), r = 0..k


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def retrieval_report(protocol: str, query_codes, db_codes, query_labels, db_labels,
                     topk: int = 100, ns: np.ndarray | None = None) -> RetrievalReport:
    """mAP@all (stable and tie-aware), mAP@topk, P@r≤2, precision@N and PR-by-radius curves.

    query_codes, db_codes: ±1 codes (`hash_codes`, or the learned B), never relaxed outputs or 0/1
    bits; anything else is refused (see `a2hlib.codes.check_codes`) before any metric runs."""
    topk = _positive_int(topk, "topk")
    q = check_codes(query_codes, "query_codes")
    d = check_codes(db_codes, "db_codes")
    metrics.check_labels(query_labels, "query_labels", len(q), "query_codes")
    metrics.check_labels(db_labels, "db_labels", len(d), "db_codes")
    ql, dl = torch.as_tensor(query_labels), torch.as_tensor(db_labels)
    topk = min(topk, len(d))
    if ns is None:
        ns = np.unique(np.linspace(1, len(d), num=min(50, len(d))).astype(int))
    ns = np.atleast_1d(np.asarray(ns))
    if ns.ndim != 1 or ns.dtype.kind not in "iu" or (ns < 1).any() or (ns > len(d)).any():
        raise ValueError(f"ns must be integers in 1..{len(d)} (the database size), got {ns!r}")
    scalars = {
        "map_all_stable": metrics.mean_average_precision(q, d, ql, dl, ties="stable"),
        "map_all_aware": metrics.mean_average_precision(q, d, ql, dl, ties="aware"),
        f"map_at_{topk}": metrics.mean_average_precision(q, d, ql, dl, topk=topk),
        "precision_radius2": metrics.precision_within_radius(q, d, ql, dl, radius=2),
    }
    return RetrievalReport(protocol, scalars, (ns, metrics.precision_at_n(q, d, ql, dl, ns)),
                           metrics.precision_recall_by_radius(q, d, ql, dl))


def random_code_baseline(query_labels, db_labels, code_length: int, seed: int = 0) -> float:
    """mAP@all (stable) of random codes: the chance level a trained model must beat."""
    code_length = _positive_int(code_length, "code_length")
    metrics.check_labels(query_labels, "query_labels")
    metrics.check_labels(db_labels, "db_labels")
    g = torch.Generator().manual_seed(seed)
    q = binarize(torch.randn(len(query_labels), code_length, generator=g))
    d = binarize(torch.randn(len(db_labels), code_length, generator=g))
    return metrics.mean_average_precision(q, d, torch.as_tensor(query_labels), torch.as_tensor(db_labels))


def hash_codes(model, dataset, device: str | torch.device = "cpu", batch_size: int = 128) -> torch.Tensor:
    """b = sign(u) (sign(0) = +1) of every item of `dataset`, in order."""
    from a2hlib.models import encode
    return binarize(encode(model, dataset, batch_size=batch_size, device=device))


def query_map(model, queries, db_codes: torch.Tensor, db_labels, device: str | torch.device = "cpu",
              ties: str = "stable") -> float:
    """mAP@all of `queries` (encoded by `model`) against database codes: one number, for selection.
    The database codes and all labels are checked before the queries are encoded."""
    if ties not in ("stable", "aware"):
        raise ValueError(f"ties must be 'stable' or 'aware', got {ties!r}")
    d = check_codes(db_codes, "db_codes")
    metrics.check_labels(db_labels, "db_labels", len(d), "db_codes")
    metrics.check_labels(queries.targets, "queries.targets", len(queries), "queries")
    return metrics.mean_average_precision(hash_codes(model, queries, device), d, queries.targets,
                                          torch.as_tensor(db_labels), ties=ties)


def validation_selector(val_queries, db_labels, device: str | torch.device = "cpu",
                        ties: str = "stable") -> Callable[[Any], float]:
    """The `select` callable of `a2hlib.training.train`: the mAP@all of the val split (encoded by the
    state's network) against the state's database codes B, after every outer iteration
    (`notebooks/02_training.ipynb`). Never pass the query set here: it would select on the test set.
    The labels and the tie rule are checked now, before any training."""
    if ties not in ("stable", "aware"):
        raise ValueError(f"ties must be 'stable' or 'aware', got {ties!r}")
    if len(val_queries) == 0:
        raise ValueError("val_queries is empty: prepare a val split (python -m data_prep NAME --val-fraction 0.1) "
                         "or pass select=None")
    metrics.check_labels(val_queries.targets, "val_queries.targets", len(val_queries), "val_queries")
    metrics.check_labels(db_labels, "db_labels")

    def select(state) -> float:
        return query_map(state.model, val_queries, state.B, db_labels, device, ties)

    return select


def top_k(query_codes, db_codes, k: int) -> np.ndarray:
    """Indices (q×k) of the k nearest database codes by Hamming distance, ties by database index."""
    from a2hlib.codes import hamming_distance
    k = _positive_int(k, "k")
    return np.argsort(hamming_distance(query_codes, db_codes).numpy(), axis=1, kind="stable")[:, :k]

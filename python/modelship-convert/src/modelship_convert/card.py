"""The model card modelship reads beside the model (`model.card.json`), with the training baseline.

Fields as the server reads them (inference-server/src/model.rs): title, description,
feature_names, class_labels, example and baseline. The baseline is the sample's
distribution, for drift (docs/models.md): per feature, `edges` are the sample's distinct
deciles (k interior cut points) and `proportions` the k+1 shares of rows below the first
edge, between edges, and at or above the last (a value x is in bin "number of edges <= x");
`classes` the share of each class index; `rows` the sample's size.
"""

from __future__ import annotations

import numpy as np

DECILES = np.linspace(0.1, 0.9, 9)


def feature_baseline(name: str, column: np.ndarray) -> dict:
    column = np.asarray(column, dtype=np.float64)
    column = column[~np.isnan(column)]
    edges = np.unique(np.quantile(column, DECILES)) if len(column) else np.array([])
    bins = np.searchsorted(edges, column, side="right")
    counts = np.bincount(bins, minlength=len(edges) + 1)
    proportions = counts / max(len(column), 1)
    return {"name": name, "edges": [float(e) for e in edges], "proportions": [float(p) for p in proportions]}


def baseline(x: np.ndarray, feature_names: list[str], class_index: np.ndarray | None, n_classes: int) -> dict:
    out = {"features": [feature_baseline(n, x[:, j]) for j, n in enumerate(feature_names)]}
    if class_index is not None and n_classes:
        counts = np.bincount(class_index, minlength=n_classes)
        out["classes"] = [float(c) for c in counts / max(len(class_index), 1)]
    out["rows"] = int(len(x))
    return out


def model_card(
    *,
    title: str,
    description: str,
    feature_names: list[str],
    class_labels: list[str] | None,
    example: list[float],
    baseline: dict | None,
) -> dict:
    card = {"title": title, "description": description, "feature_names": feature_names}
    if class_labels:
        card["class_labels"] = class_labels
    card["example"] = example
    if baseline:
        card["baseline"] = baseline
    return card

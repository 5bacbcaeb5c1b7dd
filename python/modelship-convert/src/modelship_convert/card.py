"""The model card modelship reads beside the model (`model.card.json`), with the training baseline.

Fields as the server reads them (inference-server/src/model.rs): title, description,
feature_names, class_labels, example, image and baseline. `image` marks the input as a
greyscale picture flattened row-major (see image_field), so the web page offers a drawing pad. The baseline is the sample's
distribution, for drift (docs/models.md): per feature, `edges` are the sample's distinct
deciles (k interior cut points) and `proportions` the k+1 shares of rows below the first
edge, between edges, and at or above the last (a value x is in bin "number of edges <= x");
`classes` the share of each class index; `rows` the sample's size.
"""

from __future__ import annotations

import re

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


def parse_image(text: str) -> dict:
    """`HxW`, `HxW:INK` or `HxW:BACKGROUND..INK` (`8x8:16`, `28x28:255..0`) as the card's `image`:
    the picture's height and width and the pixel values of no ink (default 0) and full ink
    (default 1)."""
    size, _, values = text.partition(":")
    match = re.fullmatch(r"([0-9]+)x([0-9]+)", size.strip())
    if not match or int(match[1]) < 1 or int(match[2]) < 1:
        raise ValueError(f"--image {text!r}: expected HEIGHTxWIDTH[:INK or :BACKGROUND..INK], e.g. 8x8:16")
    background, ink = 0.0, 1.0
    if values:
        low, sep, high = values.partition("..")
        try:
            background, ink = (float(low), float(high)) if sep else (0.0, float(low))
        except ValueError:
            raise ValueError(f"--image {text!r}: {values!r} is not INK or BACKGROUND..INK (numbers)") from None
        if not (np.isfinite(background) and np.isfinite(ink)) or background == ink:
            raise ValueError(f"--image {text!r}: no ink ({background:g}) and full ink ({ink:g}) must differ")
    return {"height": int(match[1]), "width": int(match[2]), "background": background, "ink": ink}


def check_image(image: dict, n_features: int) -> None:
    """The picture must be the model's features, as the server checks at load."""
    pixels = image["height"] * image["width"]
    if pixels != n_features:
        raise ValueError(
            f"image {image['height']}x{image['width']} is {pixels} pixels, but the model has {n_features} features"
        )


def model_card(
    *,
    title: str,
    description: str,
    feature_names: list[str],
    class_labels: list[str] | None,
    example: list[float],
    baseline: dict | None,
    image: dict | None = None,
) -> dict:
    card = {"title": title, "description": description, "feature_names": feature_names}
    if class_labels:
        card["class_labels"] = class_labels
    card["example"] = example
    if image:
        card["image"] = image
    if baseline:
        card["baseline"] = baseline
    return card

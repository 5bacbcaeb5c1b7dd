"""Check a conversion against the original on the sample, then write model.onnx and its card."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from . import card as cards
from .convert import Converted, convert
from .verify import Agreement, check, run_onnx


def write_model(
    model: Any,
    x: np.ndarray,
    out_dir: str | Path,
    *,
    feature_names: list[str] | None = None,
    class_labels: list[str] | None = None,
    title: str | None = None,
    description: str | None = None,
    y: np.ndarray | None = None,
    stem: str = "model",
    image: dict | None = None,
) -> Agreement:
    """Converts a scikit-learn/XGBoost/LightGBM model and writes it; see write_converted."""
    x = np.asarray(x, dtype=np.float32)
    converted = convert(model, x.shape[1])
    names = feature_names or _feature_names_of(model, x.shape[1])
    return write_converted(
        converted, x, out_dir, feature_names=names, class_labels=class_labels,
        title=title, description=description, y=y, stem=stem, image=image,
    )


def write_converted(
    converted: Converted,
    x: np.ndarray,
    out_dir: str | Path,
    *,
    feature_names: list[str] | None = None,
    class_labels: list[str] | None = None,
    title: str | None = None,
    description: str | None = None,
    y: np.ndarray | None = None,
    stem: str = "model",
    image: dict | None = None,
) -> Agreement:
    """Runs the ONNX model on the sample `x`, refuses (Disagreement) when it disagrees with the
    original, else writes `<stem>.onnx` and `<stem>.card.json` into `out_dir`.

    `y`, when given, are the sample's true classes (for the baseline's class shares); without
    it the shares are those of the model's own predictions. `image` (card.parse_image) marks
    the features as a greyscale picture, row by row; its pixels must be the features.
    """
    x = np.asarray(x, dtype=np.float32)
    if image is not None:
        cards.check_image(image, int(np.prod(x.shape[1:])))
    _dynamic_batch(converted.onnx_model)
    want = converted.predict(x)
    got = run_onnx(converted.onnx_model, x)
    agreement = check(want, got)

    flat = x.reshape(len(x), -1)
    names = feature_names or [f"x{j}" for j in range(flat.shape[1])]
    if len(names) != flat.shape[1]:
        raise ValueError(f"{len(names)} feature names for {flat.shape[1]} features")
    labels = class_labels
    class_index = None
    n_classes = 0
    if converted.kind == "classifier":
        classes = converted.classes
        if classes is None and "probabilities" in want:
            classes = list(range(want["probabilities"].shape[1]))
        n_classes = len(classes or [])
        labels = labels or [str(c) for c in classes or []]
        source = y if y is not None else want.get("label")
        if source is not None and classes is not None:
            lookup = {c: i for i, c in enumerate(classes)}
            class_index = np.array([lookup[v] for v in np.asarray(source).reshape(-1).tolist()], dtype=np.int64)
    baseline = cards.baseline(flat, names, class_index, n_classes) if flat.shape[1] <= 256 else None
    card = cards.model_card(
        title=title or f"{converted.estimator} ({converted.framework})",
        description=description or f"{converted.framework} {converted.estimator}, converted by modelship-convert.",
        feature_names=names,
        class_labels=labels,
        example=[round(float(v), 6) for v in flat[0]],
        baseline=baseline,
        image=image,
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    onnx.save(converted.onnx_model, out / f"{stem}.onnx")
    (out / f"{stem}.card.json").write_text(json.dumps(card, indent=1) + "\n")
    return agreement


def _dynamic_batch(model: onnx.ModelProto) -> None:
    """Outputs that declare a fixed first dimension of 1 (onnxmltools' LightGBM label) while the
    input's batch is dynamic get a dynamic one: they answer one value per row."""
    dims = model.graph.input[0].type.tensor_type.shape.dim
    if not dims or dims[0].HasField("dim_value"):
        return
    for output in model.graph.output:
        out = output.type.tensor_type.shape.dim
        if out and out[0].HasField("dim_value") and out[0].dim_value == 1:
            out[0].dim_param = "N"


def _feature_names_of(model: Any, n: int) -> list[str]:
    names = getattr(model, "feature_names_in_", None)
    if names is not None and len(names) == n:
        return [str(v) for v in names]
    return [f"x{j}" for j in range(n)]

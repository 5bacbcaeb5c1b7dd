"""The ONNX model against the original on the sample: the converter writes nothing that disagrees.

Labels must be equal except on rows whose two highest probabilities (as the original gives
them) are within TIE: float32 thresholds may flip those either way. Probabilities and
values must be within ATOL + RTOL * |expected|.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
import onnxruntime as ort

TIE = 1e-4
ATOL = 1e-4
RTOL = 1e-3


class Disagreement(Exception):
    """The ONNX model answers differently from the original; the message says by how much."""


@dataclass
class Agreement:
    """How close the ONNX model came: the largest differences over the sample."""

    rows: int
    label_mismatches: int  # rows whose label differs (ties excepted)
    ties: int  # rows left out of the label comparison
    max_abs_diff: float  # probabilities or values
    max_excess: float  # max(|got - want| - (ATOL + RTOL |want|)); > 0 means out of tolerance


def run_onnx(model: onnx.ModelProto, x: np.ndarray) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    outputs = session.run(None, {name: np.asarray(x, dtype=np.float32)})
    return {o.name: v for o, v in zip(session.get_outputs(), outputs)}


def tied(probabilities: np.ndarray) -> np.ndarray:
    """Rows whose two highest probabilities are within TIE."""
    top = np.sort(probabilities, axis=1)
    return (top[:, -1] - top[:, -2]) <= TIE


def compare(want: dict[str, np.ndarray], got: dict[str, np.ndarray]) -> Agreement:
    """Compares the original's answers (`want`) with the ONNX model's (`got`) by output name."""
    rows = len(next(iter(want.values())))
    ties = np.zeros(rows, dtype=bool)
    if "probabilities" in want:
        ties = tied(np.asarray(want["probabilities"], dtype=np.float64))
    mismatches = 0
    if "label" in want and "label" in got:
        w = np.asarray(want["label"]).reshape(rows)
        g = np.asarray(got["label"]).reshape(rows)
        if w.dtype.kind in "US" or g.dtype.kind in "USO":
            w, g = w.astype(str), g.astype(str)
        mismatches = int(np.sum((w != g) & ~ties))
    max_abs, max_excess = 0.0, -np.inf
    for name in ("probabilities", "variable"):
        if name not in want:
            continue
        if name not in got:
            raise Disagreement(f"the ONNX model has no '{name}' output (it has {', '.join(got)})")
        w = np.asarray(want[name], dtype=np.float64).reshape(rows, -1)
        g = np.asarray(got[name], dtype=np.float64).reshape(rows, -1)
        if w.shape != g.shape:
            raise Disagreement(f"'{name}' has shape {g.shape} in the ONNX model, {w.shape} in the original")
        diff = np.abs(g - w)
        max_abs = max(max_abs, float(diff.max(initial=0.0)))
        max_excess = max(max_excess, float((diff - (ATOL + RTOL * np.abs(w))).max(initial=-np.inf)))
    return Agreement(rows, mismatches, int(ties.sum()), max_abs, max_excess)


def check(want: dict[str, np.ndarray], got: dict[str, np.ndarray]) -> Agreement:
    """Like compare, and raises Disagreement when out of tolerance."""
    a = compare(want, got)
    problems = []
    if a.label_mismatches:
        problems.append(f"the label differs on {a.label_mismatches} of {a.rows} rows ({a.ties} tied rows left out)")
    if a.max_excess > 0:
        problems.append(
            f"probabilities or values differ by up to {a.max_abs_diff:.3g} "
            f"(tolerance {ATOL:g} + {RTOL:g} x |value|)"
        )
    if problems:
        raise Disagreement("the ONNX model disagrees with the original on the sample: " + "; ".join(problems))
    return a

"""From a framework's model to an ONNX model, with the libraries made for each framework.

scikit-learn estimators and pipelines go through skl2onnx, XGBoost and LightGBM through
onnxmltools (their scikit-learn wrappers and their boosters alike), JAX functions through
jax2onnx and PyTorch modules through torch.onnx. The opsets are pinned to ones that both of
modelship's runtimes (tract and ONNX Runtime) understand: ai.onnx 17 and ai.onnx.ml 3 (the
classic TreeEnsembleClassifier/Regressor; ai.onnx.ml 5 replaces them with TreeEnsemble,
which tract does not have).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np
import onnx

# ai.onnx 17 / ai.onnx.ml 3: what tract 0.23 and ONNX Runtime 1.31 both run.
TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}
# onnxmltools' tree converters take one opset number and write ai.onnx.ml 1.
ONNXMLTOOLS_OPSET = 15
INPUT_NAME = "input"


class ConversionError(Exception):
    """The model cannot be converted; the message names the estimator or operator."""


@dataclass
class Converted:
    """An ONNX model and what the card needs to know about it."""

    onnx_model: onnx.ModelProto
    kind: str  # "classifier" or "regressor"
    framework: str  # "scikit-learn", "xgboost", "lightgbm", "jax", "pytorch"
    estimator: str  # class name, for the card's description
    classes: list | None  # the classifier's classes, in probability-column order
    predict: Callable[[np.ndarray], dict[str, np.ndarray]]  # the framework's own answers


def framework_of(model: Any) -> str:
    module = type(model).__module__.split(".")[0]
    if module == "sklearn":
        return "scikit-learn"
    if module in ("xgboost", "lightgbm"):
        return module
    if module == "torch" or any(c.__module__.startswith("torch") for c in type(model).__mro__):
        return "pytorch"
    raise ConversionError(
        f"{type(model).__module__}.{type(model).__name__} is not a model modelship-convert knows: "
        "it converts scikit-learn estimators and pipelines, XGBoost and LightGBM models "
        "(scikit-learn API or Booster), PyTorch modules and JAX functions"
    )


def convert(model: Any, n_features: int) -> Converted:
    """Converts a scikit-learn, XGBoost or LightGBM model taking `n_features` float columns."""
    framework = framework_of(model)
    if framework == "scikit-learn":
        return _sklearn(model, n_features)
    if framework == "xgboost":
        return _xgboost(model, n_features)
    if framework == "lightgbm":
        return _lightgbm(model, n_features)
    raise ConversionError(
        f"{type(model).__name__} is a PyTorch module: use convert_torch(module, example_input)"
    )


@contextlib.contextmanager
def _plain_attribute_values() -> Iterator[None]:
    """skl2onnx 1.20.0 hands onnx 1.23's make_attribute lists of numpy scalars (the uint8
    missing-value flags of scikit-learn 1.9's HistGradientBoosting trees), which it refuses;
    they become Python numbers here. The check against the original afterwards would catch
    any harm."""
    import onnx.helper

    original = onnx.helper.make_attribute

    def plain(v: Any) -> Any:
        v = v.item() if isinstance(v, np.generic) else v
        return int(v) if isinstance(v, bool) else v

    def make_attribute(key, value, *args, **kwargs):
        if isinstance(value, (list, tuple)):
            value = [plain(v) for v in value]
        return original(key, value, *args, **kwargs)

    onnx.helper.make_attribute = make_attribute
    try:
        yield
    finally:
        onnx.helper.make_attribute = original


def _is_classifier(model: Any) -> bool:
    from sklearn.base import is_classifier

    return bool(is_classifier(model))


def _final_estimator(model: Any) -> Any:
    return model.steps[-1][1] if hasattr(model, "steps") else model


def _sklearn(model: Any, n_features: int) -> Converted:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from skl2onnx.common.exceptions import MissingShapeCalculator

    classifier = _is_classifier(model)
    options = {id(_final_estimator(model)): {"zipmap": False}} if classifier else None
    try:
        with _plain_attribute_values():
            onx = convert_sklearn(
                model,
                initial_types=[(INPUT_NAME, FloatTensorType([None, n_features]))],
                target_opset=TARGET_OPSET,
                options=options,
            )
    except (MissingShapeCalculator, RuntimeError, NotImplementedError, ValueError, TypeError) as e:
        raise ConversionError(f"skl2onnx cannot convert {_describe(model)}: {_first_line(e)}") from e
    return Converted(
        onnx_model=onx,
        kind="classifier" if classifier else "regressor",
        framework="scikit-learn",
        estimator=_describe(model),
        classes=list(_final_estimator(model).classes_) if classifier else None,
        predict=_sklearn_predict(model, classifier),
    )


def _sklearn_predict(model: Any, classifier: bool) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    def predict(x: np.ndarray) -> dict[str, np.ndarray]:
        if classifier:
            out = {"label": np.asarray(model.predict(x))}
            if hasattr(model, "predict_proba"):
                out["probabilities"] = np.asarray(model.predict_proba(x))
            return out
        return {"variable": np.asarray(model.predict(x), dtype=np.float64).reshape(len(x), -1)}

    return predict


def _xgboost(model: Any, n_features: int) -> Converted:
    import xgboost
    from onnxmltools import convert_xgboost
    from onnxmltools.convert.common.data_types import FloatTensorType

    booster = model if isinstance(model, xgboost.Booster) else None
    if booster is not None:
        raise ConversionError(
            "an XGBoost Booster does not say whether it classifies: load it into "
            "xgboost.XGBClassifier or XGBRegressor (load_model) and convert that"
        )
    classifier = isinstance(model, xgboost.XGBClassifier)
    try:
        onx = convert_xgboost(
            model,
            initial_types=[(INPUT_NAME, FloatTensorType([None, n_features]))],
            target_opset=ONNXMLTOOLS_OPSET,
        )
    except (RuntimeError, NotImplementedError, AttributeError) as e:
        raise ConversionError(f"onnxmltools cannot convert {_describe(model)}: {_first_line(e)}") from e
    return Converted(
        onnx_model=onx,
        kind="classifier" if classifier else "regressor",
        framework="xgboost",
        estimator=_describe(model),
        classes=list(model.classes_) if classifier else None,
        predict=_sklearn_predict(model, classifier),
    )


def _lightgbm(model: Any, n_features: int) -> Converted:
    import lightgbm
    from onnxmltools import convert_lightgbm
    from onnxmltools.convert.common.data_types import FloatTensorType

    if isinstance(model, lightgbm.Booster):
        raise ConversionError(
            "a LightGBM Booster: wrap it in lightgbm.LGBMClassifier/LGBMRegressor "
            "(or pass the scikit-learn estimator you trained) and convert that"
        )
    classifier = isinstance(model, lightgbm.LGBMClassifier)
    try:
        onx = convert_lightgbm(
            model,
            initial_types=[(INPUT_NAME, FloatTensorType([None, n_features]))],
            target_opset=ONNXMLTOOLS_OPSET,
            zipmap=False,
        )
    except (RuntimeError, NotImplementedError, AttributeError) as e:
        raise ConversionError(f"onnxmltools cannot convert {_describe(model)}: {_first_line(e)}") from e
    return Converted(
        onnx_model=onx,
        kind="classifier" if classifier else "regressor",
        framework="lightgbm",
        estimator=_describe(model),
        classes=list(model.classes_) if classifier else None,
        predict=_sklearn_predict(model, classifier),
    )


def convert_torch(module: Any, example_input: Any, *, classifier: bool = True) -> Converted:
    """A PyTorch module through torch.onnx, the batch dimension dynamic.

    The module's output is taken as class probabilities when `classifier` (apply softmax in
    the module if it returns logits), else as values.
    """
    import io

    import torch

    module.eval()
    buffer = io.BytesIO()
    out_name = "probabilities" if classifier else "variable"
    torch.onnx.export(
        module,
        (example_input,),
        buffer,
        input_names=[INPUT_NAME],
        output_names=[out_name],
        dynamic_axes={INPUT_NAME: {0: "N"}, out_name: {0: "N"}},
        opset_version=TARGET_OPSET[""],
        dynamo=False,
    )

    def predict(x: np.ndarray) -> dict[str, np.ndarray]:
        with torch.no_grad():
            y = module(torch.from_numpy(np.asarray(x, dtype=np.float32))).numpy()
        return {out_name: y}

    return Converted(
        onnx_model=onnx.load_from_string(buffer.getvalue()),
        kind="classifier" if classifier else "regressor",
        framework="pytorch",
        estimator=type(module).__name__,
        classes=None,
        predict=predict,
    )


def convert_jax(
    fn: Callable, example_input: np.ndarray, *, output_names: list[str], estimator: str
) -> Converted:
    """A JAX function (a Flax module's forward pass, say) through jax2onnx.

    `fn` takes one float32 batch `[N, ...]` and returns one array per name in `output_names`
    (`label` and `probabilities` for a classifier, `variable` for a regressor).
    """
    import jax.numpy as jnp
    from jax2onnx import to_onnx

    shape = ("N",) + tuple(example_input.shape[1:])
    onx = to_onnx(fn, inputs=[shape], input_names=[INPUT_NAME], output_names=output_names, opset=TARGET_OPSET[""])
    onx = onx if isinstance(onx, onnx.ModelProto) else onnx.load_from_string(onx.SerializeToString())

    def predict(x: np.ndarray) -> dict[str, np.ndarray]:
        out = fn(jnp.asarray(x, dtype=jnp.float32))
        out = out if isinstance(out, tuple) else (out,)
        return {name: np.asarray(v) for name, v in zip(output_names, out)}

    return Converted(
        onnx_model=onx,
        kind="classifier" if "probabilities" in output_names else "regressor",
        framework="jax",
        estimator=estimator,
        classes=None,
        predict=predict,
    )


def _describe(model: Any) -> str:
    if hasattr(model, "steps"):
        return "Pipeline(" + ", ".join(type(step).__name__ for _, step in model.steps) + ")"
    return type(model).__name__


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__

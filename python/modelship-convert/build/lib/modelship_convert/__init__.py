"""modelship-convert: the model you have to the ONNX file and model card modelship serves.

    from modelship_convert import write_model
    write_model(estimator, sample_x, "out/", feature_names=[...])

The command line is `modelship-convert model.joblib --sample train.csv --out DIR`
(modelship_convert.cli). See docs/models.md.
"""

from .convert import ConversionError, Converted, convert, convert_jax, convert_torch
from .verify import Disagreement
from .write import write_converted, write_model

__all__ = [
    "ConversionError",
    "Converted",
    "Disagreement",
    "convert",
    "convert_jax",
    "convert_torch",
    "write_converted",
    "write_model",
]

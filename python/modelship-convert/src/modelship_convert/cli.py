"""`modelship-convert MODEL --sample CSV --out DIR`: the command line of write_model."""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

from .card import parse_image
from .convert import ConversionError
from .verify import Disagreement
from .write import write_model


def read_sample(path: Path, label_column: str | None) -> tuple[list[str], np.ndarray, np.ndarray | None]:
    """The sample CSV: a header of feature names, one row per example, numbers only."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if len(rows) < 2:
        raise ValueError(f"{path}: needs a header and at least one row")
    header, body = rows[0], rows[1:]
    y = None
    if label_column is not None:
        if label_column not in header:
            raise ValueError(f"{path}: no column {label_column!r} (columns: {', '.join(header)})")
        ix = header.index(label_column)
        y = np.array([r[ix] for r in body])
        header = header[:ix] + header[ix + 1 :]
        body = [r[:ix] + r[ix + 1 :] for r in body]
    x = np.full((len(body), len(header)), np.nan, dtype=np.float64)
    for i, row in enumerate(body):
        if len(row) != len(header):
            raise ValueError(f"{path}: row {i + 2} has {len(row)} values for {len(header)} columns")
        for j, v in enumerate(row):
            if v.strip() == "":
                continue  # missing: NaN, for the model's imputer
            try:
                x[i, j] = float(v)
            except ValueError:
                raise ValueError(
                    f"{path}: row {i + 2}, column {header[j]!r}: {v!r} is not a number "
                    "(encode categories as numbers; see docs/models.md)"
                ) from None
    return header, x, y


def load_model(path: Path):
    import joblib

    if path.suffix in (".joblib", ".pkl", ".pickle"):
        return joblib.load(path)
    if path.suffix in (".json", ".ubj"):
        import xgboost

        booster = xgboost.Booster(model_file=str(path))
        raise ConversionError(
            f"{path} is an XGBoost Booster (it does not say whether it classifies): load it with "
            "xgboost.XGBClassifier().load_model(...) or XGBRegressor, joblib.dump that, and convert "
            f"the .joblib ({booster.num_features()} features)"
        )
    raise ConversionError(f"{path}: expected a .joblib/.pkl model (scikit-learn, XGBoost or LightGBM estimator)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="modelship-convert",
        description="Convert a model to the ONNX file and model card modelship serves, "
        "checked against the original on the sample.",
    )
    p.add_argument("model", type=Path, help="model.joblib: a scikit-learn estimator or pipeline, XGBoost or LightGBM")
    p.add_argument("--sample", type=Path, required=True, help="CSV with a header of feature names (training rows)")
    p.add_argument("--out", type=Path, required=True, help="directory for model.onnx and model.card.json")
    p.add_argument("--label-column", help="the sample's column of true classes/targets (left out of the features)")
    p.add_argument("--class-labels", help="comma-separated names of the classes, in the model's class order")
    p.add_argument("--title")
    p.add_argument("--description")
    p.add_argument("--name", default="model", help="file stem (default: model)")
    p.add_argument(
        "--image", metavar="HxW[:INK]",
        help="the features are a greyscale picture, row by row: 8x8:16 for scikit-learn's digits "
        "(0 = no ink, 16 = full ink), 28x28:255..0 for dark ink on white (BACKGROUND..INK); "
        "the web page then offers a drawing pad",
    )
    args = p.parse_args(argv)
    try:
        image = parse_image(args.image) if args.image else None
        names, x, y = read_sample(args.sample, args.label_column)
        model = load_model(args.model)
        classes = getattr(model, "classes_", None)
        if y is not None and classes is not None:
            y = np.array([type(classes[0])(v) if not isinstance(classes[0], str) else v for v in y.tolist()])
        elif classes is None:
            y = None
        agreement = write_model(
            model, x, args.out, feature_names=names,
            class_labels=args.class_labels.split(",") if args.class_labels else None,
            title=args.title, description=args.description, y=y, stem=args.name, image=image,
        )
    except (ConversionError, Disagreement, ValueError, OSError) as e:
        print(f"modelship-convert: {e}", file=sys.stderr)
        return 1
    print(
        f"wrote {args.out / (args.name + '.onnx')} and {args.name}.card.json: agrees with the original on "
        f"{agreement.rows} rows (largest difference {agreement.max_abs_diff:.2g})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

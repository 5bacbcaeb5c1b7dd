"""The models of the zoo: each trained here on a data set that ships with scikit-learn.

Each entry trains its model, converts it with modelship_convert (the same code a user runs)
and returns the conversion with its held-out rows. Seeds are fixed; nothing downloads.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from sklearn import datasets
from sklearn.model_selection import train_test_split

from modelship_convert import Converted, convert, convert_jax

SEED = 0
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Trained:
    converted: Converted
    x_train: np.ndarray
    x_test: np.ndarray


@dataclass
class ZooModel:
    name: str
    data: str  # the data set, as the table names it
    build: Callable[[], Trained]
    # Held-out rows allowed out of tolerance under a runtime, with the reason the table shows.
    rows_off: dict[str, int] = field(default_factory=dict)
    why: str = ""


def split(x, y):
    return train_test_split(
        np.asarray(x, dtype=np.float32), y, test_size=0.25, random_state=SEED,
        stratify=y if len(np.unique(y)) < 20 else None,
    )


DATA = {
    "iris": lambda: datasets.load_iris(return_X_y=True),
    "wine": lambda: datasets.load_wine(return_X_y=True),
    "breast cancer": lambda: datasets.load_breast_cancer(return_X_y=True),
    "digits": lambda: datasets.load_digits(return_X_y=True),
    "diabetes": lambda: datasets.load_diabetes(return_X_y=True),
    "make_regression": lambda: datasets.make_regression(n_samples=400, n_features=8, noise=5.0, random_state=SEED),
}


def estimator(data: str, make: Callable[[], object]) -> Callable[[], Trained]:
    def build() -> Trained:
        x_train, x_test, y_train, _ = split(*DATA[data]())
        model = make()
        model.fit(x_train, y_train)
        return Trained(convert(model, x_train.shape[1]), x_train, x_test)

    return build


def mixed_pipeline() -> Trained:
    """Scaler + one-hot + imputer on one float input: two numeric columns with gaps and a
    categorical column coded 0..3 (one-hot needs numbers in a single float tensor)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    x, y = datasets.make_classification(n_samples=500, n_features=5, n_informative=3, random_state=SEED)
    rng = np.random.default_rng(SEED)
    x[:, 4] = np.digitize(x[:, 4], [-1, 0, 1]).astype(float)  # a category, 0..3
    x[rng.random(x.shape[0]) < 0.1, 0] = np.nan
    x[rng.random(x.shape[0]) < 0.1, 2] = np.nan
    numeric = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])
    model = Pipeline([
        ("columns", ColumnTransformer([
            ("numeric", numeric, [0, 1, 2, 3]),
            ("category", OneHotEncoder(handle_unknown="ignore"), [4]),
        ])),
        ("classify", LogisticRegression(max_iter=1000)),
    ])
    x_train, x_test, y_train, _ = split(x, y)
    model.fit(x_train, y_train)
    return Trained(convert(model, x.shape[1]), x_train, x_test)


def _digits_cnn_module():
    spec = importlib.util.spec_from_file_location("digits_cnn", ROOT / "models" / "digits-cnn.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _train_flax(model, logits, x, y, epochs: int):
    import jax.numpy as jnp
    import optax
    from flax import nnx

    optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer, xb, yb):
        def loss_fn(model):
            return optax.softmax_cross_entropy_with_integer_labels(logits(model, xb), yb).mean()

        _, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)

    rng = np.random.default_rng(SEED)
    for _ in range(epochs):
        order = rng.permutation(len(x))
        for i in range(0, len(order), 64):
            ix = order[i : i + 64]
            step(model, optimizer, jnp.asarray(x[ix]), jnp.asarray(y[ix]))


def flax_mlp() -> Trained:
    """A neural network MLP (Flax on JAX) on the wine data, standardised inside the network."""
    import jax.numpy as jnp
    from flax import nnx

    x_train, x_test, y_train, _ = split(*DATA["wine"]())
    mean, std = x_train.mean(axis=0), x_train.std(axis=0) + 1e-6

    class MLP(nnx.Module):
        def __init__(self, rngs):
            self.hidden = nnx.Linear(13, 32, rngs=rngs)
            self.out = nnx.Linear(32, 3, rngs=rngs)

        def logits(self, x):
            return self.out(nnx.relu(self.hidden((x - mean) / std)))

        def __call__(self, x):
            p = nnx.softmax(self.logits(x), axis=-1)
            return jnp.argmax(p, axis=-1).astype(jnp.int32), p

    model = MLP(nnx.Rngs(SEED))
    _train_flax(model, lambda m, x: m.logits(x), x_train, y_train, epochs=60)
    return Trained(convert_jax(model, x_train, output_names=["label", "probabilities"], estimator="Flax MLP (13-32-3)"),
                   x_train, x_test)


def flax_cnn() -> Trained:
    """The digits CNN of models/digits-cnn.py (fewer epochs: the zoo checks the export, not accuracy)."""
    cnn = _digits_cnn_module()
    from flax import nnx

    x_train, x_test, y_train, _ = cnn.data()
    model = cnn.DigitsCNN(nnx.Rngs(SEED))
    _train_flax(model, lambda m, x: m.logits(x), x_train, y_train, epochs=3)
    return Trained(convert_jax(model, x_train, output_names=["label", "probabilities"], estimator="Flax CNN (digits-cnn)"),
                   x_train, x_test)


def _models() -> list[ZooModel]:
    import lightgbm
    import xgboost
    from sklearn import ensemble, linear_model, neighbors, neural_network, svm, tree

    m = []

    def add(name, data, make, **known):
        m.append(ZooModel(name, data, estimator(data, make), **known))

    add("LogisticRegression", "iris", lambda: linear_model.LogisticRegression(max_iter=1000))
    add("LogisticRegression", "breast cancer", lambda: linear_model.LogisticRegression(max_iter=5000))
    add("LinearRegression", "diabetes", linear_model.LinearRegression)
    add("Ridge", "diabetes", lambda: linear_model.Ridge(alpha=1.0))
    add("SVC", "wine", lambda: svm.SVC(probability=True, random_state=SEED))
    add("SVR", "diabetes", lambda: svm.SVR(C=50.0))
    add("KNeighborsClassifier", "iris", lambda: neighbors.KNeighborsClassifier(n_neighbors=5))
    add("KNeighborsRegressor", "diabetes", lambda: neighbors.KNeighborsRegressor(n_neighbors=5))
    add("DecisionTreeClassifier", "breast cancer", lambda: tree.DecisionTreeClassifier(max_depth=5, random_state=SEED))
    add("DecisionTreeClassifier", "wine", lambda: tree.DecisionTreeClassifier(max_depth=5, random_state=SEED))
    add("DecisionTreeRegressor", "diabetes", lambda: tree.DecisionTreeRegressor(max_depth=5, random_state=SEED))
    add("RandomForestClassifier", "breast cancer", lambda: ensemble.RandomForestClassifier(n_estimators=20, random_state=SEED))
    add("RandomForestClassifier", "wine", lambda: ensemble.RandomForestClassifier(n_estimators=20, random_state=SEED))
    add("RandomForestRegressor", "diabetes", lambda: ensemble.RandomForestRegressor(n_estimators=20, random_state=SEED))
    add("GradientBoostingClassifier", "breast cancer", lambda: ensemble.GradientBoostingClassifier(n_estimators=30, random_state=SEED))
    add("GradientBoostingClassifier", "wine", lambda: ensemble.GradientBoostingClassifier(n_estimators=30, random_state=SEED))
    add("GradientBoostingRegressor", "diabetes", lambda: ensemble.GradientBoostingRegressor(n_estimators=30, random_state=SEED))
    add("HistGradientBoostingClassifier", "breast cancer", lambda: ensemble.HistGradientBoostingClassifier(max_iter=30, random_state=SEED))
    add("HistGradientBoostingClassifier", "wine", lambda: ensemble.HistGradientBoostingClassifier(max_iter=30, random_state=SEED))
    add("HistGradientBoostingRegressor", "diabetes", lambda: ensemble.HistGradientBoostingRegressor(max_iter=30, random_state=SEED),
        rows_off={"onnxruntime": 1},
        why="scikit-learn splits on float64 thresholds, ONNX on float32 ones: a held-out value between the two "
        "takes the other branch (one row of 111, under ONNX Runtime)")
    m.append(ZooModel("Pipeline(imputer + scaler, one-hot) + LogisticRegression", "make_classification", mixed_pipeline))
    add("MLPClassifier", "digits", lambda: neural_network.MLPClassifier(hidden_layer_sizes=(64,), max_iter=300, random_state=SEED))
    add("MLPRegressor", "make_regression", lambda: neural_network.MLPRegressor(hidden_layer_sizes=(32,), max_iter=2000, random_state=SEED))
    add("XGBClassifier", "breast cancer", lambda: xgboost.XGBClassifier(n_estimators=20, max_depth=3, random_state=SEED))
    add("XGBClassifier", "wine", lambda: xgboost.XGBClassifier(n_estimators=20, max_depth=3, random_state=SEED))
    add("XGBRegressor", "diabetes", lambda: xgboost.XGBRegressor(n_estimators=20, max_depth=3, random_state=SEED))
    add("LGBMClassifier", "breast cancer", lambda: lightgbm.LGBMClassifier(n_estimators=20, verbose=-1, random_state=SEED, n_jobs=1, deterministic=True))
    add("LGBMClassifier", "wine", lambda: lightgbm.LGBMClassifier(n_estimators=20, min_child_samples=5, verbose=-1, random_state=SEED, n_jobs=1, deterministic=True),
        rows_off={"tract": 1, "onnxruntime": 1},
        why="one held-out row's probabilities differ from LightGBM's by 1.5e-4 under both runtimes, so the "
        "conversion, not a runtime: LightGBM adds its trees' scores in float64 and splits on float64 thresholds, "
        "ONNX in float32 (which of the two, not traced yet)")
    add("LGBMRegressor", "diabetes", lambda: lightgbm.LGBMRegressor(n_estimators=20, verbose=-1, random_state=SEED, n_jobs=1, deterministic=True))
    m.append(ZooModel("Flax MLP", "wine", flax_mlp))
    m.append(ZooModel("Flax CNN", "digits (8x8 images)", flax_cnn))
    return m


MODELS = _models()

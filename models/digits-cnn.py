#!/usr/bin/env python3
"""Trains the digits CNN (Flax on JAX, CPU) and exports it to ONNX with jax2onnx.

Writes models/digits-cnn.onnx and models/digits-cnn.card.json. The data is scikit-learn's
bundled handwritten digits (8x8 greyscale, 1797 images, no download), scaled to 0..1. The
network: two 3x3 convolutions (16 and 32 channels, ReLU), 2x2 average pooling, a dense layer
of 64 and a softmax over the 10 digits. Input `input` [-1, 1, 8, 8] (NCHW, values 0..1);
outputs `label` (INT32, the most probable digit) and `probabilities` [-1, 10].

Why not PyTorch: its PyPI wheel for Linux pulls about 3 GB of CUDA libraries (measured,
docs/models.md); JAX's CPU wheel is under 100 MB. The converter's torch.onnx path is the
same ONNX for modelship.

  python models/digits-cnn.py            write the model and card
  python models/digits-cnn.py --check    train again into a temporary directory and check that
                                         the committed model answers as the fresh one does
Run with the zoo's venv (.venv-zoo: tests/zoo/requirements.txt).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import onnx
import onnxruntime as ort
import optax
from flax import nnx
from jax2onnx import to_onnx
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

HERE = Path(__file__).resolve().parent
STEM = "digits-cnn"
SEED = 0
EPOCHS = 30
BATCH = 64
OPSET = 17


class DigitsCNN(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.conv1 = nnx.Conv(1, 16, kernel_size=(3, 3), padding="SAME", rngs=rngs)
        self.conv2 = nnx.Conv(16, 32, kernel_size=(3, 3), padding="SAME", rngs=rngs)
        self.dense1 = nnx.Linear(4 * 4 * 32, 64, rngs=rngs)
        self.dense2 = nnx.Linear(64, 10, rngs=rngs)

    def logits(self, x):
        # x: [N, 1, 8, 8] (NCHW, as the server's page and most image tools send); Flax is NHWC.
        x = jnp.transpose(x, (0, 2, 3, 1))
        x = nnx.relu(self.conv1(x))
        x = nnx.relu(self.conv2(x))
        x = nnx.avg_pool(x, window_shape=(2, 2), strides=(2, 2))
        x = x.reshape((x.shape[0], -1))
        x = nnx.relu(self.dense1(x))
        return self.dense2(x)

    def __call__(self, x):
        probabilities = nnx.softmax(self.logits(x), axis=-1)
        label = jnp.argmax(probabilities, axis=-1).astype(jnp.int32)
        return label, probabilities


def data():
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None, :, :]
    return train_test_split(x, digits.target, test_size=0.2, random_state=SEED, stratify=digits.target)


def train():
    x_train, x_test, y_train, y_test = data()
    model = DigitsCNN(nnx.Rngs(SEED))
    optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer, x, y):
        def loss_fn(model):
            return optax.softmax_cross_entropy_with_integer_labels(model.logits(x), y).mean()

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return loss

    rng = np.random.default_rng(SEED)
    for _ in range(EPOCHS):
        order = rng.permutation(len(x_train))
        for i in range(0, len(order), BATCH):
            ix = order[i : i + BATCH]
            step(model, optimizer, jnp.asarray(x_train[ix]), jnp.asarray(y_train[ix]))
    label, _ = model(jnp.asarray(x_test))
    accuracy = float(np.mean(np.asarray(label) == y_test))
    return model, x_test, y_test, accuracy


def export(model, out: Path, accuracy: float) -> tuple[Path, Path]:
    onx = to_onnx(
        model,
        inputs=[("N", 1, 8, 8)],
        opset=OPSET,
        input_names=["input"],
        output_names=["label", "probabilities"],
        model_name=STEM,
    )
    onnx_path = out / f"{STEM}.onnx"
    onnx.save(onx, onnx_path)
    x_train, *_ = data()
    card = {
        "title": "Handwritten digits (small CNN)",
        "description": "Reads a handwritten digit from an 8x8 greyscale image (values 0 to 1, "
        "white on black as in scikit-learn's digits data set). A two-layer convolutional network "
        f"in Flax (JAX), trained on scikit-learn's digits, exported with jax2onnx; "
        f"held-out accuracy {accuracy:.3f}.",
        "class_labels": [str(d) for d in range(10)],
        "example": [round(float(v), 4) for v in x_train[0].reshape(-1)],
    }
    card_path = out / f"{STEM}.card.json"
    card_path.write_text(json.dumps(card, indent=1) + "\n")
    return onnx_path, card_path


def onnx_answers(path: Path, x: np.ndarray):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true")
    args = p.parse_args()
    model, x_test, y_test, accuracy = train()
    want_label, want_probs = (np.asarray(v) for v in model(jnp.asarray(x_test)))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) if args.check else HERE
        onnx_path, _ = export(model, out, accuracy)
        label, probs = onnx_answers(onnx_path, x_test)
        # The export must answer as Flax does (float32 arithmetic in another order).
        assert np.array_equal(label, want_label), "ONNX labels differ from Flax's"
        assert np.allclose(probs, want_probs, atol=1e-5), f"probabilities differ by {np.abs(probs - want_probs).max()}"
        if args.check:
            committed_label, committed_probs = onnx_answers(HERE / f"{STEM}.onnx", x_test)
            agree = float(np.mean(committed_label == label))
            # Training is deterministic on one CPU, not across CPUs: the committed model must
            # still be a digits reader as good as a fresh one, not bit for bit the same.
            committed_accuracy = float(np.mean(committed_label == y_test))
            print(f"committed accuracy {committed_accuracy:.3f}, fresh {accuracy:.3f}, agree on {agree:.3f} of rows")
            if committed_accuracy < 0.9 or agree < 0.9:
                print("the committed digits CNN no longer answers as a fresh one", file=sys.stderr)
                return 1
        else:
            print(f"wrote {onnx_path} (held-out accuracy {accuracy:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

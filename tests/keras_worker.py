"""Keras work for tests/integration/test_keras_import.py, in its own process:
TensorFlow loaded into the pytest process crashes torch's later imports
(triton's extension segfaults beside TensorFlow's), so the tests never import it.

``python -m tests.keras_worker DATA_FOLDER OUT_FOLDER CHECK_IMAGE`` trains a small
classifier on 24 real NIH images (RGB, ImageNet normalisation, its label order
shuffled), saves it, copies 6 parity images, predicts CHECK_IMAGE and prints
{"model", "order", "parity", "expected"} as JSON."""

from __future__ import annotations

import csv
import json
import random
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from shared.findings import FINDINGS

SIZE = 64
MEAN, STD = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)


def keras_input(path: Path) -> np.ndarray:
    """What this Keras model expects: RGB, resized, /255, ImageNet mean and std."""
    with Image.open(path) as image:
        grey = image.convert("L").resize((SIZE, SIZE), Image.Resampling.BILINEAR)
    rgb = np.repeat(np.asarray(grey, np.float32)[:, :, None], 3, axis=-1) / 255.0
    return (rgb - MEAN) / STD


def main(data_folder: Path, out: Path, check: Path) -> dict[str, object]:
    import keras

    sample = data_folder / "nih-cxr14-sample"
    with (sample / "labels.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))[:24]
    order = [str(f) for f in FINDINGS]
    random.Random(7).shuffle(order)
    x = np.stack([keras_input(sample / "images" / row["Image Index"]) for row in rows])
    y = np.array([[float(name in row["Finding Labels"].split("|")) for name in order] for row in rows],
                 np.float32)
    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIZE, SIZE, 3))
    h = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(inputs)
    h = keras.layers.Conv2D(16, 3, strides=2, activation="relu")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    outputs = keras.layers.Dense(14, activation="sigmoid")(h)
    model = keras.Model(inputs, outputs)
    model.compile("adam", "binary_crossentropy")
    model.fit(x, y, epochs=3, batch_size=8, verbose=0)
    path = out / "chexnet-small.keras"
    model.save(path)
    parity = out / "parity"
    parity.mkdir(exist_ok=True)
    for row in rows[-6:]:
        (parity / row["Image Index"]).write_bytes((sample / "images" / row["Image Index"]).read_bytes())
    expected = np.asarray(keras.models.load_model(path)(keras_input(check)[None]))[0]
    return {"model": str(path), "order": order, "parity": str(parity), "expected": expected.tolist()}


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))))  # noqa: T201

#!/usr/bin/python3
"""The iris example in Python: a ZenML-style pipeline on zorch.

Five steps train and evaluate a classifier on the iris data set that
Debian's python3-sklearn ships:

1. ``load``      reads the CSV into numpy arrays (a user materializer, .npy);
2. ``split``     makes a seeded, stratified train/test split (four outputs);
3. ``scale``     fits a standard scaler on the training rows;
4. ``train``     fits scikit-learn's LogisticRegression (pickled: opted in);
5. ``evaluate``  reports accuracy, per-class precision/recall and the
                 confusion matrix (JSON).

Run it twice: the second run is served from the cache.  Change a param
(``--C 0.05``) and only the steps that read it run again.

    python3 examples/python/iris.py [--seed N] [--C X] [--test-fraction F]
                                    [--data PATH] [--no-cache] [--stack NAME]
"""
import argparse
import hashlib
import io
import sys
from typing import Annotated, Tuple

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

import zorch
from zorch import Materializer, pipeline, step

IRIS = "/usr/lib/python3/dist-packages/sklearn/datasets/data/iris.csv"


class NumpyMaterializer(Materializer):
    """numpy arrays as .npy files (no pickle: object arrays are refused)."""

    id = "numpy.npy"

    def save_bytes(self, value):
        buf = io.BytesIO()
        np.save(buf, value, allow_pickle=False)
        return buf.getvalue()

    def load_bytes(self, data, type_):
        return np.load(io.BytesIO(data), allow_pickle=False)


zorch.register_materializer(np.ndarray, NumpyMaterializer)
zorch.allow_pickle(LogisticRegression, StandardScaler)


@step
def load(path: str, fingerprint: str) -> Tuple[Annotated[np.ndarray, "features"],
                                               Annotated[np.ndarray, "labels"],
                                               Annotated[list, "classes"]]:
    """`fingerprint` is the file's SHA-256: a changed file re-runs the step."""
    with open(path) as f:
        header = f.readline().strip().split(",")
        rows = np.loadtxt(f, delimiter=",")
    classes = header[2:]
    print(f"loaded {len(rows)} rows, {rows.shape[1] - 1} features, classes {classes}")
    return rows[:, :-1], rows[:, -1].astype(np.int64), classes


@step
def split(features: np.ndarray, labels: np.ndarray, test_fraction: float, seed: int) -> Tuple[
        Annotated[np.ndarray, "x_train"], Annotated[np.ndarray, "x_test"],
        Annotated[np.ndarray, "y_train"], Annotated[np.ndarray, "y_test"]]:
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be between 0 and 1, not {test_fraction}")
    x_tr, x_te, y_tr, y_te = train_test_split(features, labels, test_size=test_fraction,
                                              random_state=seed, stratify=labels)
    print(f"{len(x_tr)} training rows, {len(x_te)} test rows")
    return x_tr, x_te, y_tr, y_te


@step
def scale(x_train: np.ndarray) -> Annotated[StandardScaler, "scaler"]:
    return StandardScaler().fit(x_train)


@step(retry=1)
def train(x_train: np.ndarray, y_train: np.ndarray, scaler: StandardScaler,
          C: float, seed: int) -> Annotated[LogisticRegression, "model"]:
    model = LogisticRegression(C=C, max_iter=1000, random_state=seed)
    model.fit(scaler.transform(x_train), y_train)
    print(f"trained on {len(x_train)} rows, training accuracy "
          f"{model.score(scaler.transform(x_train), y_train):.4f}")
    return model


@step
def evaluate(model: LogisticRegression, scaler: StandardScaler, x_test: np.ndarray,
             y_test: np.ndarray, classes: list) -> Annotated[dict, "metrics"]:
    pred = model.predict(scaler.transform(x_test))
    precision, recall, _, _ = precision_recall_fscore_support(y_test, pred, zero_division=0)
    return {
        "accuracy": float(accuracy_score(y_test, pred)),
        "precision": {c: float(p) for c, p in zip(classes, precision)},
        "recall": {c: float(r) for c, r in zip(classes, recall)},
        "confusion_matrix": confusion_matrix(y_test, pred).tolist(),
        "test_rows": int(len(y_test)),
    }


@pipeline
def iris(path: str = IRIS, fingerprint: str = "", test_fraction: float = 0.3, seed: int = 42,
         C: float = 1.0):
    features, labels, classes = load(path, fingerprint)
    x_train, x_test, y_train, y_test = split(features, labels, test_fraction, seed)
    scaler = scale(x_train)
    model = train(x_train, y_train, scaler, C=C, seed=seed)
    evaluate(model, scaler, x_test, y_test, classes)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=IRIS)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--C", type=float, default=1.0)
    ap.add_argument("--test-fraction", type=float, default=0.3)
    ap.add_argument("--no-cache", action="store_true")
    ap.add_argument("--stack")
    args = ap.parse_args(argv)
    try:
        with open(args.data, "rb") as f:
            fingerprint = hashlib.sha256(f.read()).hexdigest()
    except OSError as e:
        print(f"iris.py: cannot read {args.data}: {e} (install python3-sklearn, or give --data)",
              file=sys.stderr)
        return 2
    p = iris.with_options(no_cache=args.no_cache, stack=args.stack, raise_on_failure=False)
    run = p(path=args.data, fingerprint=fingerprint, test_fraction=args.test_fraction,
            seed=args.seed, C=args.C)
    print(f"run {run.name} on stack {run.stack}: {run.status}")
    for name, s in run.steps.items():
        took = f"{s.finished_at - s.started_at:7.3f}s" if s.started_at else " " * 8
        print(f"  {name:<9} {s.status:<10} {took}" + (f"  {s.error}" if s.error else ""))
    if run.status != "completed":
        failed = [s for s in run.steps.values() if s.status == "failed"]
        for s in failed:
            print(f"---- log of {s.name}:\n{s.logs}", file=sys.stderr)
        return 1
    m = run.load("evaluate")
    print(f"test accuracy: {m['accuracy']:.4f} on {m['test_rows']} rows")
    for c in m["precision"]:
        print(f"  {c:<11} precision {m['precision'][c]:.3f}  recall {m['recall'][c]:.3f}")
    print("confusion matrix:", m["confusion_matrix"])
    return 0


if __name__ == "__main__":
    sys.exit(main())

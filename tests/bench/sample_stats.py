#!/usr/bin/python3
"""Crude, dependency-free quality statistics for Fashion-MNIST samples.

For each .npy of uint8 samples (N x 32 x 32), labels every sample by its
5 nearest Fashion-MNIST training images (Euclidean, on the 28x28 centre) and
prints the class histogram (are all ten classes there?), its total variation
distance from the real test images' histogram (0 = the same class balance,
1 = disjoint) and the mean distance to the nearest training image (lower =
closer to real data; compare with the value for real test images, printed
first). Not an FID: a sanity check that
needs neither Inception weights nor a network.

  /usr/bin/python3 tests/bench/sample_stats.py runs/quality/paragan/samples.npy ...
"""
import gzip
import sys

import numpy as np

CLASSES = ["T-shirt", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
           "Sneaker", "Bag", "Boot"]


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def stats(x, train, train_labels, name, reference_hist=None):
    x = x.reshape(len(x), -1).astype(np.float32) / 255.0
    t = train.reshape(len(train), -1).astype(np.float32) / 255.0
    t2 = (t * t).sum(1)
    labels, nearest = [], []
    for i in range(0, len(x), 250):
        b = x[i:i + 250]
        d = (b * b).sum(1)[:, None] + t2[None, :] - 2 * b @ t.T
        idx = np.argpartition(d, 5, axis=1)[:, :5]
        nearest.append(np.sqrt(np.maximum(d[np.arange(len(b))[:, None], idx].min(1), 0)))
        votes = train_labels[idx]
        labels.append(np.array([np.bincount(v, minlength=10).argmax() for v in votes]))
    labels = np.concatenate(labels)
    hist = np.bincount(labels, minlength=10)
    tv = ""
    if reference_hist is not None:
        p, q = hist / hist.sum(), reference_hist / reference_hist.sum()
        tv = f"; class TV distance from real {0.5 * np.abs(p - q).sum():.3f}"
    print(f"{name}: n={len(x)} mean NN distance {np.concatenate(nearest).mean():.3f}; "
          f"classes present {int((hist > 0).sum())}/10; min class share {hist.min() / len(x):.3f}"
          f"{tv}")
    print("   " + "  ".join(f"{c} {h}" for c, h in zip(CLASSES, hist)))
    return hist


def main():
    root = "/usr/share/datasets/fashion-mnist"
    train = read_idx(f"{root}/train-images-idx3-ubyte.gz")
    train_labels = read_idx(f"{root}/train-labels-idx1-ubyte.gz").astype(np.int64)
    test = read_idx(f"{root}/t10k-images-idx3-ubyte.gz")[:1000]
    real = stats(test, train, train_labels, "real test images (reference)")
    for path in sys.argv[1:]:
        s = np.load(path)
        if s.ndim != 3 or s.shape[1:] != (32, 32):
            sys.exit(f"{path}: expected N x 32 x 32 uint8 samples, got {s.shape}")
        stats(s[:, 2:30, 2:30], train, train_labels, path, real)


if __name__ == "__main__":
    main()

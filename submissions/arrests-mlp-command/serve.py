"""The arrests MLP in plain numpy, served over the stdio protocol with Heptathlon's helper."""
import numpy as np

from heptathlon.runners.stdio import serve


def load():
    w = np.load("weights.npz")
    return [(w[f"w{i}"], w[f"b{i}"]) for i in range(3)]


def predict(layers, x):
    for i, (w, b) in enumerate(layers):
        x = x @ w + b
        if i < len(layers) - 1:
            x = np.maximum(x, 0)
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return x.argmax(axis=1), e / e.sum(axis=1, keepdims=True)


if __name__ == "__main__":
    serve(predict, load)

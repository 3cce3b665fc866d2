"""The one conversion between the model's pixel range and the range of files and metrics.

A frame inside the model — the generator's tanh output, the operators and the measurements —
lives in [−1, 1]; on disk, in pictures and in every metric it lives in [0, 1]:

    x_unit = x_model / 2 + 1/2,        x_model = 2 x_unit − 1.

Both work on numpy and jax arrays alike and keep the input's dtype.
"""

from __future__ import annotations


def to_unit(x):
    """[−1, 1] (model) → [0, 1] (files, pictures, metrics): x/2 + 1/2."""
    return x * 0.5 + 0.5


def to_model(x):
    """[0, 1] (files, pictures, metrics) → [−1, 1] (model): 2x − 1."""
    return 2.0 * x - 1.0

"""SHIM: removed at merge. Measurement operators now live in :mod:`lrgen.operators`; this module
re-exports every name other code uses, plus the two functions the operators replaced."""

from __future__ import annotations

import jax

# SHIM: removed at merge
from lrgen.operators import (  # noqa: F401
    IMAGE_KINDS,
    KINDS,
    DenseGaussian,
    Identity,
    Mask,
    MatrixFreeGaussian,
    MeasurementSpec,
    Operator,
    Separable,
    gaussian_rows,
    load_mask_file,
    noise_std,
    operator_class,
    random_mask,
)
from lrgen.operators import make as make_operator  # noqa: F401


def measure(operator: Operator, x: jax.Array, key: jax.Array, noise_snr_db: float | None = None) -> jax.Array:
    """y = A(x) + σ ε at ``noise_snr_db`` (the operator's own SNR is ignored): ``op.measure``."""
    return operator.replace(noise_snr_db=noise_snr_db).measure(x, key)


def observed_image(operator: Operator, y: jax.Array) -> jax.Array | None:
    """The measurements as frames in [−1, 1] (None if not images): ``operator.as_image(y)``."""
    return operator.as_image(y)

"""Image-quality metrics in pure ``jax.numpy``: PSNR as in the original work, and SSIM.

All functions are jittable and vmappable (shape checks happen at trace time) and work in the
inputs' floating dtype, float32 by default or float64 under ``jax.enable_x64``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

# SSIM constants of Wang et al. (2004): an 11-tap Gaussian of σ = 1.5 (scipy's radius
# int(3.5·σ + 0.5) = 5, as skimage uses), K1 = 0.01, K2 = 0.03.
_SSIM_SIGMA = 1.5
_SSIM_RADIUS = 5
_SSIM_K1 = 0.01
_SSIM_K2 = 0.03


def _float(a) -> jax.Array:
    a = jnp.asarray(a)
    return a.astype(jnp.promote_types(a.dtype, jnp.float32))


def _check_same_shape(name: str, x: jax.Array, truth: jax.Array) -> None:
    if x.shape != truth.shape:
        raise ValueError(f"{name}: x has shape {x.shape} but truth has shape {truth.shape}; they must match")


def psnr(x: jax.Array, truth: jax.Array, *, per_frame: bool = False, peak: float | None = None) -> jax.Array:
    """Peak signal-to-noise ratio, the original work's definition; the one PSNR of lrgen.

    PSNR = 20 · log10( P / sqrt( mean((x − truth)²) ) ),   P = max(truth) − min(truth) or ``peak``,

    where max, min and mean run over every element of the arrays (all frames, pixels and
    channels at once), so one number describes the whole sequence; with ``per_frame`` they run
    over each frame's pixels and channels, giving one number per frame (or per image of a batch).
    By default the peak P is the truth's own dynamic range rather than the nominal 1, as in
    Hyder & Asif's code; for frames that span [0, 1] the two agree. Because each frame then uses
    its own range and its own MSE, the mean of the per-frame PSNRs is in general not the PSNR of
    the whole sequence. Identical inputs give +inf.

    Args:
        x: estimate, any shape (``per_frame``: (T, ...)), values in [0, 1].
        truth: ground truth of the same shape, values in [0, 1].
        per_frame: one PSNR per index of the first axis instead of one for everything.
        peak: a fixed peak P (e.g. 1 for images in [0, 1]) instead of the truth's range.

    Returns:
        Scalar PSNR in dB, or (T,) with ``per_frame``.

    Raises:
        ValueError: if the shapes differ, or ``per_frame`` is asked of an array without axes.
    """
    name = "psnr_per_frame" if per_frame else "psnr"
    x, truth = _float(x), _float(truth)
    _check_same_shape(name, x, truth)
    axis = None
    if per_frame:
        if x.ndim < 1:
            raise ValueError(f"{name}: x has shape {x.shape}; allowed is (T, ...) with at least one axis")
        x, truth, axis = x.reshape(x.shape[0], -1), truth.reshape(truth.shape[0], -1), 1
    mse = jnp.mean(jnp.square(x - truth), axis=axis)
    if peak is None:
        peak = jnp.max(truth, axis=axis) - jnp.min(truth, axis=axis)
    return 20.0 * jnp.log10(peak / jnp.sqrt(mse))


def psnr_per_frame(x: jax.Array, truth: jax.Array) -> jax.Array:
    """:func:`psnr` of each frame separately, each with its own peak: ``psnr(x, truth, per_frame=True)``."""
    return psnr(x, truth, per_frame=True)


def _gaussian_taps(dtype) -> jax.Array:
    """Normalised 1-D Gaussian w_i ∝ exp(−i² / 2σ²), i = −5..5 (scipy.ndimage's kernel)."""
    i = np.arange(-_SSIM_RADIUS, _SSIM_RADIUS + 1, dtype=np.float64)
    w = np.exp(-0.5 * (i / _SSIM_SIGMA) ** 2)
    return jnp.asarray(w / w.sum(), dtype=dtype)


def _valid_filter(a: jax.Array, w: jax.Array, axis: int) -> jax.Array:
    """Σ_i w_i a[..., j + i, ...] along ``axis``: 'valid' correlation, output shorter by 10."""
    n = a.shape[axis] - 2 * _SSIM_RADIUS
    return sum(w[i] * jax.lax.slice_in_dim(a, i, i + n, axis=axis) for i in range(w.shape[0]))


def ssim(x: jax.Array, truth: jax.Array, *, data_range: float = 1.0) -> jax.Array:
    """Mean structural similarity (Wang et al., IEEE TIP 2004) over frames and channels.

    For each channel of each frame, with Gaussian-weighted local statistics (11×11 window,
    σ = 1.5) μ_x = w∗x, μ_y = w∗y, σ_x² = w∗x² − μ_x², σ_y² = w∗y² − μ_y², σ_xy = w∗(xy) − μ_x μ_y,

        SSIM(p) = (2 μ_x μ_y + C1)(2 σ_xy + C2) / ((μ_x² + μ_y² + C1)(σ_x² + σ_y² + C2)),

    C1 = (0.01 L)², C2 = (0.03 L)², L = ``data_range``. Only pixels whose whole window lies
    inside the image are kept ('valid' filtering, a 5-pixel border is dropped) and the result is
    their mean over all frames and channels. This is exactly
    ``skimage.metrics.structural_similarity(x, y, gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=L, channel_axis=-1)`` for one (H, W, C) frame (skimage
    filters with reflection and then crops the same border, so the border mode never matters),
    and the mean of it over frames for a sequence.

    Second moments are computed about each channel's global mean (variances and covariances do
    not change under a shift), which keeps float32 cancellation in w∗x² − μ_x² small.

    Args:
        x: estimate (T, H, W, C) or (H, W, C), H, W ≥ 11.
        truth: reference of the same shape.
        data_range: L, the span of possible values (1 for images in [0, 1]).

    Returns:
        Scalar mean SSIM.

    Raises:
        ValueError: if the shapes differ, are not 3-D/4-D, or a side is smaller than 11.
    """
    x, truth = _float(x), _float(truth)
    _check_same_shape("ssim", x, truth)
    x = x.astype(jnp.result_type(x, truth))
    truth = truth.astype(x.dtype)
    win = 2 * _SSIM_RADIUS + 1
    if x.ndim not in (3, 4) or x.shape[-3] < win or x.shape[-2] < win:
        raise ValueError(f"ssim: inputs have shape {x.shape}; allowed are (T, H, W, C) or (H, W, C) with H, W ≥ {win}")
    return _ssim_mean(x, truth, data_range)


@jax.jit
def _ssim_mean(x: jax.Array, truth: jax.Array, data_range) -> jax.Array:
    # Jitted so that eager calls run as one fused computation instead of ~150 small ops.
    w = _gaussian_taps(x.dtype)

    def blur(a):
        return _valid_filter(_valid_filter(a, w, a.ndim - 3), w, a.ndim - 2)

    # Shift by the per-image, per-channel mean: exact for the moments, better conditioned.
    c_x = jnp.mean(x, axis=(-3, -2), keepdims=True)
    c_y = jnp.mean(truth, axis=(-3, -2), keepdims=True)
    xs, ys = x - c_x, truth - c_y
    mx, my = blur(xs), blur(ys)
    vx = blur(xs * xs) - mx * mx
    vy = blur(ys * ys) - my * my
    vxy = blur(xs * ys) - mx * my
    mu_x, mu_y = mx + c_x, my + c_y
    c1 = (_SSIM_K1 * data_range) ** 2
    c2 = (_SSIM_K2 * data_range) ** 2
    s = ((2 * mu_x * mu_y + c1) * (2 * vxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (vx + vy + c2))
    return jnp.mean(s)

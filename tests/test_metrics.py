"""Tests for lrgen.metrics: PSNR by hand, SSIM against scikit-image, jit and vmap."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lrgen import metrics

try:
    from skimage import metrics as skmetrics
except ImportError:  # only the SSIM parity tests need it
    skmetrics = None
needs_skimage = pytest.mark.skipif(skmetrics is None, reason="scikit-image (the SSIM reference) is not installed")


def _sk_ssim(x, y):
    """skimage's SSIM with the Wang et al. settings, averaged over frames."""
    return np.mean(
        [
            skmetrics.structural_similarity(
                a,
                b,
                gaussian_weights=True,
                sigma=1.5,
                use_sample_covariance=False,
                data_range=1.0,
                channel_axis=-1,
            )
            for a, b in zip(np.asarray(x, np.float64), np.asarray(y, np.float64), strict=True)
        ]
    )


def _smooth(t, h, w, c, seed):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    f = rng.uniform(1, 4, size=(t, 1, 1, c))
    ph = rng.uniform(0, 6, size=(t, 1, 1, c))
    return 0.5 + 0.35 * np.sin(f * xx[None, ..., None] + 2 * f * yy[None, ..., None] + ph)


def test_psnr_by_hand():
    truth = np.array([[0.2, 0.8], [0.5, 0.4]])
    x = truth + np.array([[0.1, -0.1], [0.0, 0.2]])
    mse = (0.01 + 0.01 + 0.0 + 0.04) / 4
    want = 20 * np.log10((0.8 - 0.2) / np.sqrt(mse))
    np.testing.assert_allclose(metrics.psnr(x, truth), want, rtol=1e-6)
    assert np.isinf(metrics.psnr(truth, truth))


def test_psnr_per_frame_by_hand():
    rng = np.random.default_rng(0)
    truth = rng.random((4, 6, 6, 1))
    x = np.clip(truth + 0.05 * rng.standard_normal(truth.shape), 0, 1)
    got = metrics.psnr_per_frame(x, truth)
    want = [20 * np.log10((t.max() - t.min()) / np.sqrt(np.mean((a - t) ** 2))) for a, t in zip(x, truth, strict=True)]
    assert got.shape == (4,)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    # one frame alone is the whole-sequence PSNR of that frame
    np.testing.assert_allclose(got[2], metrics.psnr(x[2], truth[2]), rtol=1e-6)


def test_psnr_fixed_peak_and_per_image_by_hand():
    # One definition for every variant: a fixed peak (1 for images in [0, 1]), per frame or per
    # image of a batch; the per-frame variant is the same function with per_frame=True.
    rng = np.random.default_rng(7)
    truth = rng.uniform(0.1, 0.7, (3, 5, 5, 2))  # range < 1: the fixed peak matters
    x = np.clip(truth + 0.03 * rng.standard_normal(truth.shape), 0, 1)
    mse = np.mean((x - truth) ** 2, axis=(1, 2, 3))
    np.testing.assert_allclose(metrics.psnr(x, truth, per_frame=True, peak=1.0), 10 * np.log10(1 / mse), rtol=1e-5)
    np.testing.assert_allclose(metrics.psnr(x, truth, peak=1.0), 10 * np.log10(1 / mse.mean()), rtol=1e-5)
    np.testing.assert_array_equal(metrics.psnr(x, truth, per_frame=True), metrics.psnr_per_frame(x, truth))
    # Images in [−1, 1] with peak 2 are the same images in [0, 1] with peak 1.
    np.testing.assert_allclose(
        metrics.psnr(2 * x - 1, 2 * truth - 1, per_frame=True, peak=2.0),
        metrics.psnr(x, truth, per_frame=True, peak=1.0),
        rtol=1e-5,
    )
    with pytest.raises(ValueError, match="psnr_per_frame"):
        metrics.psnr(np.float32(1.0), np.float32(1.0), per_frame=True)


@needs_skimage
@pytest.mark.parametrize("kind", ["random", "smooth"])
def test_ssim_matches_skimage(kind):
    rng = np.random.default_rng(1)
    if kind == "random":
        truth = rng.random((3, 24, 30, 3))
        x = np.clip(truth + 0.2 * rng.standard_normal(truth.shape), 0, 1)
    else:
        truth = _smooth(3, 32, 28, 1, seed=2)
        x = np.clip(truth + 0.01 * _smooth(3, 32, 28, 1, seed=3), 0, 1)
    want = _sk_ssim(x, truth)
    got = metrics.ssim(jnp.asarray(x, jnp.float32), jnp.asarray(truth, jnp.float32))
    assert abs(float(got) - want) < 1e-5, (float(got), want)
    single = metrics.ssim(jnp.asarray(x[0], jnp.float32), jnp.asarray(truth[0], jnp.float32))
    assert abs(float(single) - _sk_ssim(x[:1], truth[:1])) < 1e-5


@needs_skimage
def test_ssim_float64_is_exact():
    rng = np.random.default_rng(4)
    truth = rng.random((2, 16, 16, 1))
    x = np.clip(truth + 0.1 * rng.standard_normal(truth.shape), 0, 1)
    with jax.enable_x64(True):
        got = float(metrics.ssim(jnp.asarray(x), jnp.asarray(truth)))
    assert abs(got - _sk_ssim(x, truth)) < 1e-12


def test_ssim_identity_and_errors():
    a = jnp.asarray(np.random.default_rng(5).random((2, 12, 12, 1)), jnp.float32)
    np.testing.assert_allclose(metrics.ssim(a, a), 1.0, atol=1e-6)
    with pytest.raises(ValueError, match="shape"):
        metrics.ssim(a, a[:1])
    with pytest.raises(ValueError, match="H, W ≥ 11"):
        metrics.ssim(a[:, :10], a[:, :10])
    with pytest.raises(ValueError, match="shape"):
        metrics.psnr(a, a[0])


def test_jit_and_vmap():
    rng = np.random.default_rng(6)
    truth = jnp.asarray(rng.random((2, 3, 16, 16, 1)), jnp.float32)  # 2 sequences of 3 frames
    x = jnp.clip(truth + 0.05, 0, 1)
    for fn in (metrics.psnr, metrics.ssim, metrics.psnr_per_frame):
        batched = jax.jit(jax.vmap(fn))(x, truth)
        looped = jnp.stack([fn(x[i], truth[i]) for i in range(2)])
        np.testing.assert_allclose(batched, looped, rtol=1e-5)

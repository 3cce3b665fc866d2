"""Motion-compensated fusion of measured pixels (lrgen.fusion)."""

import numpy as np
import pytest

from lrgen import config, fusion


def _video(T=8, size=32, seed=0):
    """A smooth random texture sliding one pixel per frame to the right (frames in [0, 1])."""
    rng = np.random.default_rng(seed)
    big = rng.uniform(size=(size, size + T))
    for _ in range(3):  # soft edges, so that flow can follow the motion
        big = (big + np.roll(big, 1, 0) + np.roll(big, 1, 1) + np.roll(big, -1, 0) + np.roll(big, -1, 1)) / 5
    big = (big - big.min()) / (big.max() - big.min())
    return np.stack([big[:, T - t : T - t + size] for t in range(T)])[..., None].astype(np.float32)


def _blur(x, n=4):
    for _ in range(n):
        x = (x + np.roll(x, 1, 1) + np.roll(x, -1, 1) + np.roll(x, 1, 2) + np.roll(x, -1, 2)) / 5
    return x


def _mse(a, b, where):
    return float(np.sum(where * (a - b) ** 2) / np.sum(where))


def test_fusion_carries_the_measured_pixels_of_other_frames_along_the_motion():
    """A recovery with the right motion but blurred detail: the neighbours' measured pixels,
    carried in along its flow, restore the missing pixels; measured pixels stay as measured."""
    truth = _video()
    mask = (np.random.default_rng(1).uniform(size=(*truth.shape[:3], 1)) < 0.25).astype(np.float32)
    recovered = _blur(truth)
    fused = fusion.fuse(recovered, truth, mask, mu=0.3, reach=3)
    missing = 1.0 - mask
    assert _mse(fused, truth, missing) < 0.5 * _mse(recovered, truth, missing)
    assert np.array_equal(fused[mask > 0], truth[mask > 0])
    # With measurement noise the frame's own measurement is averaged in, not kept.
    noisy = fusion.fuse(recovered, truth, mask, mu=0.3, reach=3, noiseless=False)
    assert not np.array_equal(noisy[mask > 0], truth[mask > 0])
    assert _mse(noisy, truth, missing) < 0.5 * _mse(recovered, truth, missing)


def test_fusion_is_chosen_by_held_out_pixels_and_only_when_it_helps():
    truth = _video(seed=2)
    rng = np.random.default_rng(3)
    mask = (rng.uniform(size=(*truth.shape[:3], 1)) < 0.25).astype(np.float32)
    held = mask * (rng.uniform(size=mask.shape) < 0.2)
    setting, record = fusion.choose(_blur(truth), truth, mask, held, log=lambda s: None)
    assert setting is not None and record["chosen"] == {"mu": setting[0], "reach": setting[1]}
    errors = {(r["mu"], r["reach"]): r["holdout_error"] for r in record["settings"]}
    assert set(errors) == set(fusion.SETTINGS) and errors[setting] == min(errors.values())
    assert errors[setting] < record["holdout_error_recovery"]
    # An exact recovery: every fusion only blurs it, so none is chosen.
    setting, record = fusion.choose(truth, truth, mask, held, log=lambda s: None)
    assert setting is None and record["chosen"] is None and record["holdout_error_recovery"] == 0.0


def test_fusion_needs_a_held_out_set():
    with pytest.raises(ValueError, match=r"--fusion: .*needs --holdout_fraction > 0 \(got 0.0\)"):
        config.RecoverConfig(fusion=True).validate(8, 32)
    config.RecoverConfig(fusion=True, holdout_fraction=0.1).validate(8, 32)

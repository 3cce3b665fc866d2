"""Tests for lrgen.operators: one shared set of invariants for every operator, then each operator's
documented distribution, the noise model, flag validation and mask files.

Statistical checks use tolerances of about five standard deviations of the estimator, computed
from the sample size, so they test the documented scaling rather than one seed's numbers.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lrgen import operators

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
ORIGINAL_MASKS = SHARED / "data" / "gmlr" / "batch_32_missing_819_1.npy"

# Random numbers compile slowly on XLA:CPU (once per shape), so every test shares one operator
# per kind, built once by _operator, with enough frames for the statistical checks: the shape of
# each operator's random draw does not depend on the number of channels.
T = 1024
M_GAUSSIAN = 24
M_SEPARABLE = 4
MISSING_RATIO = 0.3


@pytest.fixture
def x64():
    """Run the test body with 64-bit types enabled; restored afterwards."""
    with jax.enable_x64(True):
        yield


def _spec(kind: str, **kw) -> operators.MeasurementSpec:
    # "gaussian_matrix_free" is the gaussian kind regenerated in chunks of 10 rows (the last padded).
    defaults = {
        "missing": {"missing_ratio": MISSING_RATIO},
        "gaussian": {"num_measurements": M_GAUSSIAN},
        "gaussian_matrix_free": {"num_measurements": M_GAUSSIAN, "matrix_free": True, "matrix_free_chunk": 10},
        "separable": {"num_measurements": M_SEPARABLE},
        "denoise": {"noise_snr_db": 20.0},
    }
    return operators.MeasurementSpec(kind=kind.removesuffix("_matrix_free"), **{**defaults.get(kind, {}), **kw})


def _frame_shape(kind: str, c: int) -> tuple[int, int, int]:
    # Dense Gaussian frames are non-square (6×8 grey, 4×4 RGB: n = 48 for both).
    if kind.startswith("gaussian"):
        return (6, 8, 1) if c == 1 else (4, 4, 3)
    return (8, 8, c)


@functools.cache
def _operator(kind: str, c: int) -> operators.Operator:
    spec = _spec(kind)
    spec.validate(_frame_shape(kind, c), T)
    with jax.enable_x64(False):  # built the same way whichever test asks first (compiles are per mode)
        return operators.make(spec, jax.random.key(0), T, _frame_shape(kind, c))


def _frames(shape, seed=0, dtype=np.float32) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype(dtype)


EXPECTED_TYPE = {
    "identity": operators.Identity,
    "denoise": operators.Identity,
    "missing": operators.Mask,
    "frames": operators.Mask,
    "gaussian": operators.DenseGaussian,
    "gaussian_matrix_free": operators.MatrixFreeGaussian,
    "separable": operators.Separable,
}
OPERATOR_CASES = [(kind, c) for kind in EXPECTED_TYPE for c in (1, 3)]


def _measurement_shape(kind: str, c: int) -> tuple[int, ...]:
    if kind.startswith("gaussian"):
        return (T, M_GAUSSIAN)
    if kind == "separable":
        return (T, M_SEPARABLE, M_SEPARABLE, c)
    return (T, *_frame_shape(kind, c))


# --------------------------------------------------------------------------- shared invariants
@pytest.mark.parametrize("kind,c", OPERATOR_CASES)
def test_operator_invariants(x64, kind, c):
    # Inner products and linear combinations in numpy: only A and Aᵀ run in JAX (fewer compiles).
    op = _operator(kind, c)
    assert isinstance(op, EXPECTED_TYPE[kind])
    rng = np.random.default_rng(OPERATOR_CASES.index((kind, c)))
    x1, x2 = (rng.uniform(-1, 1, (T, *_frame_shape(kind, c))) for _ in range(2))
    y1, y2 = (rng.normal(size=_measurement_shape(kind, c)) for _ in range(2))
    A = lambda x: np.asarray(op.A(jnp.asarray(x)))
    AT = lambda y: np.asarray(op.A_adjoint(jnp.asarray(y)))

    # Shapes and dtype: A maps frames to measurements, Aᵀ maps back, float64 stays float64.
    Ax, ATy = A(x1), AT(y1)
    assert Ax.shape == y1.shape and Ax.dtype == np.float64
    assert ATy.shape == x1.shape and ATy.dtype == np.float64

    # Adjointness <A x, y> = <x, Aᵀ y>, relative to the scale |A x| |y| of the inner product.
    lhs, rhs = np.vdot(Ax, y1), np.vdot(x1, ATy)
    scale = np.linalg.norm(Ax) * np.linalg.norm(y1)
    assert abs(lhs - rhs) <= 1e-10 * scale, (lhs, rhs)

    # Linearity of A and Aᵀ.
    a, b = 0.7, -1.9
    np.testing.assert_allclose(A(a * x1 + b * x2), a * Ax + b * A(x2), rtol=0, atol=1e-12 * scale)
    np.testing.assert_allclose(AT(a * y1 + b * y2), a * ATy + b * AT(y2), rtol=0, atol=1e-12 * scale)

    # The measured-entry indicator is binary and broadcasts to y.
    ind = np.broadcast_to(np.asarray(op.measured(jnp.asarray(Ax))), Ax.shape)
    assert np.all((ind == 0) | (ind == 1))

    # Operators are pytrees: A vmaps over a batch of sequences with the operator as an argument.
    batched = jax.vmap(lambda o, x: o.A(x), in_axes=(None, 0))(op, jnp.asarray(np.stack([x1, x2])))
    np.testing.assert_allclose(batched[1], A(x2), rtol=1e-12, atol=1e-12)

    # The protocol, and the measurements as an image: frames of x's shape, measured entries as
    # they are, unmeasured pixels black (−1); None exactly for the kinds that are not images.
    assert isinstance(op, operators.Operator)
    image = op.as_image(jnp.asarray(Ax))
    assert (image is not None) == op.image_measurements == (_spec(kind).kind in operators.IMAGE_KINDS)
    if image is not None:
        image = np.asarray(image)
        assert image.shape == x1.shape and image.dtype == np.float64
        np.testing.assert_array_equal(np.where(ind == 1, Ax, -1.0), image)


def test_cases_cover_every_kind():
    # The shared invariants above run on every kind make() knows, dense and matrix-free.
    assert {_spec(kind).kind for kind in EXPECTED_TYPE} == set(operators.KINDS)
    for kind, cls in EXPECTED_TYPE.items():
        assert operators.operator_class(_spec(kind)) is cls


def _measure_before_issue_9(op, x, key, snr_db):
    """lrgen.operators.Operator.measure as it was before noise moved into the operators, verbatim."""
    y = op.A(x)
    if snr_db is None:
        return y
    measured = op.measured(y)
    sigma = operators.noise_std(y, measured, snr_db)
    return y + sigma * measured * jax.random.normal(key, y.shape, y.dtype)


@pytest.mark.parametrize("kind", list(EXPECTED_TYPE))
def test_measure_is_the_old_measurement_path_bitwise(kind):
    # make() carries the spec's SNR; measure(x, key) gives the old measure(op, x, key, snr) bit for bit.
    op = _operator(kind, 1)
    x = jnp.asarray(_frames((T, *_frame_shape(kind, 1)), seed=3))
    key = jax.random.key(7)
    assert op.noise_snr_db == _spec(kind).noise_snr_db
    for snr_db in (None, 0.0, 17.5):
        noisy = op.replace(noise_snr_db=snr_db)
        np.testing.assert_array_equal(noisy.measure(x, key), _measure_before_issue_9(op, x, key, snr_db))
    np.testing.assert_array_equal(op.replace(noise_snr_db=None).measure(x, key), op.A(x))


@pytest.mark.parametrize("c", [1, 3])
def test_identity_and_mask_are_orthogonal_projections(x64, c):
    x = jnp.asarray(_frames((T, 8, 8, c), seed=c, dtype=np.float64))
    np.testing.assert_array_equal(_operator("identity", c).A(x), x)
    op = _operator("missing", c)
    Ax = op.A(x)
    np.testing.assert_array_equal(op.A(Ax), Ax)  # idempotent
    np.testing.assert_array_equal(op.A_adjoint(x), Ax)  # self-adjoint
    np.testing.assert_array_equal(op.measured(Ax), np.broadcast_to(op.mask, Ax.shape))


# --------------------------------------------------------------------------- Gaussian scaling
def _assert_normal_entries(entries: np.ndarray, m: int) -> None:
    """i.i.d. N(0, 1/m): mean, variance and kurtosis within ~5 standard errors."""
    v = entries.astype(np.float64).ravel() * math.sqrt(m)  # should be N(0, 1)
    n = v.size
    assert abs(v.mean()) < 5 / math.sqrt(n)
    assert abs(v.var() - 1) < 5 * math.sqrt(2 / n)
    assert abs(np.mean(v**4) / v.var() ** 2 - 3) < 5 * math.sqrt(24 / n)


def test_dense_gaussian_entries_are_n01_over_m():
    op = _operator("gaussian", 1)
    assert op.matrices.shape == (T, M_GAUSSIAN, 48)
    _assert_normal_entries(np.asarray(op.matrices), M_GAUSSIAN)
    # Rows and frames are distinct draws (no repeated row anywhere).
    rows = np.asarray(op.matrices).reshape(-1, 48)
    assert len({r.tobytes() for r in rows}) == rows.shape[0]


def test_separable_entries_are_n01_over_m():
    op = _operator("separable", 1)
    assert op.matrices.shape == (T, M_SEPARABLE, 8)
    _assert_normal_entries(np.asarray(op.matrices), M_SEPARABLE)
    rows = np.asarray(op.matrices).reshape(-1, 8)
    assert len({r.tobytes() for r in rows}) == rows.shape[0]


def test_dense_gaussian_preserves_energy_in_expectation(x64):
    # E‖A_t x‖² = ‖x‖²: per frame ‖A_t x‖²/‖x‖² ~ χ²_m / m (variance 2/m), averaged over frames.
    op, m, num_frames = _operator("gaussian", 3), M_GAUSSIAN, T
    x = _frames((num_frames, 4, 4, 3), seed=5, dtype=np.float64)
    ratio = np.sum(np.asarray(op.A(jnp.asarray(x))) ** 2, axis=1) / np.sum(x**2, axis=(1, 2, 3))
    assert abs(ratio.mean() - 1) < 5 * math.sqrt(2 / m / num_frames)
    assert abs(ratio.var() - 2 / m) < 0.5 * (2 / m)


def test_separable_energy_in_expectation(x64):
    # With W = MᵀM (E[W] = I), E[W X W] = X + (Xᵀ + tr(X) I)/m for Gaussian M, hence
    # E‖M X Mᵀ‖² = ‖X‖² + (tr(X²) + tr(X)²)/m: energy is kept up to O(1/m).
    op, m, num_frames = _operator("separable", 1), M_SEPARABLE, T
    X = _frames((8, 8), seed=6, dtype=np.float64)
    x = np.broadcast_to(X[None, :, :, None], (num_frames, 8, 8, 1))
    energy = np.sum(np.asarray(op.A(jnp.asarray(x))) ** 2, axis=(1, 2, 3))
    expected = np.sum(X**2) + (np.trace(X @ X) + np.trace(X) ** 2) / m
    assert abs(energy.mean() - expected) < 5 * energy.std() / math.sqrt(num_frames)
    # And E[MᵀM] = I entrywise (per frame each entry has variance ≤ 2/m ≤ 2).
    M = np.asarray(op.matrices, np.float64)
    gram = np.einsum("tah,tag->hg", M, M) / num_frames
    np.testing.assert_allclose(gram, np.eye(8), rtol=0, atol=5 * math.sqrt(2 / num_frames))


# --------------------------------------------------------------------------- masks
@pytest.mark.parametrize("ratio", [MISSING_RATIO, 0.99])
def test_mask_has_exact_missing_count(ratio):
    h, w = 8, 8
    if ratio == MISSING_RATIO:
        masks = np.asarray(_operator("missing", 1).mask)
    else:
        masks = np.asarray(operators.random_mask(jax.random.key(0), T, h, w, ratio))
    assert masks.shape == (T, h, w, 1)
    assert np.all((masks == 0) | (masks == 1))
    missing = (masks == 0).reshape(T, -1).sum(axis=1)
    np.testing.assert_array_equal(missing, math.floor(h * w * ratio))


def test_mask_shared_across_channels_and_distinct_per_frame():
    op = _operator("missing", 3)
    Ax = np.asarray(op.A(jnp.ones((T, 8, 8, 3))))
    np.testing.assert_array_equal(Ax[..., 0], Ax[..., 1])
    np.testing.assert_array_equal(Ax[..., 0], Ax[..., 2])
    masks = np.asarray(op.mask)
    assert len({m.tobytes() for m in masks}) == T  # no two frames share a mask


def test_mask_reproducible_from_key():
    spec = _spec("missing")
    a = operators.make(spec, jax.random.key(0), T, (8, 8, 1)).mask
    c = operators.make(spec, jax.random.key(12), T, (8, 8, 1)).mask
    np.testing.assert_array_equal(a, _operator("missing", 1).mask)
    np.testing.assert_array_equal(a, _operator("missing", 3).mask)  # channels do not change the draw
    assert not np.array_equal(a, c)


def test_mask_positions_are_uniform():
    # Each pixel is missing with probability ratio: Binomial(T, ratio) counts over many frames.
    masks = np.asarray(_operator("missing", 1).mask)
    num_frames, ratio = T, MISSING_RATIO
    missing_per_pixel = (masks == 0).sum(axis=0).ravel()
    sd = math.sqrt(num_frames * ratio * (1 - ratio))
    assert np.all(np.abs(missing_per_pixel - num_frames * ratio) < 5 * sd)


# --------------------------------------------------------------------------- row regeneration
@pytest.mark.parametrize("kind", ["gaussian", "separable"])
def test_gaussian_rows_regenerate_any_subset(kind):
    # Chunks of two rows, in any order, reproduce the operator's matrices bit for bit.
    key = jax.random.key(0)
    op = _operator(kind, 1)
    m, n = op.matrices.shape[1:]
    for t in (0, 1, T - 1):
        full = np.asarray(op.matrices[t])
        order = np.random.default_rng(t).permutation(m)
        for i in range(0, m, 2):
            rows = order[i : i + 2]
            np.testing.assert_array_equal(operators.gaussian_rows(key, t, jnp.asarray(rows), n, m), full[rows])
    # A row does not depend on how many rows A_t has, apart from the 1/√m scale.
    rows = jnp.arange(2)
    r4 = np.asarray(operators.gaussian_rows(key, 1, rows, n, 4)) * 2.0
    r9 = np.asarray(operators.gaussian_rows(key, 1, rows, n, 9)) * 3.0
    np.testing.assert_allclose(r4, r9, rtol=1e-6)
    if kind == "gaussian":
        # Under jit (traced t), the same draws; the 1/√m scaling may round differently by 1 ulp.
        traced = jax.jit(operators.gaussian_rows, static_argnums=(3, 4))(key, jnp.asarray(2), jnp.arange(m), n, m)
        np.testing.assert_allclose(traced, op.matrices[2], rtol=2e-7, atol=0)


# --------------------------------------------------------------------------- noise
def _empirical_snr_db(op, x, y) -> float:
    clean = np.asarray(op.A(x))
    measured = np.broadcast_to(np.asarray(op.measured(clean)), clean.shape).astype(bool)
    noise = (np.asarray(y) - clean)[measured]
    return 10 * math.log10(
        float(np.sum(clean[measured].astype(np.float64) ** 2) / np.sum(noise.astype(np.float64) ** 2))
    )


@pytest.mark.parametrize("snr_db", [0.0, 10.0, 27.5])
@pytest.mark.parametrize("kind", ["identity", "missing", "gaussian"])
def test_noise_gives_requested_snr(kind, snr_db):
    # ≥ 24k measured entries: the empirical SNR's standard error is 4.34·√(2/N) dB < 0.04 dB.
    op = _operator(kind, 3)
    x = _frames((T, *_frame_shape(kind, 3)), seed=1)
    y = op.replace(noise_snr_db=snr_db).measure(x, jax.random.key(11))
    assert y.shape == op.A(x).shape
    assert abs(_empirical_snr_db(op, x, y) - snr_db) < 0.2
    if kind == "missing":  # noise only where measured: unobserved entries stay exactly 0
        unobserved = np.broadcast_to(np.asarray(op.mask) == 0, y.shape)
        assert unobserved.mean() > 0.25
        np.testing.assert_array_equal(np.asarray(y)[unobserved], 0.0)


def test_noise_free_and_reproducible():
    op, x = _operator("missing", 3), _frames((T, 8, 8, 3), seed=1)
    np.testing.assert_array_equal(op.measure(x, jax.random.key(1)), op.A(x))
    a = op.replace(noise_snr_db=10.0).measure(x, jax.random.key(1))
    np.testing.assert_array_equal(a, op.replace(noise_snr_db=10.0).measure(x, jax.random.key(1)))
    assert not np.array_equal(a, op.replace(noise_snr_db=10.0).measure(x, jax.random.key(2)))


def test_noise_std_formula(x64):
    rng = np.random.default_rng(0)
    y = rng.normal(size=(4, 5, 6, 1))
    measured = (rng.uniform(size=y.shape) < 0.5).astype(np.float64)
    snr = 13.0
    want = math.sqrt(np.sum(y**2 * measured) / measured.sum() * 10 ** (-snr / 10))
    assert abs(float(operators.noise_std(jnp.asarray(y), jnp.asarray(measured), snr)) - want) < 1e-12 * want


# --------------------------------------------------------------------------- validation
FRAME = (8, 8, 1)
VALID_MASK = np.ones((T, 8, 8, 1), np.float32)
INVALID_SPECS = [
    ("unknown kind", operators.MeasurementSpec(kind="blur"), FRAME, "--measurement"),
    ("ratio = 1", operators.MeasurementSpec(kind="missing", missing_ratio=1.0), FRAME, "--missing_ratio"),
    ("ratio < 0", operators.MeasurementSpec(kind="missing", missing_ratio=-0.1), FRAME, "--missing_ratio"),
    ("ratio nan", operators.MeasurementSpec(kind="missing", missing_ratio=float("nan")), FRAME, "--missing_ratio"),
    ("gaussian m = 0", operators.MeasurementSpec(kind="gaussian", num_measurements=0), FRAME, "--num_measurements"),
    ("gaussian m > n", operators.MeasurementSpec(kind="gaussian", num_measurements=65), FRAME, "--num_measurements"),
    (
        "gaussian m > n rgb",
        operators.MeasurementSpec(kind="gaussian", num_measurements=193),
        (8, 8, 3),
        "--num_measurements",
    ),
    ("separable m = 0", operators.MeasurementSpec(kind="separable", num_measurements=0), FRAME, "--num_measurements"),
    ("separable m > H", operators.MeasurementSpec(kind="separable", num_measurements=9), FRAME, "--num_measurements"),
    (
        "separable non-square",
        operators.MeasurementSpec(kind="separable", num_measurements=4),
        (8, 6, 1),
        "--measurement",
    ),
    ("denoise without snr", operators.MeasurementSpec(kind="denoise"), FRAME, "--noise_snr_db"),
    ("infinite snr", operators.MeasurementSpec(kind="missing", noise_snr_db=float("inf")), FRAME, "--noise_snr_db"),
    ("mask wrong size", operators.MeasurementSpec(mask=np.ones((T, 8, 7, 1))), FRAME, "--mask_file"),
    ("mask 3-d", operators.MeasurementSpec(mask=np.ones((T, 8, 8))), FRAME, "--mask_file"),
    ("mask multichannel", operators.MeasurementSpec(mask=np.ones((T, 8, 8, 3))), FRAME, "--mask_file"),
    ("mask too few frames", operators.MeasurementSpec(mask=np.ones((T - 1, 8, 8, 1))), FRAME, "--mask_file"),
    ("mask non-binary", operators.MeasurementSpec(mask=np.full((T, 8, 8, 1), 0.5)), FRAME, "--mask_file"),
]


@pytest.mark.parametrize("name,spec,frame_shape,flag", INVALID_SPECS, ids=[c[0] for c in INVALID_SPECS])
def test_validate_rejects(name, spec, frame_shape, flag):
    with pytest.raises(ValueError, match=flag):
        spec.validate(frame_shape, T)


@pytest.mark.parametrize(
    "spec,frame_shape",
    [
        (operators.MeasurementSpec(kind="identity"), FRAME),
        (operators.MeasurementSpec(kind="missing", missing_ratio=0.0), FRAME),
        (operators.MeasurementSpec(kind="missing", missing_ratio=0.999, noise_snr_db=-5.0), FRAME),
        (operators.MeasurementSpec(kind="missing", missing_ratio=5.0, mask=VALID_MASK), FRAME),  # mask overrides ratio
        (operators.MeasurementSpec(kind="gaussian", num_measurements=1), FRAME),
        (operators.MeasurementSpec(kind="gaussian", num_measurements=192), (8, 8, 3)),
        (operators.MeasurementSpec(kind="separable", num_measurements=8), FRAME),
        (operators.MeasurementSpec(kind="denoise", noise_snr_db=20.0), FRAME),
    ],
)
def test_validate_accepts(spec, frame_shape):
    spec.validate(frame_shape, T)


def test_make_operator_rejects_unknown_kind():
    with pytest.raises(ValueError, match="--measurement"):
        operators.make(operators.MeasurementSpec(kind="blur"), jax.random.key(0), T, FRAME)


def test_make_operator_uses_given_masks():
    masks = (np.random.default_rng(1).uniform(size=(T + 2, 8, 8, 1)) < 0.6).astype(np.float32)
    op = operators.make(operators.MeasurementSpec(kind="missing", mask=masks), jax.random.key(0), T, FRAME)
    np.testing.assert_array_equal(op.mask, masks[:T])


# --------------------------------------------------------------------------- mask files
def _binary_masks(t=4, h=6, w=5, seed=0) -> np.ndarray:
    return (np.random.default_rng(seed).uniform(size=(t, h, w)) < 0.3).astype(np.float64)


@pytest.mark.parametrize("layout", ["T1HW", "THW", "THW1"])
@pytest.mark.parametrize("fmt", ["npy", "npz", "npz-named"])
def test_load_mask_file_layouts(tmp_path, layout, fmt):
    m = _binary_masks()
    arr = {"T1HW": m[:, None], "THW": m, "THW1": m[..., None]}[layout]
    path = tmp_path / f"masks.{fmt[:3]}"
    if fmt == "npy":
        np.save(path, arr)
    elif fmt == "npz":
        np.savez(path, arr)
    else:
        np.savez(path, mask=arr, other=np.zeros(3))
    loaded = operators.load_mask_file(str(path))
    assert loaded.shape == (4, 6, 5, 1) and loaded.dtype == np.float32
    np.testing.assert_array_equal(loaded[..., 0], m)
    operators.MeasurementSpec(kind="missing", mask=loaded).validate((6, 5, 1), 4)


def _write_bad(path: Path, case: str) -> None:
    if case == "corrupt-npy":
        path.write_bytes(b"\x93NUMPY garbage that is not a header")
    elif case == "corrupt-zip":
        path.write_bytes(b"PK\x03\x04 truncated archive")
    elif case == "random-bytes":
        path.write_bytes(np.random.default_rng(0).bytes(300))
    elif case == "truncated":
        np.save(path, _binary_masks())
        path.write_bytes(path.read_bytes()[:150])
    elif case == "two-arrays":
        np.savez(path, a=_binary_masks(), b=_binary_masks())
    elif case == "non-binary":
        np.save(path, _binary_masks() * 0.5)
    elif case == "bool-ish 255":
        np.save(path, _binary_masks() * 255)
    elif case == "nan":
        m = _binary_masks()
        m[0, 0, 0] = np.nan
        np.save(path, m)
    elif case == "2-d":
        np.save(path, np.ones((6, 5)))
    elif case == "multichannel":
        np.save(path, np.ones((4, 6, 5, 3)))


@pytest.mark.parametrize(
    "case",
    ["corrupt-npy", "corrupt-zip", "random-bytes", "truncated", "two-arrays", "non-binary", "bool-ish 255", "nan", "2-d",
     "multichannel"],
)  # fmt: skip
def test_load_mask_file_rejects(tmp_path, case):
    path = tmp_path / ("masks.npz" if case in ("corrupt-zip", "two-arrays") else "masks.npy")
    _write_bad(path, case)
    with pytest.raises(ValueError, match="--mask_file") as info:
        operators.load_mask_file(str(path))
    assert str(path) in str(info.value)


def test_load_mask_file_rejects_missing(tmp_path):
    path = tmp_path / "absent.npy"
    with pytest.raises(ValueError, match="--mask_file") as info:
        operators.load_mask_file(str(path))
    assert str(path) in str(info.value)
    with pytest.raises(ValueError, match="--mask_file"):
        operators.load_mask_file(str(tmp_path))  # a directory is not a file


@pytest.mark.skipif(not ORIGINAL_MASKS.is_file(), reason=f"original masks not found at {ORIGINAL_MASKS}")
def test_original_mask_file():
    masks = operators.load_mask_file(str(ORIGINAL_MASKS))
    assert masks.shape == (32, 64, 64, 1)
    np.testing.assert_array_equal(masks.reshape(32, -1).sum(axis=1), 820)
    spec = operators.MeasurementSpec(kind="missing", mask=masks)
    spec.validate((64, 64, 1), 32)
    op = operators.make(spec, jax.random.key(0), 32, (64, 64, 1))
    np.testing.assert_array_equal(op.mask, masks)

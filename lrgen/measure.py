"""Measurement operators y_t = A_t(x_t) (+ noise), one operator per frame.

Every operator acts on a whole sequence x of shape (T, H, W, C) with frames in [−1, 1]
(the generator's range) and returns measurements of shape (T, ...); frame t is measured by its
own A_t, as in the original work. Operators are ``flax.struct`` pytrees holding only arrays
(masks, matrices) plus static metadata, so they ``vmap`` over a batch of sequences, shard, and
save like any other array data.

Each linear operator provides ``A`` (forward) and ``A_adjoint`` with ⟨A x, y⟩ = ⟨x, Aᵀ y⟩,
checked for all of them by one shared test.

Operators (``kind`` in :class:`MeasurementSpec`):

* ``identity``   A_t = I.
* ``missing``    A_t x = M_t ⊙ x with a binary mask M_t (1 = observed) shared across channels;
                 drawn with exactly ⌊H·W·ratio⌋ missing pixels per frame, or read from a file.
* ``gaussian``   A_t ∈ R^{m×n}, n = H·W·C, i.i.d. entries N(0, 1/m) (so E‖A_t x‖² = ‖x‖²),
                 acting on the frame flattened in (H, W, C) order.
* ``separable``  Y_c = M_t X_c M_tᵀ for each channel c, M_t ∈ R^{m×H} with entries N(0, 1/m);
                 m² measurements per channel. Needs square frames.
* ``denoise``    identity with additive noise (``noise_snr_db`` required).
* ``frames``     whole frames missing: frame t is observed (A_t = I) when t is a multiple of
                 ``observe_every``, else not at all (A_t = 0): the hold-out setting of frame
                 interpolation, as a :class:`Mask` of all-ones / all-zeros frames.

Noise: y = A(x) + σ ε, ε ~ N(0, I) on the measured entries, with
σ² = (Σ‖A_t x_t‖² / number of measured entries) · 10^(−SNR/10), i.e. the SNR in dB of the whole
sequence's measurements.

The random matrices are generated row by row from ``fold_in(fold_in(key, t), i)`` so that a
row can be regenerated on its own (matrix-free operators for long videos produce the same
numbers in chunks).
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from lrgen import io

KINDS = ("identity", "missing", "gaussian", "separable", "denoise", "frames")


class Identity(struct.PyTreeNode):
    """A_t = I: y has the shape of x."""

    linear: ClassVar[bool] = True

    def A(self, x: jax.Array) -> jax.Array:
        return x

    def A_adjoint(self, y: jax.Array) -> jax.Array:
        return y

    def measured(self, y: jax.Array) -> jax.Array:
        """Indicator (broadcastable to y) of the entries that are actually measured."""
        return jnp.ones((), y.dtype)


class Mask(struct.PyTreeNode):
    """A_t x = M_t ⊙ x, M_t ∈ {0, 1}^{H×W×1} (1 = observed), shared across channels.

    Unobserved entries of y are 0, so with frames in [−1, 1] the residual on them is always 0,
    exactly as the original's ``2·((x/2 + 0.5) ⊙ M) − 1`` measurements.

    Attributes:
      mask: (T, H, W, 1) array of 0/1.
    """

    mask: jax.Array

    def A(self, x: jax.Array) -> jax.Array:
        return self.mask.astype(x.dtype) * x

    def A_adjoint(self, y: jax.Array) -> jax.Array:
        return self.mask.astype(y.dtype) * y

    def measured(self, y: jax.Array) -> jax.Array:
        return jnp.broadcast_to(self.mask.astype(y.dtype), y.shape)


class DenseGaussian(struct.PyTreeNode):
    """y_t = A_t vec(x_t), A_t ∈ R^{m×n} with i.i.d. N(0, 1/m) entries.

    Attributes:
      matrices: (T, m, n) with n = H·W·C, acting on frames flattened in (H, W, C) order.
      frame_shape: static (H, W, C), to un-flatten the adjoint.
    """

    matrices: jax.Array
    frame_shape: tuple[int, int, int] = struct.field(pytree_node=False)

    def A(self, x: jax.Array) -> jax.Array:
        return jnp.einsum("tmn,tn->tm", self.matrices.astype(x.dtype), x.reshape(x.shape[0], -1))

    def A_adjoint(self, y: jax.Array) -> jax.Array:
        x = jnp.einsum("tmn,tm->tn", self.matrices.astype(y.dtype), y)
        return x.reshape(y.shape[0], *self.frame_shape)

    def measured(self, y: jax.Array) -> jax.Array:
        return jnp.ones((), y.dtype)


class Separable(struct.PyTreeNode):
    """Y_{t,c} = M_t X_{t,c} M_tᵀ, M_t ∈ R^{m×H} with i.i.d. N(0, 1/m) entries.

    Attributes:
      matrices: (T, m, H); frames must be square (H = W). y has shape (T, m, m, C).
    """

    matrices: jax.Array

    def A(self, x: jax.Array) -> jax.Array:
        M = self.matrices.astype(x.dtype)
        return jnp.einsum("tah,thwc,tbw->tabc", M, x, M)

    def A_adjoint(self, y: jax.Array) -> jax.Array:
        M = self.matrices.astype(y.dtype)
        return jnp.einsum("tah,tabc,tbw->thwc", M, y, M)

    def measured(self, y: jax.Array) -> jax.Array:
        return jnp.ones((), y.dtype)


Operator = Identity | Mask | DenseGaussian | Separable  # | MatrixFreeGaussian (defined below)


@dataclasses.dataclass(frozen=True)
class MeasurementSpec:
    """What to measure, independent of any particular video.

    Attributes:
      kind: one of :data:`KINDS`.
      missing_ratio: fraction of pixels missing per frame, in [0, 1) (``missing``).
      num_measurements: m, rows of A_t (``gaussian``) or of M_t (``separable``).
      noise_snr_db: SNR of additive Gaussian noise in dB, or None for noiseless measurements.
        Required for ``denoise``.
      mask: optional (T', H, W, 1) observed-pixel masks (e.g. read from a file); overrides
        ``missing_ratio``; the first T frames are used.
      matrix_free: ``gaussian`` only: regenerate A_t in chunks instead of storing T×m×n numbers
        (:class:`MatrixFreeGaussian`); same matrix, same results.
      matrix_free_chunk: rows per regenerated block.
      observe_every: ``frames`` only: every s-th frame (0, s, 2s, …) is observed.
    """

    kind: str = "missing"
    missing_ratio: float = 0.8
    num_measurements: int = 512
    noise_snr_db: float | None = None
    mask: np.ndarray | None = dataclasses.field(default=None, compare=False, repr=False)
    matrix_free: bool = False
    matrix_free_chunk: int = 256
    observe_every: int = 2

    def validate(self, frame_shape: tuple[int, int, int], num_frames: int) -> None:
        """Raise ValueError naming the flag, the value and what is allowed."""
        H, W, C = frame_shape
        if self.kind not in KINDS:
            raise ValueError(f"--measurement={self.kind}: allowed values are {', '.join(KINDS)}")
        if self.kind == "missing" and self.mask is None and not 0.0 <= self.missing_ratio < 1.0:
            raise ValueError(f"--missing_ratio={self.missing_ratio}: must lie in [0, 1)")
        if self.kind == "gaussian" and not 1 <= self.num_measurements <= H * W * C:
            raise ValueError(f"--num_measurements={self.num_measurements}: gaussian needs 1 ≤ m ≤ H·W·C = {H * W * C}")
        if self.kind == "separable":
            if H != W:
                raise ValueError(f"--measurement=separable needs square frames, got {H}×{W}")
            if not 1 <= self.num_measurements <= H:
                raise ValueError(f"--num_measurements={self.num_measurements}: separable needs 1 ≤ m ≤ H = {H}")
        if self.kind == "frames" and not 1 <= self.observe_every <= num_frames:
            raise ValueError(f"--observe_every={self.observe_every}: must lie in [1, T] = [1, {num_frames}]")
        if self.matrix_free and self.kind != "gaussian":
            raise ValueError(
                f"--matrix_free: only --measurement=gaussian has a matrix to regenerate; got --measurement={self.kind}"
            )
        if self.matrix_free and self.matrix_free_chunk < 1:
            raise ValueError(f"--matrix_free_chunk={self.matrix_free_chunk}: must be ≥ 1")
        if self.kind == "denoise" and self.noise_snr_db is None:
            raise ValueError("--measurement=denoise needs --noise_snr_db")
        if self.noise_snr_db is not None and not math.isfinite(self.noise_snr_db):
            raise ValueError(f"--noise_snr_db={self.noise_snr_db}: must be a finite number of dB")
        if self.mask is not None:
            m = self.mask
            if m.ndim != 4 or m.shape[1:] != (H, W, 1):
                raise ValueError(
                    f"--mask_file: masks of shape {m.shape} do not fit frames {H}×{W} (need (T, {H}, {W}, 1))"
                )
            if m.shape[0] < num_frames:
                raise ValueError(f"--mask_file: holds {m.shape[0]} masks but the video has {num_frames} frames")
            if not np.all((m == 0) | (m == 1)):
                raise ValueError("--mask_file: masks must contain only 0 (missing) and 1 (observed)")


def random_mask(key: jax.Array, num_frames: int, height: int, width: int, missing_ratio: float) -> jax.Array:
    """(T, H, W, 1) masks with exactly ⌊H·W·ratio⌋ missing pixels per frame (as the original)."""
    n = height * width
    n_drop = int(n * missing_ratio)

    def one(t):
        order = jax.random.permutation(jax.random.fold_in(key, t), n)
        return (jnp.zeros(n).at[order[:n_drop]].set(1.0) == 0).astype(jnp.float32)

    masks = jax.vmap(one)(jnp.arange(num_frames))
    return masks.reshape(num_frames, height, width, 1)


def gaussian_rows(key: jax.Array, t: int | jax.Array, rows: jax.Array, n: int, m: int, dtype=jnp.float32) -> jax.Array:
    """Rows ``rows`` of A_t, each N(0, 1/m) in R^n, regenerated from (key, t, row index)."""
    kt = jax.random.fold_in(key, t)
    draw = lambda i: jax.random.normal(jax.random.fold_in(kt, i), (n,), dtype)  # noqa: E731
    # Multiply by a constant rounded once on the host: a division may be compiled as a
    # multiplication by the reciprocal in one program and not in another.
    return jax.vmap(draw)(rows) * np.asarray(1.0 / np.sqrt(m), dtype)


def make_operator(
    spec: MeasurementSpec, key: jax.Array, num_frames: int, frame_shape: tuple[int, int, int]
) -> Operator:
    """Build the per-frame operators for a sequence of ``num_frames`` frames of ``frame_shape``."""
    H, W, C = frame_shape
    T = num_frames
    if spec.kind in ("identity", "denoise"):
        return Identity()
    if spec.kind == "frames":
        observed = (jnp.arange(T) % spec.observe_every == 0).astype(jnp.float32)
        return Mask(jnp.broadcast_to(observed[:, None, None, None], (T, H, W, 1)))
    if spec.kind == "missing":
        if spec.mask is not None:
            return Mask(jnp.asarray(spec.mask[:T], jnp.float32))
        return Mask(random_mask(key, T, H, W, spec.missing_ratio))
    m = spec.num_measurements
    if spec.kind == "gaussian" and spec.matrix_free:
        return MatrixFreeGaussian(key, (H, W, C), m, spec.matrix_free_chunk)
    if spec.kind == "gaussian":
        n = H * W * C
        mats = jax.vmap(lambda t: gaussian_rows(key, t, jnp.arange(m), n, m))(jnp.arange(T))
        return DenseGaussian(mats, (H, W, C))
    if spec.kind == "separable":
        mats = jax.vmap(lambda t: gaussian_rows(key, t, jnp.arange(m), H, m))(jnp.arange(T))
        return Separable(mats)
    raise ValueError(f"--measurement={spec.kind}: allowed values are {', '.join(KINDS)}")


def noise_std(y_clean: jax.Array, measured: jax.Array, snr_db: float) -> jax.Array:
    """σ giving ``snr_db`` for the measured entries of y: σ² = mean(y²) · 10^(−SNR/10)."""
    count = jnp.sum(jnp.broadcast_to(measured, y_clean.shape))
    power = jnp.sum(jnp.square(y_clean) * measured) / count
    return jnp.sqrt(power * 10.0 ** (-snr_db / 10.0))


def measure(operator: Operator, x: jax.Array, key: jax.Array, noise_snr_db: float | None = None) -> jax.Array:
    """y = A(x) + σ ε for frames x in [−1, 1] (see the module docstring for σ)."""
    y = operator.A(x)
    if noise_snr_db is None:
        return y
    measured = operator.measured(y)
    sigma = noise_std(y, measured, noise_snr_db)
    return y + sigma * measured * jax.random.normal(key, y.shape, y.dtype)


def observed_image(operator: Operator, y: jax.Array) -> jax.Array | None:
    """What the measurements look like as frames in [−1, 1], for figures (None if not images).

    Missing pixels are drawn black (−1), as in the original figures; compressive measurements
    are not images.
    """
    if isinstance(operator, Mask):
        return y + (operator.mask.astype(y.dtype) - 1.0)
    if isinstance(operator, Identity):
        return y
    return None


def load_mask_file(path: str) -> np.ndarray:
    """Read observed-pixel masks (1 = observed) from .npy/.npz as (T, H, W, 1) float32.

    Accepts (T, H, W), (T, 1, H, W) (the original's NCHW files, e.g.
    ``batch_32_missing_819_1.npy``) and (T, H, W, 1). Raises ValueError naming the file.
    """
    data = io.read_array_file(path, f"--mask_file={path}")
    if isinstance(data, dict):
        if len(data) != 1 and "mask" not in data:
            raise ValueError(f"--mask_file={path}: holds {list(data)}; expected one array or one named 'mask'")
        data = data["mask" if "mask" in data else next(iter(data))]
    m = np.asarray(data)
    if m.ndim == 3:
        m = m[..., None]
    elif m.ndim == 4 and m.shape[1] == 1 and m.shape[-1] != 1:
        m = m.transpose(0, 2, 3, 1)
    if m.ndim != 4 or m.shape[-1] != 1:
        raise ValueError(
            f"--mask_file={path}: shape {np.shape(data)}; expected (T, H, W), (T, 1, H, W) or (T, H, W, 1)"
        )
    if not np.all(np.isfinite(m)) or not np.all((m == 0) | (m == 1)):
        raise ValueError(f"--mask_file={path}: masks must hold only 0 (missing) and 1 (observed)")
    return m.astype(np.float32)


class MatrixFreeGaussian(struct.PyTreeNode):
    """The dense Gaussian operator of :class:`DenseGaussian`, never stored.

    A_t is regenerated from (key, t, row) in chunks of ``chunk`` rows inside both the forward
    and the adjoint, frame by frame (``lax.map``), so memory holds one chunk×n block at a time
    instead of T×m×n numbers; the numbers are those of :func:`gaussian_rows`, i.e. the same
    matrix ``make_operator`` stores. Each block product is rematerialised (``jax.checkpoint``),
    so reverse-mode differentiation regenerates the rows instead of keeping them alive.

    Attributes:
      key: (base key of the operator) typed PRNG key.
      frame_shape: static (H, W, C).
      num_measurements: static m.
      chunk: static rows per generated block (m is padded up to a multiple of it).
    """

    key: jax.Array
    frame_shape: tuple[int, int, int] = struct.field(pytree_node=False)
    num_measurements: int = struct.field(pytree_node=False)
    chunk: int = struct.field(pytree_node=False, default=256)

    def _blocks(self):
        m, c = self.num_measurements, min(self.chunk, self.num_measurements)
        nblocks = -(-m // c)
        return m, c, nblocks

    def _rows(self, t, b, dtype):
        m, c, _ = self._blocks()
        rows = b * c + jnp.arange(c)
        n = int(np.prod(self.frame_shape))
        block = gaussian_rows(self.key, t, jnp.minimum(rows, m - 1), n, m, dtype)
        return jnp.where((rows < m)[:, None], block, 0)  # rows past m are padding

    def A(self, x: jax.Array) -> jax.Array:
        m, c, nblocks = self._blocks()
        T = x.shape[0]
        block = jax.checkpoint(lambda t, b, xt: self._rows(t, b, x.dtype) @ xt)

        def frame(args):
            t, xt = args
            return jax.lax.map(lambda b: block(t, b, xt), jnp.arange(nblocks)).reshape(-1)[:m]

        return jax.lax.map(frame, (jnp.arange(T), x.reshape(T, -1)))

    def A_adjoint(self, y: jax.Array) -> jax.Array:
        m, c, nblocks = self._blocks()
        T = y.shape[0]
        ypad = jnp.pad(y, ((0, 0), (0, nblocks * c - m))).reshape(T, nblocks, c)

        def frame(args):
            t, yt = args

            def add(acc, b):
                return acc + self._rows(t, b, y.dtype).T @ yt[b], None

            n = int(np.prod(self.frame_shape))
            acc, _ = jax.lax.scan(add, jnp.zeros((n,), y.dtype), jnp.arange(nblocks))
            return acc

        return jax.lax.map(frame, (jnp.arange(T), ypad)).reshape(T, *self.frame_shape)

    def measured(self, y: jax.Array) -> jax.Array:
        return jnp.ones((), y.dtype)

"""Measurement operators y_t = A_t(x_t) + σ ε_t, one operator per frame.

Every operator acts on a whole sequence x of shape (T, H, W, C) with frames in [−1, 1]
(the generator's range) and returns measurements of shape (T, ...); frame t is measured by its
own A_t, as in the original work. Operators are ``flax.struct`` pytrees holding only arrays
(masks, matrices) plus static metadata, so they ``vmap`` over a batch of sequences, shard, and
save like any other array data. All implement one protocol, :class:`Operator`: ``A`` (forward),
``A_adjoint`` with ⟨A x, y⟩ = ⟨x, Aᵀ y⟩, ``measured`` (which entries of y are measured),
``as_image`` (the measurements as a picture) and ``measure`` (the measurement model, noise
included); one shared test checks every kind against it.

Operators (``kind`` in :class:`MeasurementSpec`; :func:`make` is the one place a kind becomes a
class):

* ``identity``   A_t = I.
* ``missing``    A_t x = M_t ⊙ x with a binary mask M_t (1 = observed) shared across channels;
                 drawn with exactly ⌊H·W·ratio⌋ missing pixels per frame, or read from a file.
* ``gaussian``   A_t ∈ R^{m×n}, n = H·W·C, i.i.d. entries N(0, 1/m) (so E‖A_t x‖² = ‖x‖²),
                 acting on the frame flattened in (H, W, C) order; stored (:class:`DenseGaussian`)
                 or regenerated in chunks (:class:`MatrixFreeGaussian`), the same matrix.
* ``separable``  Y_c = M_t X_c M_tᵀ for each channel c, M_t ∈ R^{m×H} with entries N(0, 1/m);
                 m² measurements per channel. Needs square frames.
* ``denoise``    identity with additive noise (``noise_snr_db`` required).
* ``frames``     whole frames missing: frame t is observed (A_t = I) when t is a multiple of
                 ``observe_every``, else not at all (A_t = 0): the hold-out setting of frame
                 interpolation, as a :class:`Mask` of all-ones / all-zeros frames.

Noise is part of the measurement model: an operator's static ``noise_snr_db`` (None =
noiseless) makes :meth:`Operator.measure` return y = A(x) + σ ε, ε ~ N(0, I) on the measured
entries, with σ² = (Σ‖A_t x_t‖² / number of measured entries) · 10^(−SNR/10), i.e. the SNR in
dB of the whole sequence's measurements.

The random matrices are generated row by row from ``fold_in(fold_in(key, t), i)`` so that a
row can be regenerated on its own (matrix-free operators for long videos produce the same
numbers in chunks).
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from lrgen import io


@runtime_checkable
class Operator(Protocol):
    """What every measurement operator provides; x is (T, H, W, C) in [−1, 1], y is (T, ...).

    Attributes:
      noise_snr_db: SNR in dB of the additive Gaussian noise of :meth:`measure`, None for
        noiseless measurements (static: part of the operator's structure, not an array).
      image_measurements: class constant, True when y is a frame-shaped image (then
        :meth:`as_image` is not None and Aᵀy is an image too).

    Methods:
      A(x): the clean measurements A_t x_t, stacked over t.
      A_adjoint(y): Aᵀ y, frames of x's shape; ⟨A x, y⟩ = ⟨x, Aᵀ y⟩ exactly in exact arithmetic.
      measured(y): indicator (broadcastable to y) of the entries that are actually measured.
      as_image(y): y as frames in [−1, 1] for pictures (unmeasured pixels black, −1), or None
        when the measurements are not an image.
      measure(x, key): y = A(x) + σ ε with σ from ``noise_snr_db`` (see the module docstring).
    """

    noise_snr_db: float | None
    image_measurements: ClassVar[bool]

    def A(self, x: jax.Array) -> jax.Array: ...

    def A_adjoint(self, y: jax.Array) -> jax.Array: ...

    def measured(self, y: jax.Array) -> jax.Array: ...

    def as_image(self, y: jax.Array) -> jax.Array | None: ...

    def measure(self, x: jax.Array, key: jax.Array) -> jax.Array: ...


def noise_std(y_clean: jax.Array, measured: jax.Array, snr_db: float) -> jax.Array:
    """σ giving ``snr_db`` for the measured entries of y: σ² = mean(y²) · 10^(−SNR/10)."""
    count = jnp.sum(jnp.broadcast_to(measured, y_clean.shape))
    power = jnp.sum(jnp.square(y_clean) * measured) / count
    return jnp.sqrt(power * 10.0 ** (-snr_db / 10.0))


class _MeasurementModel(struct.PyTreeNode):
    """What every operator shares: the noise model and the defaults of :class:`Operator`."""

    noise_snr_db: float | None = struct.field(pytree_node=False, default=None, kw_only=True)
    image_measurements: ClassVar[bool] = False

    def measured(self, y: jax.Array) -> jax.Array:
        """Every entry is measured (overridden by :class:`Mask`)."""
        return jnp.ones((), y.dtype)

    def as_image(self, y: jax.Array) -> jax.Array | None:
        """None: the measurements are not an image (overridden by image-valued operators)."""
        return None

    def measure(self, x: jax.Array, key: jax.Array) -> jax.Array:
        """y = A(x) + σ · measured(y) ⊙ ε, ε ~ N(0, I) drawn from ``key``; y = A(x) when noiseless."""
        y = self.A(x)
        if self.noise_snr_db is None:
            return y
        measured = self.measured(y)
        sigma = noise_std(y, measured, self.noise_snr_db)
        return y + sigma * measured * jax.random.normal(key, y.shape, y.dtype)


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


def _gaussian_matrices(key: jax.Array, num_frames: int, n: int, m: int) -> jax.Array:
    """(T, m, n): every A_t of :func:`gaussian_rows`."""
    return jax.vmap(lambda t: gaussian_rows(key, t, jnp.arange(m), n, m))(jnp.arange(num_frames))


class Identity(_MeasurementModel):
    """A_t = I: y has the shape of x (``identity``; ``denoise`` with noise)."""

    image_measurements: ClassVar[bool] = True

    @classmethod
    def from_spec(cls, spec: MeasurementSpec, key, num_frames, frame_shape) -> Identity:
        return cls()

    def A(self, x: jax.Array) -> jax.Array:
        return x

    def A_adjoint(self, y: jax.Array) -> jax.Array:
        return y

    def as_image(self, y: jax.Array) -> jax.Array:
        return y


class Mask(_MeasurementModel):
    """A_t x = M_t ⊙ x, M_t ∈ {0, 1}^{H×W×1} (1 = observed), shared across channels.

    Unobserved entries of y are 0, so with frames in [−1, 1] the residual on them is always 0,
    exactly as the original's ``2·((x/2 + 0.5) ⊙ M) − 1`` measurements. As an image, missing
    pixels are drawn black (−1), as in the original figures.

    Attributes:
      mask: (T, H, W, 1) array of 0/1.
    """

    mask: jax.Array
    image_measurements: ClassVar[bool] = True

    @classmethod
    def from_spec(cls, spec: MeasurementSpec, key, num_frames, frame_shape) -> Mask:
        """``frames``: every ``observe_every``-th frame whole; ``missing``: the file's or random masks."""
        (H, W, _), T = frame_shape, num_frames
        if spec.kind == "frames":
            observed = (jnp.arange(T) % spec.observe_every == 0).astype(jnp.float32)
            return cls(jnp.broadcast_to(observed[:, None, None, None], (T, H, W, 1)))
        if spec.mask is not None:
            return cls(jnp.asarray(spec.mask[:T], jnp.float32))
        return cls(random_mask(key, T, H, W, spec.missing_ratio))

    def A(self, x: jax.Array) -> jax.Array:
        return self.mask.astype(x.dtype) * x

    def A_adjoint(self, y: jax.Array) -> jax.Array:
        return self.mask.astype(y.dtype) * y

    def measured(self, y: jax.Array) -> jax.Array:
        return jnp.broadcast_to(self.mask.astype(y.dtype), y.shape)

    def as_image(self, y: jax.Array) -> jax.Array:
        return y + (self.mask.astype(y.dtype) - 1.0)


class DenseGaussian(_MeasurementModel):
    """y_t = A_t vec(x_t), A_t ∈ R^{m×n} with i.i.d. N(0, 1/m) entries.

    Attributes:
      matrices: (T, m, n) with n = H·W·C, acting on frames flattened in (H, W, C) order.
      frame_shape: static (H, W, C), to un-flatten the adjoint.
    """

    matrices: jax.Array
    frame_shape: tuple[int, int, int] = struct.field(pytree_node=False)

    @classmethod
    def from_spec(cls, spec: MeasurementSpec, key, num_frames, frame_shape) -> DenseGaussian:
        n = int(np.prod(frame_shape))
        return cls(_gaussian_matrices(key, num_frames, n, spec.num_measurements), tuple(frame_shape))

    def A(self, x: jax.Array) -> jax.Array:
        return jnp.einsum("tmn,tn->tm", self.matrices.astype(x.dtype), x.reshape(x.shape[0], -1))

    def A_adjoint(self, y: jax.Array) -> jax.Array:
        x = jnp.einsum("tmn,tm->tn", self.matrices.astype(y.dtype), y)
        return x.reshape(y.shape[0], *self.frame_shape)


class Separable(_MeasurementModel):
    """Y_{t,c} = M_t X_{t,c} M_tᵀ, M_t ∈ R^{m×H} with i.i.d. N(0, 1/m) entries.

    Attributes:
      matrices: (T, m, H); frames must be square (H = W). y has shape (T, m, m, C).
    """

    matrices: jax.Array

    @classmethod
    def from_spec(cls, spec: MeasurementSpec, key, num_frames, frame_shape) -> Separable:
        return cls(_gaussian_matrices(key, num_frames, frame_shape[0], spec.num_measurements))

    def A(self, x: jax.Array) -> jax.Array:
        M = self.matrices.astype(x.dtype)
        return jnp.einsum("tah,thwc,tbw->tabc", M, x, M)

    def A_adjoint(self, y: jax.Array) -> jax.Array:
        M = self.matrices.astype(y.dtype)
        return jnp.einsum("tah,tabc,tbw->thwc", M, y, M)


class MatrixFreeGaussian(_MeasurementModel):
    """The dense Gaussian operator of :class:`DenseGaussian`, never stored.

    A_t is regenerated from (key, t, row) in chunks of ``chunk`` rows inside both the forward
    and the adjoint, frame by frame (``lax.map``), so memory holds one chunk×n block at a time
    instead of T×m×n numbers; the numbers are those of :func:`gaussian_rows`, i.e. the same
    matrix :class:`DenseGaussian` stores. Each block product is rematerialised
    (``jax.checkpoint``), so reverse-mode differentiation regenerates the rows instead of keeping
    them alive.

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

    @classmethod
    def from_spec(cls, spec: MeasurementSpec, key, num_frames, frame_shape) -> MatrixFreeGaussian:
        return cls(key, tuple(frame_shape), spec.num_measurements, spec.matrix_free_chunk)

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


# The one table from a kind name to its operator class (``gaussian`` with ``matrix_free`` is
# :class:`MatrixFreeGaussian`, see :func:`operator_class`); its order is the order of KINDS.
_CLASSES: dict[str, type] = {
    "identity": Identity,
    "missing": Mask,
    "gaussian": DenseGaussian,
    "separable": Separable,
    "denoise": Identity,
    "frames": Mask,
}
KINDS = tuple(_CLASSES)
# Kinds whose measurements (and adjoint) are images: what ``--encoder_input=measurements`` needs.
IMAGE_KINDS = tuple(kind for kind, cls in _CLASSES.items() if cls.image_measurements)


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


def operator_class(spec: MeasurementSpec) -> type:
    """The operator class that measures ``spec.kind`` (raises ValueError naming --measurement)."""
    if spec.kind not in _CLASSES:
        raise ValueError(f"--measurement={spec.kind}: allowed values are {', '.join(KINDS)}")
    if spec.kind == "gaussian" and spec.matrix_free:
        return MatrixFreeGaussian
    return _CLASSES[spec.kind]


def make(spec: MeasurementSpec, key: jax.Array, num_frames: int, frame_shape: tuple[int, int, int]) -> Operator:
    """The per-frame operators of ``spec`` for ``num_frames`` frames of ``frame_shape`` (H, W, C).

    Random masks and matrices are drawn from ``key``; the operator carries ``spec.noise_snr_db``,
    so ``make(spec, ...).measure(x, noise_key)`` is the whole measurement model.
    """
    op = operator_class(spec).from_spec(spec, key, num_frames, tuple(frame_shape))
    return op.replace(noise_snr_db=spec.noise_snr_db)


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

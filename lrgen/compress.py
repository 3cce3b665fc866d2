r"""Generative video compression: a video stored as a few quantised latent numbers.

After Santurkar et al. (2018, "Generative compression") with the low-rank codes of Hyder & Asif
(2019). The generator G is shared by every video and not part of the file; a video x_0 … x_{T−1}
is stored as the codes of its key frames, and the frames between key frames are decoded from
interpolated codes (:mod:`lrgen.interpolate`).

Encoding (:func:`encode_video`):

1. Key frames K = {0, s, 2s, …} ∪ {T − 1} (s = ``keyframe_every``; the last frame is always a
   key frame so that no frame is extrapolated).
2. Their codes Z ∈ R^{n×k} (n = |K|) by latent optimisation (:class:`lrgen.recover.Recoverer`,
   latent update, identity operator, rank-r projection after every step), started from fixed
   codes or from an encoder's codes (``z0``).
3. The low-rank factorisation of Z, matching the projection used in the fit:

       pca, r ≥ 1:  Z = 1 μᵀ + C B,  μ ∈ R^k, B ∈ R^{(r−1)×k}, C ∈ R^{n×(r−1)}
       svd, r ≥ 1:  Z = C B,          B ∈ R^{r×k},     C ∈ R^{n×r}
       r = 0:       Z itself (n×k)

   with B the top right singular vectors (of Z − 1μᵀ for pca) and C = (Z − 1μᵀ) Bᵀ.
4. Uniform scalar quantisation with b bits per number: for a block v with range [lo, hi]
   (float32, stored), q = round((v − lo) / Δ), Δ = (hi − lo) / (2^b − 1), q ∈ {0 … 2^b − 1};
   v̂ = lo + q Δ (computed in float64, rounded to float32). Blocks: μ (one range), each row of B
   (one range each), each column of C (one range each); Z for r = 0 (one range). μ̂ and B̂ are
   quantised first and C is refitted to them by least squares, C = (Z − 1μ̂ᵀ) B̂ᵀ (B̂ B̂ᵀ)⁻¹,
   before it is quantised, so the coefficients absorb the basis's quantisation error.

Decoding (:func:`decode`): Ẑ = 1μ̂ᵀ + Ĉ B̂, codes at every frame time by interpolating Ẑ between
key frames (linear, or slerp) in its rank-r basis, frames G(z_t) mapped to [0, 1]. Encoder and
decoder run exactly the same host arithmetic and the same jitted generator, so the frames the
encoder reports are bit for bit those :func:`decode` returns from the file.

File format, version 1 (all integers little-endian)::

    offset  size  field
    0       4     magic b"LRGV"
    4       1     format version (1)
    5       1     layout: bits 0–1 rank type (0 none (r = 0), 1 pca, 2 svd); bit 2 interpolation
                  (0 linear, 1 slerp); bits 3–7 zero
    6       2     T  frames (≥ 1)
    8       2     H  height          10  2  W width       12  1  C channels (1 or 3)
    13      2     k  latent size     15  1  r rank        16  1  b bits per number (1–16)
    17      2     s  key-frame interval (1 … T); key frames {0, s, 2s, …} ∪ {T − 1}
    19      8     generator id: the first 8 bytes of SHA-256 over the generator's architecture
                  and weights (:func:`generator_id`)
    27      2     L  length of the generator locator
    29      L     generator locator: UTF-8 path of the generator used (a hint for the decoder;
                  the id is what is checked)
    29+L    8·m   quantisation ranges (lo, hi) as float32 pairs, one per block, in payload order
    …       P     payload: the m blocks' integers, b bits each, most significant bit first,
                  concatenated (μ, rows of B, columns of C; or Z row-major), zero-padded to a byte
    end−4   4     CRC-32 (zlib) of every preceding byte

Reading validates everything before any number is used: the size, the magic (a foreign file),
the version, that the size is exactly what the header implies (a truncated file or trailing
bytes), the CRC (an altered file), every header field's range, finite ranges with lo ≤ hi and
integers within 2^b − 1. Any failure is one ``ValueError`` naming the file and the problem.

Rate: bits per pixel = 8 · (file size in bytes) / (T · H · W), every byte of the file counted.
The generator's own size (its parameters at 32 bits) is reported apart: it is shared by every
video it decodes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import struct
import time
import zlib
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lrgen import checkpoint, interpolate, io, lowrank, measure, metrics, models, pipeline, recover

MAGIC = b"LRGV"
VERSION = 1
RANK_TYPES = ("none", "pca", "svd")  # index = code in the layout byte
_FIXED = struct.Struct("<4sBBHHHBHBBH8sH")
_RANGE = struct.Struct("<ff")
_CRC = struct.Struct("<I")
MAX_BITS = 16
IMAGE_SIZES = (32, 64, 128)
Z_INITS = ("fixed_z", "fixed_seed", "random")  # an encoder start is CompressJob.encoder


# --------------------------------------------------------------------------- configuration
@dataclasses.dataclass(frozen=True)
class CompressConfig:
    """How a video is encoded; field names are the flag names of ``experiments.compress``.

    Attributes:
      keyframe_every: s, key frames {0, s, 2s, …} ∪ {T − 1}.
      rank: r of the key-frame codes (0 = store Z itself).
      rank_type: ``pca`` (mean + r − 1 directions) or ``svd``.
      bits: b, bits per stored number (1 … 16).
      method: interpolation between key frames, ``linear`` or ``slerp``; ``auto`` (default): the
        one that predicts held-out key frames best (:func:`lrgen.interpolate.select_path`: every
        other key frame's codes interpolated from the rest), chosen before the file is written.
      iterations: latent-optimisation iterations (0 = take the encoder's codes as they are).
      z_step: α of the code update (None: 200·n/256).
      z_init: initial codes when no encoder is used (see :func:`lrgen.recover.init_codes`).
      z_seed: seed of those codes.
      similarity_weight: 1 − λ, temporal smoothness between consecutive key-frame codes.
      log_every: iterations between progress lines.
      loop: ``auto``, ``python`` or ``scan``.
    """

    keyframe_every: int = 4
    rank: int = 2
    rank_type: str = "pca"
    bits: int = 8
    method: str = interpolate.AUTO
    iterations: int = 2000
    z_step: float | None = None
    z_init: str = "fixed_z"
    z_seed: int = 100
    similarity_weight: float = 0.0
    log_every: int = 100
    loop: str = "auto"

    def recover_config(self) -> recover.RecoverConfig:
        return recover.RecoverConfig(
            update="latent",
            iterations=max(self.iterations, 1),
            rank=self.rank,
            rank_type=self.rank_type,
            similarity_weight=self.similarity_weight,
            z_step=self.z_step,
            log_every=self.log_every,
            loop=self.loop,
        )

    def validate(self, num_frames: int, z_dim: int, *, has_encoder: bool = False) -> None:
        """Raise ValueError naming the flag, the bad value and what is allowed."""
        T = num_frames
        if T > 65535:
            raise ValueError(f"--num_frames: the format stores at most 65535 frames, the video has {T}")
        if not 1 <= self.keyframe_every <= T:
            raise ValueError(f"--keyframe_every={self.keyframe_every}: must lie in [1, T] = [1, {T}]")
        if not 1 <= self.bits <= MAX_BITS:
            raise ValueError(f"--bits={self.bits}: must lie in [1, {MAX_BITS}]")
        if self.rank_type not in lowrank.RANK_TYPES:
            raise ValueError(f"--rank_type={self.rank_type}: allowed values are {', '.join(lowrank.RANK_TYPES)}")
        n = len(keyframes(T, self.keyframe_every))
        limit = min(n, z_dim, 255)
        if not 0 <= self.rank <= limit:
            raise ValueError(
                f"--rank={self.rank}: must lie in [0, min(n, k)] = [0, {limit}] "
                f"(n={n} key frames of T={T} with --keyframe_every={self.keyframe_every}, k={z_dim})"
            )
        allowed = (*interpolate.METHODS, interpolate.AUTO)
        if self.method not in allowed:
            raise ValueError(f"--method={self.method}: allowed values are {', '.join(allowed)}")
        if self.iterations < (0 if has_encoder else 1):
            raise ValueError(
                f"--iterations={self.iterations}: must be ≥ {0 if has_encoder else 1}"
                + ("" if has_encoder else " (0 is allowed only with --encoder)")
            )
        self.recover_config().validate(n, z_dim)
        recover.check_seed("--z_seed", self.z_seed)
        if self.z_init not in Z_INITS:
            raise ValueError(f"--z_init={self.z_init}: allowed values are {', '.join(Z_INITS)} (or use --encoder)")


def keyframes(num_frames: int, keyframe_every: int) -> np.ndarray:
    """Key-frame indices {0, s, 2s, …} ∪ {T − 1}, sorted (int64)."""
    return np.union1d(np.arange(0, num_frames, keyframe_every), [num_frames - 1]).astype(np.int64)


def generator_id(spec: models.GeneratorSpec, params: Any) -> bytes:
    """First 8 bytes of SHA-256 over the architecture (JSON) and every weight (float32, C order).

    Leaves are taken in flax's sorted-key order with their path and shape, so the same weights
    give the same id whether loaded from an .npz or an lrgen checkpoint, and a generator that
    differs in any weight or in shape gives another. Architecture fields left at their default
    value are not hashed (besides k, the widths and the channels), so a field added to
    :class:`lrgen.models.GeneratorSpec` later does not change the id of existing generators.
    """
    h = hashlib.sha256(json.dumps(_canonical_spec(spec), sort_keys=True).encode())
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        a = np.ascontiguousarray(np.asarray(leaf, dtype="<f4"))
        h.update(f"{jax.tree_util.keystr(path)}:{a.shape}".encode())
        h.update(a.tobytes())
    return h.digest()[:8]


def _canonical_spec(spec: models.GeneratorSpec) -> dict:
    d = spec.to_dict()
    for f in dataclasses.fields(spec):
        if f.name not in ("z_dim", "features", "channels") and f.default is not dataclasses.MISSING:
            if getattr(spec, f.name) == f.default:
                d.pop(f.name, None)
    return d


def generator_bytes(params: Any) -> int:
    """Size of the generator's parameters at 32 bits each (shared by all videos)."""
    return 4 * sum(int(np.size(p)) for p in jax.tree.leaves(params))


# --------------------------------------------------------------------------- quantisation
def quantise(v: np.ndarray, bits: int) -> tuple[np.ndarray, float, float]:
    """(q, lo, hi): q = round((v − lo)/Δ) ∈ {0 … 2^b − 1}, Δ = (hi − lo)/(2^b − 1).

    lo and hi are the block's min and max rounded to float32 (the values stored), so the
    encoder quantises against exactly the range the decoder reads.
    """
    v = np.asarray(v, np.float64)
    lo, hi = float(np.float32(v.min())), float(np.float32(v.max()))
    levels = (1 << bits) - 1
    if hi <= lo:
        return np.zeros(v.shape, np.uint32), lo, max(lo, hi)
    q = np.round((v - lo) * (levels / (hi - lo)))
    return np.clip(q, 0, levels).astype(np.uint32), lo, hi


def dequantise(q: np.ndarray, lo: float, hi: float, bits: int) -> np.ndarray:
    """v̂ = lo + q·(hi − lo)/(2^b − 1), in float64, returned as float32."""
    levels = (1 << bits) - 1
    return (np.float64(lo) + q.astype(np.float64) * ((np.float64(hi) - np.float64(lo)) / levels)).astype(np.float32)


def pack_bits(q: np.ndarray, bits: int) -> bytes:
    """Integers < 2^b as b-bit fields, most significant bit first, zero-padded to a byte."""
    q = np.asarray(q, np.uint32).reshape(-1)
    shifts = np.arange(bits - 1, -1, -1, dtype=np.uint32)
    fields = ((q[:, None] >> shifts[None, :]) & 1).astype(np.uint8)
    return np.packbits(fields.reshape(-1)).tobytes()


def unpack_bits(data: bytes, count: int, bits: int) -> np.ndarray:
    """Inverse of :func:`pack_bits` for ``count`` integers."""
    flat = np.unpackbits(np.frombuffer(data, np.uint8))[: count * bits].reshape(count, bits).astype(np.uint32)
    return flat @ (np.uint32(1) << np.arange(bits - 1, -1, -1, dtype=np.uint32))


def payload_bytes(count: int, bits: int) -> int:
    return (count * bits + 7) // 8


# --------------------------------------------------------------------------- the container
@dataclasses.dataclass(frozen=True)
class Header:
    """Everything a decoder needs besides the generator (see the module docstring)."""

    num_frames: int
    height: int
    width: int
    channels: int
    z_dim: int
    rank: int
    rank_type: str  # "none" when rank == 0
    bits: int
    keyframe_every: int
    method: str
    generator_id: bytes
    generator_path: str

    @property
    def keyframes(self) -> np.ndarray:
        return keyframes(self.num_frames, self.keyframe_every)

    def blocks(self) -> list[tuple[str, tuple[int, ...]]]:
        """(name, shape) of every quantised block, in payload order."""
        n, k, r = len(self.keyframes), self.z_dim, self.rank
        if self.rank_type == "none":
            return [("codes", (n, k))]
        d = r - 1 if self.rank_type == "pca" else r
        out = [("mean", (k,))] if self.rank_type == "pca" else []
        out += [(f"basis{i}", (k,)) for i in range(d)]
        out += [(f"coeffs{i}", (n,)) for i in range(d)]
        return out

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["generator_id"] = self.generator_id.hex()
        d["keyframes"] = self.keyframes.tolist()
        return d


@dataclasses.dataclass(frozen=True)
class Codes:
    """The stored codes: header, per-block (integers, lo, hi), and the dequantised Ẑ (n, k)."""

    header: Header
    blocks: dict[str, tuple[np.ndarray, float, float]]

    def z(self) -> np.ndarray:
        """Ẑ = 1μ̂ᵀ + Ĉ B̂ (or the stored Z), float32 (n, k), computed in float64."""
        h = self.header
        deq = {name: dequantise(q, lo, hi, h.bits).astype(np.float64) for name, (q, lo, hi) in self.blocks.items()}
        if h.rank_type == "none":
            return deq["codes"].reshape(len(h.keyframes), h.z_dim).astype(np.float32)
        d = h.rank - 1 if h.rank_type == "pca" else h.rank
        n = len(h.keyframes)
        z = np.zeros((n, h.z_dim)) if h.rank_type == "svd" else np.broadcast_to(deq["mean"], (n, h.z_dim)).copy()
        for i in range(d):
            z += np.outer(deq[f"coeffs{i}"], deq[f"basis{i}"])
        return z.astype(np.float32)


def quantise_codes(z: np.ndarray, header: Header) -> Codes:
    """Factorise codes Z (n, k) as the header says and quantise every block (module docstring)."""
    z = np.asarray(z, np.float64)
    h, b = header, header.bits
    blocks: dict[str, tuple[np.ndarray, float, float]] = {}
    if h.rank_type == "none":
        blocks["codes"] = quantise(z.reshape(-1), b)
        return Codes(h, blocks)
    d = h.rank - 1 if h.rank_type == "pca" else h.rank
    if h.rank_type == "pca":
        blocks["mean"] = quantise(z.mean(axis=0), b)
        mu = dequantise(*blocks["mean"], b).astype(np.float64)
    else:
        mu = np.zeros(z.shape[1])
    centred = z - mu
    if d > 0:
        _, _, vh = np.linalg.svd(centred, full_matrices=False)
        basis = []
        for i in range(d):
            blocks[f"basis{i}"] = quantise(vh[i], b)
            basis.append(dequantise(*blocks[f"basis{i}"], b).astype(np.float64))
        B = np.stack(basis)
        coeffs = np.linalg.lstsq(B.T, centred.T, rcond=None)[0].T  # (n, d): least squares on B̂
        for i in range(d):
            blocks[f"coeffs{i}"] = quantise(coeffs[:, i], b)
    return Codes(h, blocks)


def to_bytes(codes: Codes) -> bytes:
    """Serialise (format version 1, module docstring)."""
    h = codes.header
    path = h.generator_path.encode("utf-8")
    if len(path) > 65535:
        raise ValueError(f"--generator={h.generator_path}: path longer than 65535 bytes")
    layout = RANK_TYPES.index(h.rank_type) | (interpolate.METHODS.index(h.method) << 2)
    parts = [
        _FIXED.pack(
            MAGIC,
            VERSION,
            layout,
            h.num_frames,
            h.height,
            h.width,
            h.channels,
            h.z_dim,
            h.rank,
            h.bits,
            h.keyframe_every,
            h.generator_id,
            len(path),
        ),
        path,
    ]
    names = [name for name, _ in h.blocks()]
    parts += [_RANGE.pack(codes.blocks[n][1], codes.blocks[n][2]) for n in names]
    parts.append(pack_bits(np.concatenate([codes.blocks[n][0].reshape(-1) for n in names]), h.bits))
    body = b"".join(parts)
    return body + _CRC.pack(zlib.crc32(body))


def from_bytes(data: bytes, where: str = "input") -> Codes:
    """Parse and fully validate a compressed video; raise ValueError naming ``where`` otherwise."""
    size = len(data)
    if size < len(MAGIC) or data[: len(MAGIC)] != MAGIC:
        raise ValueError(f"{where}: not an lrgen compressed video (the file does not start with {MAGIC!r})")
    if size < _FIXED.size + _CRC.size:
        raise ValueError(f"{where}: truncated: {size} bytes, shorter than the {_FIXED.size + _CRC.size}-byte minimum")
    (_, version, layout, T, H, W, C, k, r, bits, every, gid, plen) = _FIXED.unpack_from(data)
    if version != VERSION:
        raise ValueError(f"{where}: format version {version} is not supported (this lrgen reads version {VERSION})")
    # The size check needs only fields that bound the payload; check those first.
    if not (1 <= bits <= MAX_BITS and 0 <= (layout & 3) < len(RANK_TYPES) and 1 <= every <= max(T, 1) and T >= 1):
        raise _invalid(where, f"layout={layout}, T={T}, bits={bits}, keyframe_every={every}")
    rank_type = RANK_TYPES[layout & 3]
    method_code = (layout >> 2) & 1
    header = Header(T, H, W, C, k, r, rank_type, bits, every, interpolate.METHODS[method_code], gid, "")
    if rank_type != "none" and not 1 <= r <= k:
        raise _invalid(where, f"rank={r} with k={k}")
    blocks = header.blocks()
    count = sum(math.prod(s) for _, s in blocks)
    expected = _FIXED.size + plen + _RANGE.size * len(blocks) + payload_bytes(count, bits) + _CRC.size
    if size < expected:
        raise ValueError(f"{where}: truncated: {size} bytes, the header declares {expected}")
    if size > expected:
        raise ValueError(
            f"{where}: {size - expected} unexpected bytes after the end of the data ({expected} bytes declared)"
        )
    (crc,) = _CRC.unpack_from(data, size - _CRC.size)
    if zlib.crc32(data[: size - _CRC.size]) != crc:
        raise ValueError(f"{where}: corrupted: the CRC-32 check failed (the file was altered or damaged)")
    # From here the bytes are as written; still check every field, so a crafted file cannot
    # reach the decoder with impossible values.
    problems = []
    if layout >> 3:
        problems.append(f"reserved layout bits set ({layout:#04x})")
    if H not in IMAGE_SIZES or W != H:
        problems.append(f"frame size {H}×{W} (allowed: square {', '.join(map(str, IMAGE_SIZES))})")
    if C not in (1, 3):
        problems.append(f"channels={C} (allowed: 1, 3)")
    if k < 1:
        problems.append(f"k={k}")
    if rank_type == "none" and r != 0:
        problems.append(f"rank={r} without a factorisation")
    if r > len(header.keyframes):
        problems.append(f"rank={r} above the number of key frames {len(header.keyframes)}")
    try:
        path = data[_FIXED.size : _FIXED.size + plen].decode("utf-8")
    except UnicodeDecodeError:
        problems.append("generator locator is not UTF-8")
        path = ""
    if problems:
        raise _invalid(where, "; ".join(problems))
    header = dataclasses.replace(header, generator_path=path)
    offset = _FIXED.size + plen
    ranges = [_RANGE.unpack_from(data, offset + i * _RANGE.size) for i in range(len(blocks))]
    offset += _RANGE.size * len(blocks)
    q = unpack_bits(data[offset : size - _CRC.size], count, bits)
    out, start = {}, 0
    for (name, shape), (lo, hi) in zip(blocks, ranges):
        if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
            raise _invalid(where, f"quantisation range of {name} is [{lo}, {hi}]")
        m = math.prod(shape)
        out[name] = (q[start : start + m], float(lo), float(hi))
        start += m
    return Codes(header, out)


def _invalid(where: str, what: str) -> ValueError:
    return ValueError(f"{where}: invalid header: {what}")


def read(path: str | os.PathLike, where: str | None = None) -> Codes:
    """Read and validate a compressed video file."""
    where = where or f"--input={path}"
    if os.path.isdir(path):
        raise ValueError(f"{where}: is a directory; expected a compressed video file")
    if not os.path.isfile(path):
        raise ValueError(f"{where}: no such file")
    with open(path, "rb") as f:
        return from_bytes(f.read(), where)


def write(path: str | os.PathLike, data: bytes) -> None:
    """Write bytes atomically."""
    with io.atomic_write(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


# --------------------------------------------------------------------------- decoding
def decode(codes: Codes, spec: models.GeneratorSpec, params: Any, *, factor: int = 1) -> np.ndarray:
    """Frames (N, H, W, C) in [0, 1], N = (T − 1)·factor + 1, from stored codes and G.

    Raises:
      ValueError: the generator is not the one the codes were made with.
    """
    h = codes.header
    check_generator(h, spec, params)
    return render_keyframe_codes(
        codes.z(), h.keyframes, h.num_frames, spec, params, rank=h.rank, method=h.method, factor=factor
    )


def render_keyframe_codes(
    z: np.ndarray, keys: np.ndarray, num_frames: int, spec, params, *, rank: int, method: str, factor: int = 1
) -> np.ndarray:
    """G of the codes interpolated from key frames ``keys`` to times i/factor, in [0, 1]."""
    times = interpolate.fine_times(num_frames, factor)
    codes, _, _ = interpolate.interpolate_codes(z, np.asarray(keys, np.float64), times, rank=rank, method=method)
    return interpolate.render(spec, params, codes)


def check_generator(header: Header, spec: models.GeneratorSpec, params: Any, source: str = "") -> None:
    """Raise ValueError unless (spec, params) is the generator the header names."""
    got = generator_id(spec, params)
    if got != header.generator_id:
        raise ValueError(
            f"--generator={source or '?'}: its id {got.hex()} differs from the generator the video was compressed "
            f"with ({header.generator_id.hex()}, {header.generator_path or 'no locator'}); decode with that generator"
        )
    if (spec.image_size, spec.channels, spec.z_dim) != (header.height, header.channels, header.z_dim):
        raise ValueError(
            f"--generator={source}: makes {spec.image_size}×{spec.image_size}×{spec.channels} frames "
            f"from k={spec.z_dim}; the file needs {header.height}×{header.width}×{header.channels} "
            f"from k={header.z_dim}"
        )


# --------------------------------------------------------------------------- encoding
@dataclasses.dataclass(frozen=True)
class CompressJob:
    """One video to compress; field names are the flag names of ``experiments.compress``.

    Attributes:
      video: a frame folder, video file, .npy/.npz array or ``builtin:<name>``.
      generator: lrgen generator directory, training workdir or original .npz.
      encoder: path of a trained encoder ('' = latent optimisation only).
      image_size: frame size; None = the generator's.
      num_frames: first T frames, which must exist (0 = all; None = all, at most
        ``pipeline.DEFAULT_NUM_FRAMES``).
      grayscale: one channel; None = as many as the generator makes.
      config: how to encode.
    """

    video: str
    generator: str
    encoder: str = ""
    image_size: int | None = None
    num_frames: int | None = None
    grayscale: bool | None = None
    config: CompressConfig = dataclasses.field(default_factory=CompressConfig)


def load_encoder(path: str):
    """The encoder at ``path`` as (spec, variables), from the training module when it exists."""
    try:
        from lrgen import encoder as encoder_module  # provided by the training work (issue 3)
    except ImportError:
        encoder_module = None
    if encoder_module is None or not hasattr(encoder_module, "load_encoder"):
        raise ValueError(
            f"--encoder={path}: encoders are not available in this lrgen yet (no lrgen.encoder.load_encoder); "
            "leave --encoder empty to use latent optimisation"
        )
    return encoder_module.load_encoder(path), encoder_module.encode


def fit_codes(
    spec: models.GeneratorSpec,
    params: Any,
    frames: np.ndarray,
    config: CompressConfig,
    *,
    z0: np.ndarray | None = None,
    log: Callable[[str], None] | None = None,
) -> tuple[np.ndarray, dict]:
    """Codes (n, k) of ``frames`` (n, H, W, C) by latent optimisation with the rank-r projection.

    Starts from ``z0`` (e.g. an encoder's codes) or from ``config.z_init`` codes; with
    ``config.iterations == 0`` returns P_r(z0).
    """
    n = frames.shape[0]
    rc = config.recover_config()
    if z0 is None:
        if config.z_init not in Z_INITS:
            raise ValueError(f"--z_init={config.z_init}: allowed values are {', '.join(Z_INITS)} (or use --encoder)")
        z0 = recover.init_codes(jax.random.key(config.z_seed), n, spec.z_dim, config.z_init)
    z0 = jnp.asarray(z0, jnp.float32)
    if config.iterations == 0:
        return np.asarray(lowrank.project(z0, config.rank, config.rank_type)), {"iterations": 0, "seconds": 0.0}
    recoverer = recover.Recoverer(models.build_generator(spec), rc, n)
    problem = recover.Problem(jnp.asarray(2.0 * frames - 1.0)[None], measure.Identity())
    callback = pipeline.progress_printer(rc.iterations, log, "fit ") if log else None
    result = recoverer.run(z0[None], problem, params, truth=jnp.asarray(frames)[None], callback=callback)
    stats = {
        "iterations": rc.iterations,
        "seconds": result.seconds,
        "compile_seconds": result.compile_seconds,
        "z_step": recoverer.alpha,
        "psnr_keyframes_fit": float(metrics.psnr(result.x[0], frames)),
    }
    return np.asarray(result.z[0]), stats


def make_header(
    config: CompressConfig, frames_shape, spec: models.GeneratorSpec, params, generator_path: str
) -> Header:
    if config.method not in interpolate.METHODS:
        raise ValueError(f"make_header: method {config.method!r} must be resolved to one of {interpolate.METHODS}")
    T, H, W, C = frames_shape
    return Header(
        num_frames=T,
        height=H,
        width=W,
        channels=C,
        z_dim=spec.z_dim,
        rank=config.rank,
        rank_type="none" if config.rank == 0 else config.rank_type,
        bits=config.bits,
        keyframe_every=config.keyframe_every,
        method=config.method,
        generator_id=generator_id(spec, params),
        generator_path=generator_path,
    )


def score(x: np.ndarray, truth: np.ndarray) -> dict:
    """``psnr`` (whole sequence; None if infinite) and mean ``ssim`` of decoded frames."""
    s = interpolate.score(x, truth)
    return {"psnr": s["psnr"], "ssim": s["ssim"]}


def encode_codes(z: np.ndarray, header: Header, spec, params) -> tuple[bytes, np.ndarray]:
    """Quantise and serialise key-frame codes; return (file bytes, frames decoded from them).

    The frames are decoded from the parsed bytes, by the same code path as
    :func:`decompress_file`, so they are exactly what the decoder will produce.
    """
    data = to_bytes(quantise_codes(z, header))
    frames = decode(from_bytes(data, "encoded bytes"), spec, params)
    return data, frames


def load_video_for(
    job: CompressJob, spec: models.GeneratorSpec, log: Callable[[str], None] | None = None
) -> np.ndarray:
    """The job's frames at the generator's size and channels (checked against the flags)."""
    size = job.image_size if job.image_size is not None else spec.image_size
    gray = job.grayscale if job.grayscale is not None else spec.channels == 1
    if size != spec.image_size or (3 - 2 * gray) != spec.channels:
        raise ValueError(
            f"--generator={job.generator}: makes {spec.image_size}×{spec.image_size}×{spec.channels} frames but "
            f"--image_size={size} --{'' if gray else 'no'}grayscale asks for {size}×{size}×{1 if gray else 3}"
        )
    rj = pipeline.RecoverJob(video=job.video, image_size=size, num_frames=job.num_frames, grayscale=gray)
    frames = pipeline.load_frames(rj, log)
    if not np.all(np.isfinite(frames)):
        raise ValueError(f"--video={job.video}: frames contain NaN or infinite values")
    return frames


def compress_video(
    job: CompressJob, output: str, *, log: Callable[[str], None] = print, flags: dict | None = None
) -> dict:
    """Compress ``job.video`` into ``output`` and write the report ``output + '.json'``.

    Every check runs before anything is compiled; the file is written atomically, the report
    after it.

    Returns:
      The report: ``bpp``, ``psnr``, ``ssim``, sizes, key frames, the generator's id and size, …

    Raises:
      ValueError: a wrong input (message names the flag), nothing written.
    """
    if not job.video:
        raise ValueError("--video is required")
    if not job.generator:
        raise ValueError("--generator is required (the decoder needs the same generator)")
    io.check_output_file(output, "--output")
    io.check_output_file(output + ".json", "--output")
    inputs = {"--video": job.video, "--generator": job.generator, "--encoder": job.encoder}
    for written in (output, output + ".json"):
        io.check_not_inputs("--output", output, inputs, written=written)
    spec, params = checkpoint.load_generator(job.generator)
    enc = load_encoder(job.encoder) if job.encoder else None
    frames = load_video_for(job, spec, log)
    cfg = job.config
    cfg.validate(frames.shape[0], spec.z_dim, has_encoder=enc is not None)
    keys = keyframes(frames.shape[0], cfg.keyframe_every)
    start = time.perf_counter()
    z0 = None
    if enc is not None:
        (espec, variables), encode_fn = enc
        try:
            z0 = np.asarray(encode_fn(espec, variables, frames[keys]), np.float32)
        except ValueError as e:
            raise ValueError(f"--encoder={job.encoder}: {e}") from None
        if z0.shape != (len(keys), spec.z_dim):
            raise ValueError(
                f"--encoder={job.encoder}: gives codes of shape {z0.shape}, the generator needs k={spec.z_dim}"
            )
    log(
        f"compressing {'×'.join(map(str, frames.shape))} frames: {len(keys)} key frames (every {cfg.keyframe_every}), "
        f"rank {cfg.rank} {cfg.rank_type}, {cfg.bits} bits, {cfg.iterations} iterations"
        + (" from the encoder's codes" if enc is not None else "")
    )
    z, fit = fit_codes(spec, params, frames[keys], cfg, z0=z0, log=log)
    selection = None
    if cfg.method == interpolate.AUTO:  # the skipped frames' path, from the key frames alone
        method, selection = interpolate.select_path(
            z, keys.astype(np.float64), frames[keys], spec, params, rank=cfg.rank
        )
        cfg = dataclasses.replace(cfg, method=method)
        log(f"path between key frames chosen on held-out key frames: {method}")
    header = make_header(cfg, frames.shape, spec, params, job.generator)
    data, decoded = encode_codes(z, header, spec, params)
    unquantised = render_keyframe_codes(z, keys, frames.shape[0], spec, params, rank=cfg.rank, method=cfg.method)
    T, H, W, C = frames.shape
    s = score(decoded, frames)
    numbers = sum(math.prod(b) for _, b in header.blocks())
    out = {
        "bpp": 8.0 * len(data) / (T * H * W),
        "psnr": s["psnr"],
        "ssim": s["ssim"],
        "bytes": len(data),
        "payload_bytes": payload_bytes(numbers, cfg.bits),
        "header_bytes": len(data) - payload_bytes(numbers, cfg.bits),
        "numbers_stored": numbers,
        "psnr_keyframes": score(decoded[keys], frames[keys])["psnr"],
        "psnr_unquantised": score(unquantised, frames)["psnr"],
        "raw_bytes_8bit": T * H * W * C,
        "compression_ratio_8bit": T * H * W * C / len(data),
        "header": header.to_dict(),
        "generator": {
            "path": job.generator,
            "id": header.generator_id.hex(),
            "parameters": generator_bytes(params) // 4,
            "bytes_float32": generator_bytes(params),
            "note": "shared by every video; not counted in bpp",
        },
        "encoder": job.encoder,
        "fit": fit,
        "method_selection": selection,
        "seconds": time.perf_counter() - start,
        "config": dataclasses.asdict(cfg),
        "flags": flags or {},
        "environment": pipeline.environment(),
    }
    write(output, data)
    pipeline._write_json(output + ".json", out)
    log(
        f"{len(data)} bytes = {out['bpp']:.4f} bpp ({out['compression_ratio_8bit']:.0f}:1 vs 8-bit), "
        f"PSNR {s['psnr']:.2f} dB, SSIM {s['ssim']:.4f} → {output} "
        f"(generator {out['generator']['bytes_float32'] / 1e6:.2f} MB, shared)"
    )
    return out


OUTPUT_EXTENSIONS = (".npy", ".npz", ".mp4", ".gif")


def decompress_file(
    input_path: str, output: str, *, generator: str = "", factor: int = 1, log: Callable[[str], None] = print
) -> np.ndarray:
    """Decode ``input_path`` into ``output`` (.npy/.npz float32 frames, or an .mp4/.gif video).

    The generator is ``generator`` if given, else the locator stored in the file (a relative
    locator is tried from the current directory, then from the file's directory); its id must
    match the file's.

    Raises:
      ValueError: the file is missing, foreign, truncated, altered or invalid; the generator is
        missing or not the one the video was made with; the output name is not allowed.
    """
    ext = os.path.splitext(output)[1].lower()
    if ext not in OUTPUT_EXTENSIONS:
        raise ValueError(
            f"--output={output}: unsupported extension {ext!r}; allowed are {', '.join(OUTPUT_EXTENSIONS)}"
        )
    io.check_output_file(output, "--output")
    io.check_not_inputs("--output", output, {"--input": input_path, "--generator": generator})
    if not 1 <= factor <= interpolate.MAX_FACTOR:
        raise ValueError(f"--factor={factor}: must lie in [1, {interpolate.MAX_FACTOR}]")
    codes = read(input_path)
    h = codes.header
    path = generator
    if not path:
        path = h.generator_path
        beside = os.path.join(os.path.dirname(os.path.abspath(input_path)), path)
        if path and not os.path.exists(path) and not os.path.isabs(path) and os.path.exists(beside):
            path = beside
        if not path or not os.path.exists(path):
            raise ValueError(
                f"--input={input_path}: its generator {h.generator_path or '(none recorded)'} is not found here; "
                "pass --generator=<the generator it was compressed with>"
            )
    io.check_not_inputs("--output", output, {"its generator": path})
    spec, params = checkpoint.load_generator(path)
    check_generator(h, spec, params, path)
    frames = decode(codes, spec, params, factor=factor)
    if ext == ".npy":
        with io.atomic_write(output) as tmp:
            np.save(tmp, frames)
    elif ext == ".npz":
        with io.atomic_write(output) as tmp:
            np.savez_compressed(tmp, frames=frames)
    else:
        io.write_video(output, frames, fps=min(8 * factor, 60))
    log(f"decoded {frames.shape[0]} frames of {h.height}×{h.width}×{h.channels} from {input_path} → {output}")
    return frames

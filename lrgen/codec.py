r"""The lrgen compressed-video bitstream: a few quantised latent numbers, and nothing else.

Pure bytes ↔ numbers, no generator run (the job that fits the codes and decodes the frames is
:mod:`lrgen.compression`). A video x_0 … x_{T−1} is stored as the codes Z ∈ R^{n×k} of its key
frames K = {0, s, 2s, …} ∪ {T − 1} (:func:`keyframes`), factorised as
(:func:`lrgen.lowrank.factorise`, matching the rank-r projection used in the fit)

    pca, r ≥ 1:  Z = 1 μᵀ + C B,  μ ∈ R^k, B ∈ R^{(r−1)×k}, C ∈ R^{n×(r−1)}
    svd, r ≥ 1:  Z = C B,          B ∈ R^{r×k},     C ∈ R^{n×r}
    r = 0:       Z itself (n×k)

with B the top right singular vectors (of Z − 1μ̂ᵀ for pca) and C = (Z − 1μᵀ) Bᵀ, then
quantised uniformly with b bits per number (:func:`quantise_codes`): for a block v with range
[lo, hi] (float32, stored), q = round((v − lo) / Δ), Δ = (hi − lo) / (2^b − 1),
q ∈ {0 … 2^b − 1}; v̂ = lo + q Δ (computed in float64, rounded to float32). Blocks: μ (one
range), each row of B (one range each), each column of C (one range each); Z for r = 0 (one
range). μ̂ is quantised first and B is taken from Z − 1μ̂ᵀ; B̂ is quantised next and C is
refitted to it by least squares, C = (Z − 1μ̂ᵀ) B̂ᵀ (B̂ B̂ᵀ)⁻¹, before it is quantised, so the
coefficients absorb the basis's quantisation error. Ẑ = 1μ̂ᵀ + Ĉ B̂ (:meth:`Codes.z`).

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
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import struct
import zlib
from typing import Any

import jax
import numpy as np

from lrgen import io, lowrank
from lrgen.latent_paths import METHODS
from lrgen.nets import generators

MAGIC = b"LRGV"
VERSION = 1
RANK_TYPES = ("none", "pca", "svd")  # index = code in the layout byte
_FIXED = struct.Struct("<4sBBHHHBHBBH8sH")
_RANGE = struct.Struct("<ff")
_CRC = struct.Struct("<I")
MAX_BITS = 16
IMAGE_SIZES = (32, 64, 128)


def keyframes(num_frames: int, keyframe_every: int) -> np.ndarray:
    """Key-frame indices {0, s, 2s, …} ∪ {T − 1}, sorted (int64)."""
    return np.union1d(np.arange(0, num_frames, keyframe_every), [num_frames - 1]).astype(np.int64)


def generator_id(spec: generators.GeneratorSpec, params: Any) -> bytes:
    """First 8 bytes of SHA-256 over the architecture (JSON) and every weight (float32, C order).

    Leaves are taken in flax's sorted-key order with their path and shape, so the same weights
    give the same id whether loaded from an .npz or an lrgen checkpoint, and a generator that
    differs in any weight or in shape gives another. Architecture fields left at their default
    value are not hashed (besides k, the widths and the channels), so a field added to
    :class:`lrgen.nets.generators.GeneratorSpec` later does not change the id of existing generators.
    """
    h = hashlib.sha256(json.dumps(_canonical_spec(spec), sort_keys=True).encode())
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        a = np.ascontiguousarray(np.asarray(leaf, dtype="<f4"))
        h.update(f"{jax.tree_util.keystr(path)}:{a.shape}".encode())
        h.update(a.tobytes())
    return h.digest()[:8]


def _canonical_spec(spec: generators.GeneratorSpec) -> dict:
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
    """Factorise codes Z (n, k) as the header says and quantise every block (module docstring).

    Deterministic float64 host arithmetic: the same codes give the same bytes on every machine.
    """
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
        # B: the top d right singular vectors of Z − 1μ̂ᵀ (svd: μ̂ = 0), the subspace of the fit's projection.
        _, _, basis = lowrank.factorise(centred, d, "svd")
        for i in range(d):
            blocks[f"basis{i}"] = quantise(basis[i], b)
        B = np.stack([dequantise(*blocks[f"basis{i}"], b).astype(np.float64) for i in range(d)])
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
    layout = RANK_TYPES.index(h.rank_type) | (METHODS.index(h.method) << 2)
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
    header = Header(T, H, W, C, k, r, rank_type, bits, every, METHODS[method_code], gid, "")
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


def check_generator(header: Header, spec: generators.GeneratorSpec, params: Any, source: str = "") -> None:
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

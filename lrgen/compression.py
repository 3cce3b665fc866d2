r"""Generative video compression: a video stored as a few quantised latent numbers (the job).

After Santurkar et al. (2018, "Generative compression") with the low-rank codes of Hyder & Asif
(2019). The generator G is shared by every video and not part of the file; a video x_0 … x_{T−1}
is stored as the codes of its key frames, and the frames between key frames are decoded from
interpolated codes (:mod:`lrgen.latent_paths`). The bytes themselves are :mod:`lrgen.codec`.

Encoding (:func:`compress_video`):

1. Key frames K = {0, s, 2s, …} ∪ {T − 1} (s = ``keyframe_every``; the last frame is always a
   key frame so that no frame is extrapolated).
2. Their codes Z ∈ R^{n×k} (n = |K|) by latent optimisation (:func:`fit_codes`: identity
   operator, rank-r projection after every step), from fixed codes or from an encoder's codes.
3. The path between key frames (linear or slerp), chosen on held-out key frames when ``auto``.
4. The rank-r factorisation of Z, quantised to b bits per number (:func:`lrgen.codec.quantise_codes`).

Decoding (:func:`decode`): Ẑ = 1μ̂ᵀ + Ĉ B̂, codes at every frame time by interpolating Ẑ between
key frames in its rank-r basis, frames G(z_t) mapped to [0, 1]. Encoder and decoder run exactly
the same host arithmetic and the same jitted generator, so the frames the encoder reports are
bit for bit those :func:`decode` returns from the file.

Rate: bits per pixel = 8 · (file size in bytes) / (T · H · W), every byte of the file counted;
the generator's own size (its parameters at 32 bits, shared by every video) is reported apart.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lrgen import (
    checkpoint,
    codec,
    config,
    encoder,
    engine,
    io,
    jobs,
    lowrank,
    metrics,
    outputs,
    pixels,
    recovery,
    solver,
)
from lrgen.latent_paths import MAX_FACTOR, METHODS, fine_times, interpolate_codes, render
from lrgen.nets import generators
from lrgen.observed import fit_frames
from lrgen.selection import AUTO, select_path
from lrgen.selection import score as _score

Z_INITS = ("fixed_z", "fixed_seed", "random")  # an encoder start is CompressJob.encoder
OUTPUT_EXTENSIONS = (".npy", ".npz", ".mp4", ".gif")


@dataclasses.dataclass(frozen=True)
class CompressConfig:
    """How a video is encoded; field names are the flag names of ``experiments.compress``.

    Attributes:
      keyframe_every: s, key frames {0, s, 2s, …} ∪ {T − 1}.
      rank: r of the key-frame codes (0 = store Z itself).
      rank_type: ``pca`` (mean + r − 1 directions) or ``svd``.
      bits: b, bits per stored number (1 … 16).
      method: interpolation between key frames, ``linear`` or ``slerp``; ``auto`` (default): the
        one that predicts held-out key frames best (:func:`lrgen.selection.select_path`: every
        other key frame's codes interpolated from the rest), chosen before the file is written.
      iterations: latent-optimisation iterations (0 = take the encoder's codes as they are).
      z_step: α of the code update (None: 200·n/256).
      z_init: initial codes when no encoder is used (see :func:`lrgen.engine.init_codes`).
      z_seed: seed of those codes.
      similarity_weight: 1 − λ, temporal smoothness between consecutive key-frame codes.
      log_every: iterations between progress lines.
      loop: ``auto``, ``python`` or ``scan``.
    """

    keyframe_every: int = 4
    rank: int = 2
    rank_type: str = "pca"
    bits: int = 8
    method: str = AUTO
    iterations: int = 2000
    z_step: float | None = None
    z_init: str = "fixed_z"
    z_seed: int = 100
    similarity_weight: float = 0.0
    log_every: int = 100
    loop: str = "auto"

    def recover_config(self) -> config.RecoverConfig:
        return config.RecoverConfig(
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
        if not 1 <= self.bits <= codec.MAX_BITS:
            raise ValueError(f"--bits={self.bits}: must lie in [1, {codec.MAX_BITS}]")
        if self.rank_type not in lowrank.RANK_TYPES:
            raise ValueError(f"--rank_type={self.rank_type}: allowed values are {', '.join(lowrank.RANK_TYPES)}")
        n = len(codec.keyframes(T, self.keyframe_every))
        limit = min(n, z_dim, 255)
        if not 0 <= self.rank <= limit:
            raise ValueError(
                f"--rank={self.rank}: must lie in [0, min(n, k)] = [0, {limit}] "
                f"(n={n} key frames of T={T} with --keyframe_every={self.keyframe_every}, k={z_dim})"
            )
        allowed = (*METHODS, AUTO)
        if self.method not in allowed:
            raise ValueError(f"--method={self.method}: allowed values are {', '.join(allowed)}")
        if self.iterations < (0 if has_encoder else 1):
            raise ValueError(
                f"--iterations={self.iterations}: must be ≥ {0 if has_encoder else 1}"
                + ("" if has_encoder else " (0 is allowed only with --encoder)")
            )
        self.recover_config().validate(n, z_dim)
        config.check_seed("--z_seed", self.z_seed)
        if self.z_init not in Z_INITS:
            raise ValueError(f"--z_init={self.z_init}: allowed values are {', '.join(Z_INITS)} (or use --encoder)")


@dataclasses.dataclass(frozen=True)
class CompressJob:
    """One video to compress; field names are the flag names of ``experiments.compress``.

    Attributes:
      video: a frame folder, video file, .npy/.npz array or ``builtin:<name>``.
      generator: lrgen generator directory, training workdir or original .npz.
      encoder: path of a trained encoder ('' = latent optimisation only).
      image_size: frame size; None = the generator's.
      num_frames: first T frames, which must exist (0 = all; None = all, at most
        ``jobs.DEFAULT_NUM_FRAMES``).
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


# --------------------------------------------------------------------------- decoding
def decode(codes: codec.Codes, spec: generators.GeneratorSpec, params: Any, *, factor: int = 1) -> np.ndarray:
    """Frames (N, H, W, C) in [0, 1], N = (T − 1)·factor + 1, from stored codes and G.

    Raises:
      ValueError: the generator is not the one the codes were made with.
    """
    h = codes.header
    codec.check_generator(h, spec, params)
    return render_keyframe_codes(
        codes.z(), h.keyframes, h.num_frames, spec, params, rank=h.rank, method=h.method, factor=factor
    )


def render_keyframe_codes(
    z: np.ndarray, keys: np.ndarray, num_frames: int, spec, params, *, rank: int, method: str, factor: int = 1
) -> np.ndarray:
    """G of the codes interpolated from key frames ``keys`` to times i/factor, in [0, 1]."""
    times = fine_times(num_frames, factor)
    codes, _, _ = interpolate_codes(z, np.asarray(keys, np.float64), times, rank=rank, method=method)
    return render(spec, params, codes)


# --------------------------------------------------------------------------- encoding
def load_video_for(
    job: CompressJob, spec: generators.GeneratorSpec, log: Callable[[str], None] | None = None
) -> np.ndarray:
    """The job's frames at the generator's size and channels (checked against the flags)."""
    size = job.image_size if job.image_size is not None else spec.image_size
    gray = job.grayscale if job.grayscale is not None else spec.channels == 1
    if size != spec.image_size or (3 - 2 * gray) != spec.channels:
        raise ValueError(
            f"--generator={job.generator}: makes {spec.image_size}×{spec.image_size}×{spec.channels} frames but "
            f"--image_size={size} --{'' if gray else 'no'}grayscale asks for {size}×{size}×{1 if gray else 3}"
        )
    frames = jobs.load_video_frames(job.video, image_size=size, grayscale=gray, num_frames=job.num_frames, log=log)
    if not np.all(np.isfinite(frames)):
        raise ValueError(f"--video={job.video}: frames contain NaN or infinite values")
    return frames


def fit_codes(
    spec: generators.GeneratorSpec,
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
        z0 = engine.init_codes(jax.random.key(config.z_seed), n, spec.z_dim, config.z_init)
    z0 = jnp.asarray(z0, jnp.float32)
    if config.iterations == 0:
        return np.asarray(lowrank.project(z0, config.rank, config.rank_type)), {"iterations": 0, "seconds": 0.0}
    recoverer = solver.Recoverer(generators.build_generator(spec), rc, n)
    callback = recovery.progress_printer(rc.iterations, log, "fit ") if log else None
    z, x, _, timing = fit_frames(recoverer, z0, pixels.to_model(frames), params, frames, callback)
    stats = {
        "iterations": rc.iterations,
        "seconds": timing["seconds"],
        "compile_seconds": timing["compile_seconds"],
        "z_step": recoverer.alpha,
        "psnr_keyframes_fit": float(metrics.psnr(x, frames)),
    }
    return z, stats


def make_header(
    config: CompressConfig, frames_shape, spec: generators.GeneratorSpec, params, generator_path: str
) -> codec.Header:
    """The file's header for ``config`` (its method resolved), the frames' shape and the generator."""
    if config.method not in METHODS:
        raise ValueError(f"make_header: method {config.method!r} must be resolved to one of {METHODS}")
    T, H, W, C = frames_shape
    rank_type = "none" if config.rank == 0 else config.rank_type
    shape = dict(num_frames=T, height=H, width=W, channels=C, z_dim=spec.z_dim)
    coding = dict(rank=config.rank, rank_type=rank_type, bits=config.bits, keyframe_every=config.keyframe_every)
    gid = codec.generator_id(spec, params)
    return codec.Header(**shape, **coding, method=config.method, generator_id=gid, generator_path=generator_path)


def score(x: np.ndarray, truth: np.ndarray) -> dict:
    """``psnr`` (whole sequence; None if infinite) and mean ``ssim`` of decoded frames."""
    s = _score(x, truth)
    return {"psnr": s["psnr"], "ssim": s["ssim"]}


def encode_codes(z: np.ndarray, header: codec.Header, spec, params) -> tuple[bytes, np.ndarray]:
    """Quantise and serialise key-frame codes; return (file bytes, frames decoded from them).

    The frames are decoded from the parsed bytes, by the same code path as
    :func:`decompress_file`, so they are exactly what the decoder will produce.
    """
    data = codec.to_bytes(codec.quantise_codes(z, header))
    frames = decode(codec.from_bytes(data, "encoded bytes"), spec, params)
    return data, frames


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
    _check_outputs(job, output)
    spec, params = checkpoint.load_generator(job.generator)
    enc = checkpoint.load_encoder(job.encoder) if job.encoder else None
    frames = load_video_for(job, spec, log)
    cfg = job.config
    cfg.validate(frames.shape[0], spec.z_dim, has_encoder=enc is not None)
    keys = codec.keyframes(frames.shape[0], cfg.keyframe_every)
    start = time.perf_counter()
    z0 = None if enc is None else _encoder_codes(job.encoder, enc, frames[keys], spec.z_dim)
    log(
        f"compressing {'×'.join(map(str, frames.shape))} frames: {len(keys)} key frames (every {cfg.keyframe_every}), "
        f"rank {cfg.rank} {cfg.rank_type}, {cfg.bits} bits, {cfg.iterations} iterations"
        + (" from the encoder's codes" if enc is not None else "")
    )
    z, fit = fit_codes(spec, params, frames[keys], cfg, z0=z0, log=log)
    selection = None
    if cfg.method == AUTO:  # the skipped frames' path, from the key frames alone
        method, selection = select_path(z, keys.astype(np.float64), frames[keys], spec, params, rank=cfg.rank)
        cfg = dataclasses.replace(cfg, method=method)
        log(f"path between key frames chosen on held-out key frames: {method}")
    header = make_header(cfg, frames.shape, spec, params, job.generator)
    data, decoded = encode_codes(z, header, spec, params)
    unquantised = render_keyframe_codes(z, keys, frames.shape[0], spec, params, rank=cfg.rank, method=cfg.method)
    out = {
        **_report(data, header, frames, decoded, unquantised, params, job),
        "fit": fit,
        "method_selection": selection,
        "seconds": time.perf_counter() - start,
        "config": dataclasses.asdict(cfg),
        "flags": flags or {},
        "environment": outputs.environment(),
    }
    codec.write(output, data)
    outputs.write_json(output + ".json", out)
    log(
        f"{len(data)} bytes = {out['bpp']:.4f} bpp ({out['compression_ratio_8bit']:.0f}:1 vs 8-bit), "
        f"PSNR {out['psnr']:.2f} dB, SSIM {out['ssim']:.4f} → {output} "
        f"(generator {out['generator']['bytes_float32'] / 1e6:.2f} MB, shared)"
    )
    return out


def _check_outputs(job: CompressJob, output: str) -> None:
    """The required inputs are named and ``output`` (and its report) can be written over no input."""
    if not job.video:
        raise ValueError("--video is required")
    if not job.generator:
        raise ValueError("--generator is required (the decoder needs the same generator)")
    io.check_output_file(output, "--output")
    io.check_output_file(output + ".json", "--output")
    inputs = {"--video": job.video, "--generator": job.generator, "--encoder": job.encoder}
    for written in (output, output + ".json"):
        io.check_not_inputs("--output", output, inputs, written=written)


def _encoder_codes(path: str, loaded, frames: np.ndarray, z_dim: int) -> np.ndarray:
    """Codes E(frames) (n, k) of the trained encoder ``loaded`` = (spec, variables) from ``path``."""
    espec, variables = loaded
    try:
        z0 = np.asarray(encoder.encode(espec, variables, frames), np.float32)
    except ValueError as e:
        raise ValueError(f"--encoder={path}: {e}") from None
    if z0.shape != (frames.shape[0], z_dim):
        raise ValueError(f"--encoder={path}: gives codes of shape {z0.shape}, the generator needs k={z_dim}")
    return z0


def _report(data: bytes, header: codec.Header, frames, decoded, unquantised, params, job: CompressJob) -> dict:
    """The rate, the distortion of the decoded frames (and without quantisation), the sizes."""
    T, H, W, C = frames.shape
    keys = header.keyframes
    s = score(decoded, frames)
    numbers = sum(math.prod(b) for _, b in header.blocks())
    return {
        "bpp": 8.0 * len(data) / (T * H * W),
        "psnr": s["psnr"],
        "ssim": s["ssim"],
        "bytes": len(data),
        "payload_bytes": codec.payload_bytes(numbers, header.bits),
        "header_bytes": len(data) - codec.payload_bytes(numbers, header.bits),
        "numbers_stored": numbers,
        "psnr_keyframes": score(decoded[keys], frames[keys])["psnr"],
        "psnr_unquantised": score(unquantised, frames)["psnr"],
        "raw_bytes_8bit": T * H * W * C,
        "compression_ratio_8bit": T * H * W * C / len(data),
        "header": header.to_dict(),
        "generator": {
            "path": job.generator,
            "id": header.generator_id.hex(),
            "parameters": codec.generator_bytes(params) // 4,
            "bytes_float32": codec.generator_bytes(params),
            "note": "shared by every video; not counted in bpp",
        },
        "encoder": job.encoder,
    }


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
    if not 1 <= factor <= MAX_FACTOR:
        raise ValueError(f"--factor={factor}: must lie in [1, {MAX_FACTOR}]")
    codes = codec.read(input_path)
    h = codes.header
    path = generator or _stored_generator(input_path, h)
    io.check_not_inputs("--output", output, {"its generator": path})
    spec, params = checkpoint.load_generator(path)
    codec.check_generator(h, spec, params, path)
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


def _stored_generator(input_path: str, header: codec.Header) -> str:
    """The generator the file names: its locator from here, else from the file's directory."""
    path = header.generator_path
    beside = os.path.join(os.path.dirname(os.path.abspath(input_path)), path)
    if path and not os.path.exists(path) and not os.path.isabs(path) and os.path.exists(beside):
        path = beside
    if not path or not os.path.exists(path):
        raise ValueError(
            f"--input={input_path}: its generator {header.generator_path or '(none recorded)'} is not found here; "
            "pass --generator=<the generator it was compressed with>"
        )
    return path

"""Generative compression: quantisation, the file format and its validation, exact decoding."""

import dataclasses
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lrgen import checkpoint, codec, compression, latent_paths, lowrank
from lrgen.nets import generators, networks

ROOT = Path(__file__).resolve().parents[1]
SPEC = generators.GeneratorSpec(z_dim=8, features=(16, 8, 4), channels=1)  # 32×32, tiny
_init = jax.jit(lambda key: generators.init_generator(SPEC, key))  # one compile, not one per op


def _params(seed=42):
    # The PyTorch 0.4 init makes a tiny network's output almost constant; scale it for contrast.
    return jax.tree.map(lambda w: 3.0 * w, _init(jax.random.key(seed)))


@pytest.fixture(scope="module")
def gen(tmp_path_factory):
    """A saved tiny generator (the weights of ``_params()``), shared by the tests of this file."""
    path = tmp_path_factory.mktemp("generator") / "gen"
    checkpoint.save_generator(path, SPEC, _params())
    return path


def _header(T=9, every=4, rank=2, rank_type="pca", bits=6, method="linear", params=None):
    return codec.Header(
        num_frames=T,
        height=32,
        width=32,
        channels=1,
        z_dim=SPEC.z_dim,
        rank=rank,
        rank_type=rank_type if rank else "none",
        bits=bits,
        keyframe_every=every,
        method=method,
        generator_id=codec.generator_id(SPEC, params) if params is not None else b"12345678",
        generator_path="gen",
    )


def _codes_on_a_line(n, seed=0):
    a, b = np.random.default_rng(seed).normal(size=(2, SPEC.z_dim))
    return a + np.linspace(0, 1, n)[:, None] * b


# --------------------------------------------------------------------------- quantisation
@pytest.mark.parametrize("bits", [1, 2, 5, 8, 13, 16])
def test_quantisation_error_is_at_most_half_a_step_and_bits_pack_losslessly(bits):
    v = np.random.default_rng(bits).normal(size=37) * 3
    q, lo, hi = codec.quantise(v, bits)
    assert q.max() <= (1 << bits) - 1 and lo == v.min().astype(np.float32) and hi == v.max().astype(np.float32)
    step = (hi - lo) / ((1 << bits) - 1)
    assert np.max(np.abs(codec.dequantise(q, lo, hi, bits) - v)) <= step / 2 + 1e-5 * np.abs(v).max()
    packed = codec.pack_bits(q, bits)
    assert len(packed) == codec.payload_bytes(37, bits)
    np.testing.assert_array_equal(codec.unpack_bits(packed, 37, bits), q)


def test_constant_block_quantises_exactly():
    q, lo, hi = codec.quantise(np.full(5, 0.25), 4)
    np.testing.assert_array_equal(codec.dequantise(q, lo, hi, 4), np.full(5, 0.25, np.float32))


@pytest.mark.parametrize(("rank", "rank_type"), [(2, "pca"), (3, "pca"), (1, "pca"), (2, "svd"), (0, "pca")])
def test_factorised_codes_converge_to_the_codes_as_bits_grow(rank, rank_type):
    """Z in the rank-r set is reproduced to within the quantisation error; 16 bits ≈ exact."""
    z = _codes_on_a_line(3, seed=rank)
    if rank_type == "svd":
        z = z - z.mean(0)  # a line through the origin: rank 1 ≤ 2 linear
    if rank == 1:
        z = np.broadcast_to(z[0], z.shape)
    errs = []
    for bits in (4, 8, 16):
        codes = codec.quantise_codes(z, _header(T=9, every=4, rank=rank, rank_type=rank_type, bits=bits))
        assert codes.z().shape == z.shape
        errs.append(np.max(np.abs(codes.z() - z)))
    assert errs[0] > errs[1] > errs[2] and errs[2] < 1e-3 * np.abs(z).max(), errs


# --------------------------------------------------------------------------- the container
def _file(**kw):
    h = _header(**kw)
    return codec.to_bytes(codec.quantise_codes(_codes_on_a_line(len(h.keyframes)), h)), h


def test_bytes_round_trip_header_and_codes():
    data, h = _file(T=9, every=4, bits=7, method="slerp")
    codes = codec.from_bytes(data)
    assert codes.header == h
    assert list(h.keyframes) == [0, 4, 8]
    again = codec.from_bytes(codec.to_bytes(codes))
    np.testing.assert_array_equal(again.z(), codes.z())
    assert data[:4] == b"LRGV" and data[4] == codec.VERSION


def test_every_truncation_is_rejected_with_a_clear_message():
    data, _ = _file()
    for n in range(len(data)):
        with pytest.raises(ValueError, match="truncated|not an lrgen compressed video"):
            codec.from_bytes(data[:n], "f.lrgv")
    with pytest.raises(ValueError, match="unexpected bytes after the end"):
        codec.from_bytes(data + b"\0", "f.lrgv")


def test_every_single_byte_change_is_rejected():
    """Any altered byte — magic, header, ranges, payload or the CRC itself — is an error."""
    data, _ = _file()
    for i in range(len(data)):
        bad = bytearray(data)
        bad[i] ^= 0x5A
        with pytest.raises(ValueError, match=r"f\.lrgv: "):
            codec.from_bytes(bytes(bad), "f.lrgv")


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (b"", "not an lrgen compressed video"),
        (b"\x89PNG\r\n\x1a\n" + bytes(100), "not an lrgen compressed video"),
        (b"LRGV", "truncated"),
    ],
)
def test_foreign_files_are_rejected(blob, message):
    with pytest.raises(ValueError, match=message):
        codec.from_bytes(blob, "f")


def _recrc(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


def test_other_versions_and_invalid_fields_with_a_valid_crc_are_rejected():
    data, _ = _file()
    body = bytearray(data[:-4])
    v2 = bytearray(body)
    v2[4] = 2
    with pytest.raises(ValueError, match="format version 2 is not supported"):
        codec.from_bytes(_recrc(bytes(v2)))
    c5 = bytearray(body)
    c5[12] = 5  # channels
    with pytest.raises(ValueError, match="invalid header: channels=5"):
        codec.from_bytes(_recrc(bytes(c5)))
    reserved = bytearray(body)
    reserved[5] |= 0x80
    with pytest.raises(ValueError, match="reserved layout bits"):
        codec.from_bytes(_recrc(bytes(reserved)))
    nan_range = bytearray(body)
    off = codec._FIXED.size + len(b"gen")
    nan_range[off : off + 4] = struct.pack("<f", float("nan"))
    with pytest.raises(ValueError, match="quantisation range of mean"):
        codec.from_bytes(_recrc(bytes(nan_range)))


def test_read_of_a_missing_file_names_it(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        codec.read(tmp_path / "nope.lrgv")


# --------------------------------------------------------------------------- decoding
def test_decode_is_the_generator_on_interpolated_dequantised_codes_and_checks_the_generator():
    params = _params()
    data, h = _file(T=9, every=4, bits=8, params=params)
    codes = codec.from_bytes(data)
    x = compression.decode(codes, SPEC, params)
    assert x.shape == (9, 32, 32, 1)
    # Key frames: G(ẑ_j); frame 2 lies halfway between key frames 0 and 4.
    z = codes.z()
    # (Nine codes, so the renderer compiled for the decode is reused.)
    direct = latent_paths.render(SPEC, params, np.concatenate([z, (z[:1] + z[1:2]) / 2, np.repeat(z[:1], 5, 0)]))
    np.testing.assert_allclose(x[[0, 4, 8, 2]], direct[:4], atol=1e-5)
    with pytest.raises(ValueError, match="differs from the generator the video was compressed with"):
        compression.decode(codes, SPEC, _params(seed=7))


def test_generator_id_depends_on_every_weight_and_not_on_the_container():
    p = _params()
    assert codec.generator_id(SPEC, p) == codec.generator_id(SPEC, jax.tree.map(np.asarray, p))
    q = jax.tree.map(lambda w: w, p)
    q["ConvTranspose_3"]["kernel"] = q["ConvTranspose_3"]["kernel"].at[0, 0, 0, 0].add(1e-6)
    assert codec.generator_id(SPEC, p) != codec.generator_id(SPEC, q)


# --------------------------------------------------------------------------- binaries
def _run(module, *args):
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONWARNINGS="ignore")
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True, env=env, timeout=300
    )


def test_compress_then_decompress_reproduces_the_decoder_exactly_and_rejects_bad_files(tmp_path, gen):
    params = _params()
    out = tmp_path / "v.lrgv"
    p = _run(
        "experiments.compress",
        "--video=builtin:rotating_digit",
        "--num_frames=7",
        f"--generator={gen}",
        "--keyframe_every=3",
        "--bits=9",
        "--iterations=4",
        "--log_every=2",
        f"--output={out}",
    )
    assert p.returncode == 0, p.stderr
    report = json.loads(Path(str(out) + ".json").read_text())
    data = out.read_bytes()
    assert report["bytes"] == len(data) and report["bpp"] == pytest.approx(8 * len(data) / (7 * 32 * 32))
    assert report["header"]["keyframes"] == [0, 3, 6]

    dec = tmp_path / "v.npy"
    p = _run("experiments.decompress", f"--input={out}", f"--output={dec}")
    assert p.returncode == 0, p.stderr
    decoded = np.load(dec)
    # The decoder applied to the dequantised codes, here, in another process: bit for bit.
    want = compression.decode(codec.from_bytes(data), SPEC, params)
    assert decoded.dtype == np.float32 and decoded.shape == (7, 32, 32, 1)
    np.testing.assert_array_equal(decoded, want)
    # ... and the PSNR the compressor reported is that of exactly these frames.
    truth = compression.load_video_for(
        compression.CompressJob(video="builtin:rotating_digit", generator="", num_frames=7), SPEC
    )
    assert report["psnr"] == pytest.approx(compression.score(decoded, truth)["psnr"], abs=1e-4)

    # Bad files and a wrong generator: a clear error and nothing written (the binary: one line, exit 1).
    trunc, flip, other = tmp_path / "t.lrgv", tmp_path / "f.lrgv", tmp_path / "other"
    trunc.write_bytes(data[:-9])
    flip.write_bytes(data[:30] + bytes([data[30] ^ 1]) + data[31:])
    checkpoint.save_generator(other, SPEC, _params(seed=3))
    target = tmp_path / "bad.npy"
    cases = [
        (trunc, "", "truncated"),
        (flip, "", "CRC-32 check failed"),
        (gen / "generator.json", "", "not an lrgen compressed video"),
        (out, str(other), "differs from the generator"),
    ]
    for path, generator, message in cases:
        with pytest.raises(ValueError, match=message):
            compression.decompress_file(str(path), str(target), generator=generator, log=lambda s: None)
        assert not target.exists()
    p = _run("experiments.decompress", f"--input={flip}", f"--output={target}")
    assert p.returncode == 1 and p.stderr.startswith("error: --input=") and "CRC-32" in p.stderr, p.stderr
    assert p.stderr.strip().count("\n") == 0 and not target.exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"bits": 0}, "--bits=0: must lie in [1, 16]"),
        ({"bits": 17}, "--bits=17: must lie in [1, 16]"),
        ({"keyframe_every": 9}, "--keyframe_every=9: must lie in [1, T] = [1, 7]"),
        ({"rank": 4}, "--rank=4: must lie in [0, min(n, k)] = [0, 3]"),
        ({"iterations": 0}, "--iterations=0: must be ≥ 1 (0 is allowed only with --encoder)"),
        ({"encoder": "/no/encoder"}, "--encoder=/no/encoder"),
        ({"generator": "/no/gen"}, "/no/gen: no such file or directory"),
        ({"video": "/no/video.mp4"}, "/no/video.mp4"),
        ({"image_size": 64}, "makes 32×32×1 frames"),
        ({"grayscale": False}, "makes 32×32×1 frames"),
    ],
)
def test_compress_rejects_bad_inputs_before_writing(tmp_path, gen, change, message):
    fields = {f.name for f in dataclasses.fields(compression.CompressConfig)}
    cfg = {"keyframe_every": 3, "iterations": 2, **{k: v for k, v in change.items() if k in fields}}
    job = compression.CompressJob(
        video="builtin:rotating_digit", generator=str(gen), num_frames=7, config=compression.CompressConfig(**cfg)
    )
    job = dataclasses.replace(job, **{k: v for k, v in change.items() if k not in fields})
    out = tmp_path / "v.lrgv"
    with pytest.raises(ValueError) as e:
        compression.compress_video(job, str(out), log=lambda s: None)
    assert message in str(e.value) and "\n" not in str(e.value)
    assert not out.exists() and not Path(str(out) + ".json").exists()


def test_encoder_codes_start_the_fit(tmp_path, gen):
    """With --encoder and no iterations the stored codes are P_r(E(key frames)), quantised."""
    encoder = pytest.importorskip("lrgen.encoder", reason="the encoder (training work) is not in this lrgen")
    enc, out = tmp_path / "enc", tmp_path / "v.lrgv"
    espec = networks.EncoderSpec(z_dim=SPEC.z_dim, features=(8, 16), channels=1, image_size=32)
    checkpoint.save_encoder(enc, espec, espec.init(jax.random.key(0)), generator_spec=SPEC)
    cfg = compression.CompressConfig(keyframe_every=3, iterations=0, bits=16)
    job = compression.CompressJob(
        video="builtin:rotating_digit", generator=str(gen), encoder=str(enc), num_frames=7, config=cfg
    )
    compression.compress_video(job, str(out), log=lambda s: None)
    frames = compression.load_video_for(job, SPEC)
    z0 = encoder.encode(*checkpoint.load_encoder(enc), frames[[0, 3, 6]])
    want = np.asarray(lowrank.project(jnp.asarray(z0), 2, "pca"))
    np.testing.assert_allclose(codec.read(out).z(), want, atol=1e-3)

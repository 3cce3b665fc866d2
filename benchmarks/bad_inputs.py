r"""Every kind of bad input, given to each of the six binaries; a table of what each one did.

    python -m benchmarks.bad_inputs                     # all six binaries, a markdown table on stdout
    python -m benchmarks.bad_inputs --only=compress --out=runs/bad_inputs.md

A run is *clean* when the binary (its ``main``, run in a process of its own with the flags of
the case) exits with a non-zero status, prints exactly one line on stderr, ``error: ...``
(or absl's own ``FATAL Flags parsing error: ...`` for a value of the wrong type or range),
that line names the culprit (the flag or file of the case), no exception escapes, and no
file under the fixture folder is created, changed or removed. The table also counts backend
compilations: a bad input is caught before anything is compiled.

Each case changes one thing in an otherwise valid command; the fixtures (a tiny 32×32
generator, a 20-frame video, training images, a compressed video, a finished recover run…) are
made once, in a temporary folder, by :func:`make_fixtures`. ``tests/test_bad_inputs.py`` runs
the same cases and fails on any unclean one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io as stdio
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

from lrgen import codec, config, jobs
from lrgen.nets import generators, networks

ROOT = Path(__file__).resolve().parents[1]
BINARIES = ("recover", "interpolate", "compress", "decompress", "train_generator", "train_encoder")


@dataclasses.dataclass(frozen=True)
class Case:
    """One bad input: ``args`` (``{F}`` = the fixture folder) added to the binary's valid base command."""

    kind: str
    what: str
    args: tuple[str, ...]
    needle: str  # the culprit the error line must name (a flag or a file name)
    base: str = ""  # another valid base command than the binary's own (a key of BASE)


# --------------------------------------------------------------------------- fixtures
def make_fixtures(folder: str | os.PathLike) -> Path:
    """Write every input the cases use into ``folder`` (a few seconds: one tiny generator)."""
    import jax

    from lrgen import checkpoint

    F = Path(folder)
    F.mkdir(parents=True, exist_ok=True)
    spec = generators.GeneratorSpec(z_dim=8, features=(16, 8, 4), channels=1)  # 32×32
    params = jax.tree.map(np.asarray, generators.init_generator(spec, jax.random.key(0)))
    checkpoint.save_generator(F / "gen", spec, params)
    nan_params = jax.tree.map(np.array, params)
    nan_params["ConvTranspose_1"]["kernel"][0, 0, 0, 0] = np.nan
    checkpoint.save_generator(F / "gen_nan", spec, nan_params)
    checkpoint.save_generator(F / "gen_other", spec, jax.tree.map(lambda w: 2.0 * w, params))
    espec = networks.EncoderSpec(z_dim=8, features=(8, 16), channels=1, image_size=32)
    variables = jax.tree.map(np.array, espec.init(jax.random.key(1)))
    jax.tree.leaves(variables["params"])[0].flat[0] = np.inf
    checkpoint.save_encoder(F / "enc_inf", espec, variables, generator_spec=spec)
    state = {f"main.{2 * i}.weight": params[f"ConvTranspose_{i}"]["kernel"] for i in range(len(params))}
    np.savez(F / "gen.npz", **state)
    np.savez(F / "gen_nan.npz", **{k: np.where(k == "main.0.weight", np.nan, v) for k, v in state.items()})
    full = (F / "gen.npz").read_bytes()
    (F / "gen_trunc.npz").write_bytes(full[: len(full) // 2])
    (F / "empty.npz").write_bytes(b"")
    (F / "text.npz").write_text("these are not arrays\n")
    (F / "afile").write_text("a file where a folder is expected\n")
    (F / "out_dir").mkdir()
    (F / "frames_empty").mkdir()
    (F / "gen_empty_dir").mkdir()

    # Videos: 20 frames of a blob moving right (fewer than the default --num_frames=32).
    yy, xx = np.mgrid[:32, :32]
    video = np.stack([np.exp(-((yy - 16) ** 2 + (xx - 6 - t) ** 2) / 30.0) for t in range(20)]).astype(np.float32)
    np.save(F / "video20.npy", video)
    np.savez(F / "video20.npz", frames=video)
    blob = (F / "video20.npz").read_bytes()
    (F / "video_trunc.npz").write_bytes(blob[: len(blob) // 2])
    bad = video.copy()
    bad[3, 5, 5] = np.nan
    np.save(F / "video_nan.npy", bad)
    np.save(F / "video_range.npy", video * 7.0)
    (F / "video_garbage.mp4").write_bytes(os.urandom(2000))
    (F / "video_empty.mp4").write_bytes(b"")
    (F / "manifest.txt").write_text("video20.npy\n")
    (F / "manifest_binary.txt").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(64))
    (F / "manifest_empty.txt").write_text("# nothing\n")
    (F / "manifest_missing.txt").write_text("no_such_video.npy\n")
    (F / "manifest_corrupt.txt").write_text("video20.npy\nvideo_trunc.npz\n")
    mask = np.ones((20, 32, 32), np.float32)
    np.save(F / "mask_nan.npy", np.where(np.arange(32) == 3, np.nan, mask))
    np.savez(F / "mask.npz", mask=mask)
    mblob = (F / "mask.npz").read_bytes()
    (F / "mask_trunc.npz").write_bytes(mblob[: len(mblob) // 2])

    # Training images, and a VGG file that is cut short.
    rng = np.random.default_rng(0)
    np.save(F / "images.npy", (rng.random((40, 32, 32)) * 255).astype(np.uint8))
    ib = (F / "images.npy").read_bytes()
    (F / "images_trunc.npy").write_bytes(ib[: len(ib) // 2])
    np.savez(F / "images.npz", images=(rng.random((40, 32, 32)) * 255).astype(np.uint8))
    zb = (F / "images.npz").read_bytes()
    (F / "images_trunc.npz").write_bytes(zb[: len(zb) // 2])
    np.save(F / "images_nan.npy", np.full((40, 32, 32), np.nan, np.float32))
    np.savez(F / "vgg.npz", **{"conv1_1/kernel": np.zeros((3, 3, 3, 4), np.float32)})
    vb = (F / "vgg.npz").read_bytes()
    (F / "vgg_trunc.npz").write_bytes(vb[: len(vb) // 2])

    # A training workdir holding another run's checkpoint (another seed): a resume must be refused.
    other = F / "train_other"
    (other / "checkpoints" / "2").mkdir(parents=True)
    (other / "config.json").write_text(json.dumps({"fingerprint": {"loop": {"seed": 12345}}}))

    # Finished recover workdirs, as experiments.recover writes them (metrics.json + reconstruction.npz).
    def recover_run(name: str, update: str, *, z=None, metrics_text=None):
        d = F / name
        d.mkdir()
        job = jobs.RecoverJob(
            video=str(F / "video20.npy"),
            image_size=32,
            generator=str(F / "gen"),
            recover=config.RecoverConfig(update=update, iterations=3, log_every=3),
        )
        m = {"job": job.to_dict(), "generator_spec": spec.to_dict(), "psnr": 20.0}
        (d / "metrics.json").write_text(metrics_text if metrics_text is not None else json.dumps(m))
        np.savez(d / "reconstruction.npz", frames=video[..., None], z=np.ones((20, 8), np.float32) if z is None else z)
        return d

    recover_run("rec_latent", "latent")
    recover_run("rec_joint_no_generator", "joint")
    recover_run("rec_nan_codes", "latent", z=np.full((20, 8), np.nan, np.float32))
    recover_run("rec_bad_json", "latent", metrics_text="{ not json")
    d = recover_run("rec_trunc_npz", "latent")
    rb = (d / "reconstruction.npz").read_bytes()
    (d / "reconstruction.npz").write_bytes(rb[: len(rb) // 2])

    # A compressed video made with gen/.
    header = codec.Header(
        num_frames=20,
        height=32,
        width=32,
        channels=1,
        z_dim=8,
        rank=2,
        rank_type="pca",
        bits=8,
        keyframe_every=4,
        method="linear",
        generator_id=codec.generator_id(spec, params),
        generator_path=str(F / "gen"),
    )
    z = rng.normal(size=(len(header.keyframes), 8))
    data = codec.to_bytes(codec.quantise_codes(z, header))
    (F / "v.lrgv").write_bytes(data)
    (F / "v_copy.npy").write_bytes(data)  # a compressed video under a name decompress could write
    (F / "v_trunc.lrgv").write_bytes(data[:-7])
    (F / "v_flip.lrgv").write_bytes(data[:40] + bytes([data[40] ^ 1]) + data[41:])
    (F / "v_empty.lrgv").write_bytes(b"")
    return F


# --------------------------------------------------------------------------- cases
_TRAIN_BASE = (
    "--dataset=array",
    "--data_dir={F}/images.npy",
    "--image_size=32",
    "--num_holdout=8",
    "--batch_size=8",
    "--num_steps=2",
    "--checkpoint_every=2",
    "--log_every=1",
    "--sample_every=2",
)
BASE = {
    "recover": (
        "--preset=faithful",
        "--video={F}/video20.npy",
        "--image_size=32",
        "--generator={F}/gen",
        "--update=latent",
        "--iterations=3",
        "--log_every=3",
        "--workdir={F}/out/rec",
    ),
    "interpolate": (
        "--video={F}/video20.npy",
        "--image_size=32",
        "--generator={F}/gen",
        "--iterations=3",
        "--log_every=3",
        "--observe_every=2",
        "--workdir={F}/out/interp",
    ),
    "compress": (
        "--video={F}/video20.npy",
        "--generator={F}/gen",
        "--iterations=3",
        "--log_every=3",
        "--output={F}/out/v.lrgv",
    ),
    "interpolate_rec": ("--recover_workdir={F}/rec_latent", "--workdir={F}/out/interp"),
    "decompress": ("--input={F}/v.lrgv", "--output={F}/out/v.npy"),
    "train_generator": (*_TRAIN_BASE, "--z_dim=8", "--workdir={F}/out/tg"),
    "train_encoder": (*_TRAIN_BASE, "--generator={F}/gen", "--pixel_weight=1", "--workdir={F}/out/te"),
}


def _c(kind: str, what: str, needle: str, *args: str, base: str = "") -> Case:
    return Case(kind, what, args, needle, base)


def _m(kind: str, what: str, needle: str, *args: str) -> Case:
    """A recover case in --manifest mode (checkpoints at a multiple of the base --log_every)."""
    return Case(kind, what, (*args, "--checkpoint_every=3"), needle)


def _r(kind: str, what: str, needle: str, *args: str) -> Case:
    """An interpolate case in --recover_workdir mode."""
    return Case(kind, what, args, needle, "interpolate_rec")


def _video_cases(flag: str = "--video") -> list[Case]:
    """A video input of every bad kind (recover, interpolate, compress)."""
    return [
        _c("missing file", "no such video", "no_such.mp4", f"{flag}={{F}}/no_such.mp4"),
        _c("empty file", "0-byte .mp4", "video_empty.mp4", f"{flag}={{F}}/video_empty.mp4"),
        _c("empty file", "0-byte .npz", "empty.npz", f"{flag}={{F}}/empty.npz"),
        _c("wrong type", "a folder without frames", "frames_empty", f"{flag}={{F}}/frames_empty"),
        _c("wrong type", "a text file as .npz", "text.npz", f"{flag}={{F}}/text.npz"),
        _c("corrupt file", "truncated .npz", "video_trunc.npz", f"{flag}={{F}}/video_trunc.npz"),
        _c("corrupt file", "random bytes as .mp4", "video_garbage.mp4", f"{flag}={{F}}/video_garbage.mp4"),
        _c("NaN values", "a frame holds NaN", "video_nan.npy", f"{flag}={{F}}/video_nan.npy"),
        _c("out of range", "float frames in [0, 7]", "video_range.npy", f"{flag}={{F}}/video_range.npy"),
        _c("out of range", "more frames than exist", "video20.npy", f"{flag}={{F}}/video20.npy", "--num_frames=40"),
        _c("negative count", "--num_frames=-1", "--num_frames=-1", "--num_frames=-1"),
    ]


def _generator_cases(flag: str = "--generator") -> list[Case]:
    return [
        _c("missing file", "no such generator", "--generator", f"{flag}={{F}}/no_such_gen"),
        _c("empty file", "0-byte .npz", "--generator", f"{flag}={{F}}/empty.npz"),
        _c("wrong type", "an empty folder", "--generator", f"{flag}={{F}}/gen_empty_dir"),
        _c("wrong type", "a text file as .npz", "--generator", f"{flag}={{F}}/text.npz"),
        _c("corrupt file", "truncated .npz", "--generator", f"{flag}={{F}}/gen_trunc.npz"),
        _c("NaN values", "NaN weights (lrgen dir)", "--generator", f"{flag}={{F}}/gen_nan"),
        _c("NaN values", "NaN weights (.npz)", "--generator", f"{flag}={{F}}/gen_nan.npz"),
    ]


def _workdir_cases(flag: str = "--workdir") -> list[Case]:
    return [
        _c("unwritable output", "empty", flag, f"{flag}="),
        _c("unwritable output", "an existing file", flag, f"{flag}={{F}}/afile"),
        _c("unwritable output", "its parent is a file", flag, f"{flag}={{F}}/afile/sub"),
    ]


def _output_file_cases(flag: str = "--output", ext: str = ".lrgv") -> list[Case]:
    return [
        _c("unwritable output", "empty", flag, f"{flag}="),
        _c("unwritable output", "an existing folder", flag, f"{flag}={{F}}/out_dir"),
        _c("unwritable output", "its parent is a file", flag, f"{flag}={{F}}/afile/x{ext}"),
    ]


def _train_cases() -> list[Case]:
    return [
        _c("missing file", "--data_dir missing", "--data_dir", "--data_dir={F}/no_such.npy"),
        _c("empty file", "0-byte .npz", "--data_dir", "--data_dir={F}/empty.npz"),
        _c("wrong type", "--dataset=array with a folder", "--data_dir", "--data_dir={F}/out_dir"),
        _c("corrupt file", "truncated .npy", "images_trunc.npy", "--data_dir={F}/images_trunc.npy"),
        _c("corrupt file", "truncated .npz", "images_trunc.npz", "--data_dir={F}/images_trunc.npz"),
        _c("NaN values", "NaN images", "images_nan.npy", "--data_dir={F}/images_nan.npy"),
        _c("negative count", "--crop=-5", "--crop=-5", "--crop=-5"),
        _c("negative count", "--max_images=-1", "--max_images=-1", "--max_images=-1"),
        _c("negative count", "--seed=-1", "--seed=-1", "--seed=-1"),
        _c("out of range", "--seed=2**32", "--seed=4294967296", "--seed=4294967296"),
        _c("zero count", "--num_steps=0", "--num_steps=0", "--num_steps=0"),
        _c("zero count", "--batch_size=0", "--batch_size=0", "--batch_size=0"),
        _c("out of range", "--batch_size above the images", "--batch_size=100", "--batch_size=100"),
        _c("out of range", "--image_size=48", "--image_size=48", "--image_size=48"),
        _c("NaN values", "--learning_rate=nan", "--learning_rate=nan", "--learning_rate=nan"),
        *_workdir_cases(),
        _c("refused resume", "workdir holds another run's checkpoint", "--workdir", "--workdir={F}/train_other"),
        _c("wrong type", "--seed=abc", "--seed", "--seed=abc"),
    ]


CASES: dict[str, list[Case]] = {
    "recover": [
        *_video_cases(),
        *_generator_cases(),
        _c("corrupt file", "truncated --mask_file", "--mask_file", "--mask_file={F}/mask_trunc.npz"),
        _c("NaN values", "--mask_file with NaN", "--mask_file", "--mask_file={F}/mask_nan.npy"),
        _c("missing file", "--encoder missing", "--encoder", "--z_init=encoder", "--encoder={F}/no_such_encoder"),
        _c("NaN values", "--encoder with inf weights", "--encoder", "--z_init=encoder", "--encoder={F}/enc_inf"),
        _c("NaN values", "--noise_snr_db=nan", "--noise_snr_db", "--noise_snr_db=nan"),
        _c("out of range", "--missing_ratio=1.5", "--missing_ratio=1.5", "--missing_ratio=1.5"),
        _c("out of range", "--rank=99", "--rank=99", "--rank=99"),
        _c("out of range", "--image_size=48", "--image_size=48", "--image_size=48"),
        _c("zero count", "--iterations=0", "--iterations=0", "--iterations=0"),
        _c("zero count", "--log_every=0", "--log_every=0", "--log_every=0"),
        _c("negative count", "--seed=-1", "--seed=-1", "--seed=-1"),
        _c("negative count", "--z_seed=-1", "--z_seed=-1", "--z_seed=-1"),
        _c("out of range", "--seed=2**32", "--seed=4294967296", "--seed=4294967296"),
        _c("wrong type", "--rank=two", "--rank", "--rank=two"),
        *_workdir_cases(),
        _c("output = input", "--workdir = --video", "--workdir", "--video={F}/out_dir", "--workdir={F}/out_dir"),
        _c(
            "output = input",
            "joint run writing over its --generator",
            "--generator",
            "--update=joint",
            "--generator={F}/rec_latent/generator",
            "--workdir={F}/rec_latent",
        ),
        _c("ignored flag", "--matrix_free with missing pixels", "--matrix_free", "--matrix_free"),
        _c("ignored flag", "--batch_size without --manifest", "--batch_size", "--batch_size=8"),
        _m("missing file", "--manifest missing", "--manifest", "--manifest={F}/no_such.txt"),
        _m("wrong type", "--manifest is a folder", "--manifest", "--manifest={F}/out_dir"),
        _m("wrong type", "--manifest is not text", "--manifest", "--manifest={F}/manifest_binary.txt"),
        _m("empty file", "--manifest lists nothing", "--manifest", "--manifest={F}/manifest_empty.txt"),
        _m("missing file", "--manifest names a missing video", "--manifest", "--manifest={F}/manifest_missing.txt"),
        _m(
            "corrupt file",
            "--manifest lists a truncated .npz",
            "video_trunc.npz",
            "--manifest={F}/manifest_corrupt.txt",
        ),
        _m(
            "unwritable output",
            "--manifest, workdir a file",
            "--workdir",
            "--manifest={F}/manifest.txt",
            "--workdir={F}/afile",
        ),
        _m(
            "unwritable output",
            "--manifest, workdir's parent is a file",
            "--workdir",
            "--manifest={F}/manifest.txt",
            "--workdir={F}/afile/sub",
        ),
    ],
    "interpolate": [
        *_video_cases(),
        *_generator_cases(),
        _r("missing file", "--recover_workdir missing", "--recover_workdir", "--recover_workdir={F}/nothing"),
        _r("wrong type", "--recover_workdir is a file", "--recover_workdir", "--recover_workdir={F}/afile"),
        _r("wrong type", "--recover_workdir unfinished", "--recover_workdir", "--recover_workdir={F}/out_dir"),
        _r("corrupt file", "truncated reconstruction.npz", "--recover_workdir", "--recover_workdir={F}/rec_trunc_npz"),
        _r("corrupt file", "metrics.json not JSON", "--recover_workdir", "--recover_workdir={F}/rec_bad_json"),
        _r("NaN values", "codes hold NaN", "--recover_workdir", "--recover_workdir={F}/rec_nan_codes"),
        _r("missing file", "joint run, generator/ gone", "generator", "--recover_workdir={F}/rec_joint_no_generator"),
        _r("output = input", "--workdir = --recover_workdir", "--workdir", "--workdir={F}/rec_latent"),
        _r("ignored flag", "a fit flag with --recover_workdir", "--rank", "--rank=3"),
        _r("unwritable output", "--workdir's parent is a file", "--workdir", "--workdir={F}/afile/sub"),
        _c("out of range", "--factor=0", "--factor=0", "--factor=0"),
        _c("zero count", "--observe_every=0", "--observe_every=0", "--observe_every=0"),
        _c("zero count", "--iterations=0", "--iterations=0", "--iterations=0"),
        _c("negative count", "--seed=-1", "--seed=-1", "--seed=-1"),
        _c("negative count", "--z_seed=-1", "--z_seed=-1", "--z_seed=-1"),
        _c("out of range", "--rank=9", "--rank=9", "--rank=9"),
        *_workdir_cases(),
    ],
    "compress": [
        *_video_cases(),
        *_generator_cases(),
        _c("missing file", "--encoder missing", "--encoder", "--encoder={F}/no_such_encoder"),
        _c("NaN values", "--encoder with inf weights", "--encoder", "--encoder={F}/enc_inf"),
        _c("zero count", "--bits=0", "--bits=0", "--bits=0"),
        _c("out of range", "--bits=17", "--bits=17", "--bits=17"),
        _c("zero count", "--keyframe_every=0", "--keyframe_every=0", "--keyframe_every=0"),
        _c("negative count", "--iterations=-1", "--iterations=-1", "--iterations=-1"),
        _c("negative count", "--z_seed=-1", "--z_seed=-1", "--z_seed=-1"),
        _c("out of range", "--rank=99", "--rank=99", "--rank=99"),
        *_output_file_cases(),
        _c("output = input", "--output = --video", "--output", "--output={F}/video20.npy"),
        _c("output = input", "--output = --generator", "--output", "--generator={F}/gen.npz", "--output={F}/gen.npz"),
    ],
    "decompress": [
        _c("missing file", "--input missing", "--input", "--input={F}/no_such.lrgv"),
        _c("empty file", "0-byte --input", "--input", "--input={F}/v_empty.lrgv"),
        _c("wrong type", "--input is a folder", "--input", "--input={F}/out_dir"),
        _c("wrong type", "--input is an .npz", "--input", "--input={F}/gen.npz"),
        _c("corrupt file", "truncated --input", "--input", "--input={F}/v_trunc.lrgv"),
        _c("corrupt file", "one bit flipped", "--input", "--input={F}/v_flip.lrgv"),
        _c("missing file", "--generator missing", "--generator", "--generator={F}/no_such_gen"),
        _c("corrupt file", "--generator truncated .npz", "--generator", "--generator={F}/gen_trunc.npz"),
        _c("NaN values", "--generator with NaN weights", "--generator", "--generator={F}/gen_nan"),
        _c("wrong type", "another generator", "--generator", "--generator={F}/gen_other"),
        _c("zero count", "--factor=0", "--factor=0", "--factor=0"),
        _c("out of range", "--factor=1000", "--factor=1000", "--factor=1000"),
        _c("wrong type", "--output extension .txt", "--output", "--output={F}/out/v.txt"),
        *_output_file_cases(ext=".npy"),
        _c("output = input", "--output = --input", "--output", "--input={F}/v_copy.npy", "--output={F}/v_copy.npy"),
    ],
    "train_generator": [*_train_cases()],
    "train_encoder": [
        *_train_cases(),
        *_generator_cases(),
        _c("missing file", "--vgg_weights missing", "--vgg_weights", "--pixel_weight=0.5", "--vgg_weights={F}/no.npz"),
        _c("empty file", "0-byte --vgg_weights", "--vgg_weights", "--pixel_weight=0.5", "--vgg_weights={F}/empty.npz"),
        _c(
            "corrupt file",
            "truncated --vgg_weights",
            "--vgg_weights",
            "--pixel_weight=0.5",
            "--vgg_weights={F}/vgg_trunc.npz",
        ),
        _c("missing file", "--discriminator missing", "--discriminator", "--pixel_weight=0.5", "--discriminator={F}/n"),
        _c("out of range", "--pixel_weight=2", "--pixel_weight=2", "--pixel_weight=2"),
        _c("out of range", "--input_missing_ratio=1", "--input_missing_ratio=1", "--input_missing_ratio=1"),
        _c("output = input", "--workdir = --generator", "--workdir", "--workdir={F}/gen"),
    ],
}


# --------------------------------------------------------------------------- running
def _snapshot(folder: Path) -> dict[str, tuple]:
    """Every path under ``folder`` with its kind, size, mtime and content hash."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames:
            out[os.path.join(dirpath, name)] = ("dir",)
        for name in filenames:
            p = os.path.join(dirpath, name)
            st = os.stat(p)
            with open(p, "rb") as f:
                digest = hashlib.sha1(f.read()).hexdigest()
            out[p] = ("file", st.st_size, st.st_mtime_ns, digest)
    return out


def run_cases(binary: str, fixtures: Path, cases: list[Case]) -> list[dict]:
    """Run ``cases`` through ``experiments.<binary>.main`` in this process; one result per case.

    A binary's flags are absl flags of this process, so one process serves one binary.
    """
    import importlib
    import warnings

    import jax
    from absl import flags

    warnings.simplefilter("ignore")
    compiles = []
    compile_event = "/jax/core/compile/backend_compile_duration"
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, duration, **kw: compiles.append(event) if event == compile_event else None
    )
    module = importlib.import_module(f"experiments.{binary}")
    FLAGS = flags.FLAGS
    results = []
    for case in cases:
        argv = [a.replace("{F}", str(fixtures)) for a in (*BASE[case.base or binary], *case.args)]
        before = _snapshot(fixtures)
        n0, err, out, code, escaped = len(compiles), stdio.StringIO(), stdio.StringIO(), None, ""
        start = time.perf_counter()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            try:
                FLAGS.unparse_flags()
                try:
                    FLAGS([binary, *argv])
                except flags.Error as e:  # what app.run prints for a flag it cannot parse
                    print(f"FATAL Flags parsing error: {e}", file=sys.stderr)
                    print("Pass --helpshort or --helpfull to see help on flags.", file=sys.stderr)
                    raise SystemExit(1) from None
                module.main([binary])
                code = 0
            except SystemExit as e:
                code = e.code
            except BaseException:  # noqa: BLE001 - a traceback is exactly what is being looked for
                escaped = traceback.format_exc()
                code = "exception"
            finally:
                FLAGS.unparse_flags()
        seconds = time.perf_counter() - start
        after = _snapshot(fixtures)
        changed = sorted(
            os.path.relpath(p, fixtures) for p in set(before) | set(after) if before.get(p) != after.get(p)
        )
        lines = [line for line in err.getvalue().splitlines() if line.strip()]
        first = lines[0] if lines else ""
        absl_parse = first.startswith("FATAL Flags parsing error: ") and len(lines) == 2
        problems = []
        if code in (0, None):
            problems.append("exit 0")
        if escaped:
            problems.append("traceback: " + escaped.strip().splitlines()[-1])
        if not (absl_parse or (len(lines) == 1 and first.startswith("error: "))):
            problems.append(f"{len(lines)} stderr lines")
        if case.needle not in first:
            problems.append(f"does not name {case.needle}")
        if changed:
            problems.append("wrote " + ", ".join(changed[:3]))
        results.append(
            {
                "binary": binary,
                "kind": case.kind,
                "what": case.what,
                "args": [a.replace("{F}/", "") for a in case.args],
                "exit": code,
                "message": first if not escaped else escaped.strip().splitlines()[-1],
                "clean": not problems,
                "problems": problems,
                "seconds": round(seconds, 3),
                "compiles": len(compiles) - n0,
            }
        )
        # A run that got through must not leave its outputs for the next case to trip over.
        for p in sorted(set(after) - set(before), reverse=True):
            with contextlib.suppress(OSError):
                os.rmdir(p) if os.path.isdir(p) else os.remove(p)
    return results


def run_binary_in_subprocess(binary: str, fixtures: Path, timeout: float = 600) -> list[dict]:
    """:func:`run_cases` for one binary in a fresh process (absl flags are per process)."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONWARNINGS="ignore")
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.bad_inputs", f"--driver={binary}", f"--fixtures={fixtures}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"driver for {binary} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def real_run(binary: str, fixtures: Path, case: Case) -> dict:
    """One case through ``python -m experiments.<binary>`` itself: exit status and stderr."""
    argv = [a.replace("{F}", str(fixtures)) for a in (*BASE[case.base or binary], *case.args)]
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONWARNINGS="ignore")
    proc = subprocess.run(
        [sys.executable, "-m", f"experiments.{binary}", *argv], cwd=ROOT, capture_output=True, text=True, env=env
    )
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    return {"exit": proc.returncode, "lines": lines, "traceback": "Traceback" in proc.stderr}


def table(results: list[dict]) -> str:
    """Markdown: a summary per binary and kind, then every case with its message."""
    out = ["| binary | kinds tried (cases) | clean | max s | compiles |", "|---|---|---|---|---|"]
    for binary in BINARIES:
        rows = [r for r in results if r["binary"] == binary]
        if not rows:
            continue
        kinds = {}
        for r in rows:
            kinds.setdefault(r["kind"], []).append(r)
        tried = ", ".join(f"{k} ({len(v)})" for k, v in kinds.items())
        clean = sum(r["clean"] for r in rows)
        out.append(
            f"| {binary} | {tried} | {clean}/{len(rows)} | {max(r['seconds'] for r in rows):.2f} | "
            f"{sum(r['compiles'] for r in rows)} |"
        )
    out += ["", "| binary | kind | case | exit | clean | first stderr line |", "|---|---|---|---|---|---|"]
    for r in results:
        msg = r["message"].replace("|", "\\|")
        if len(msg) > 170:
            msg = msg[:167] + "…"
        verdict = "yes" if r["clean"] else "**NO**: " + "; ".join(r["problems"])
        out.append(f"| {r['binary']} | {r['kind']} | {r['what']} | {r['exit']} | {verdict} | `{msg}` |")
    return "\n".join(out)


def main(argv: list[str]) -> None:
    opts = dict(a[2:].split("=", 1) for a in argv if a.startswith("--") and "=" in a)
    if "driver" in opts:
        binary = opts["driver"]
        print(json.dumps(run_cases(binary, Path(opts["fixtures"]), CASES[binary])))
        return
    binaries = opts["only"].split(",") if "only" in opts else list(BINARIES)
    with tempfile.TemporaryDirectory(prefix="lrgen-bad-") as tmp:
        fixtures = make_fixtures(tmp)
        results = []
        for binary in binaries:
            results += run_binary_in_subprocess(binary, fixtures)
        text = table(results)
        # The same refusals through `python -m` itself, once per binary: exit status 1, no traceback.
        real = ["", "| binary | case through `python -m` | exit | traceback | stderr lines |", "|---|---|---|---|---|"]
        for binary in binaries:
            case = next(c for c in CASES[binary] if c.kind == "corrupt file")
            r = real_run(binary, fixtures, case)
            real.append(f"| {binary} | {case.what} | {r['exit']} | {r['traceback']} | {len(r['lines'])} |")
        text += "\n" + "\n".join(real)
    print(text)
    if "out" in opts:
        Path(opts["out"]).parent.mkdir(parents=True, exist_ok=True)
        Path(opts["out"]).write_text(text + "\n")
    if not all(r["clean"] for r in results):
        sys.exit(1)


if __name__ == "__main__":
    main(sys.argv[1:])

r"""Rate–distortion of lrgen's generative compression beside JPEG (per frame) and H.264.

    # rotating MNIST with the original generator
    python -m benchmarks.rate_distortion --video=../shared/data/gmlr/rot_mnist/seq1 \
        --generator=../shared/data/gmlr/mnist_dcgan_gmlr.npz --workdir=runs/rd/seq1
    # an offline colour sequence: a slow zoom and pan over scikit-image's astronaut, and a
    # colour generator tuned jointly on it (see BUILD_NOTES.md for why and what it means)
    python -m benchmarks.rate_distortion --make_colour_sequence=runs/rd/astronaut_pan.npy
    python -m benchmarks.rate_distortion --make_colour_generator=runs/rd/colour_init
    python -m experiments.recover --video=runs/rd/astronaut_pan.npy --nograyscale \
        --generator=runs/rd/colour_init --measurement=identity --update=joint --workdir=runs/rd/colour_tuned
    python -m benchmarks.rate_distortion --video=runs/rd/astronaut_pan.npy \
        --generator=runs/rd/colour_tuned/generator --workdir=runs/rd/colour

Rates are bits per pixel, 8 · bytes / (T · H · W), every byte counted:

* lrgen: the whole compressed file (:mod:`lrgen.codec`: header with the generator's
  locator, ranges, payload, CRC). Key-frame codes are fitted once per (key-frame interval,
  rank) and quantised at every ``--bits``; the generator is shared and reported apart.
* JPEG (Pillow, per frame, 4:2:0 for colour, standard tables): ``jpeg`` counts every frame's
  whole file; ``jpeg_shared_tables`` counts the headers (identical for one quality and size:
  quantisation and Huffman tables) once per sequence, as a container of abbreviated JPEG
  streams would — the fairer number at low rates, where headers dominate.
* H.264 (libx264 through PyAV, constant QP, preset veryslow, one GOP, yuv420p): the raw
  Annex-B stream without the encoder's version SEI (information only, not needed to decode);
  no container. The stream is decoded back with FFmpeg's decoder and scored.
  ``h264_keys{4,8}_blend`` encode only lrgen's key frames (every 4th / 8th and the last) and
  blend the decoded neighbours for the frames between; ``h264_keys{4,8}_flow`` fill them by
  optical-flow interpolation of the decoded neighbours (:func:`lrgen.baselines.flow_frames`,
  the motion-compensated baseline): the same skipped-frame structure, and
  how a standard codec reaches the very low rates where lrgen operates (per-frame overhead
  keeps plain H.264 above ~0.03 bpp on these tiny frames).

Distortion: PSNR of the whole sequence (:func:`lrgen.metrics.psnr`) and mean SSIM, against the
frames as lrgen loads them. Writes rd.json, rd.csv, rd.md (a table) and rd.png.
"""

from __future__ import annotations

import csv
import json
import os
import re
import sys
import time
from fractions import Fraction

import jax
import numpy as np
from absl import app, flags
from PIL import Image

from lrgen import baselines, checkpoint, codec, compression, io, jobs, outputs, selection
from lrgen.nets import generators

FLAGS = flags.FLAGS
flags.DEFINE_string("video", "", "Video to compress (as experiments.compress --video).")
flags.DEFINE_string("generator", "", "Generator (as experiments.compress --generator).")
flags.DEFINE_string("workdir", "", "Output folder.")
flags.DEFINE_string("label", "", "Name of the sequence in the table (default: the video's file name).")
flags.DEFINE_integer("num_frames", 32, "First T frames.")
flags.DEFINE_list("keyframe_every", ["1", "2", "4", "8"], "Key-frame intervals to sweep.")
flags.DEFINE_list("ranks", ["2"], "Ranks to sweep.")
flags.DEFINE_string("rank_type", "pca", "pca or svd.")
flags.DEFINE_list("bits", ["3", "4", "5", "6", "8", "10"], "Bits per number to sweep.")
flags.DEFINE_integer("iterations", 2000, "Latent-optimisation iterations per fit.")
flags.DEFINE_list("jpeg_qualities", ["1", "5", "10", "20", "30", "50", "75", "90"], "JPEG qualities.")
flags.DEFINE_list("h264_qps", ["51", "48", "45", "42", "38", "34", "30", "26", "22"], "H.264 constant QPs.")
flags.DEFINE_bool(
    "reuse_lrgen",
    False,
    "Take the lrgen rows from --workdir/rd.json (same video, generator, iterations); redo the rest.",
)
flags.DEFINE_string("make_colour_sequence", "", "Write the offline colour test sequence (uint8 .npy) here and exit.")
flags.DEFINE_string(
    "make_colour_generator", "", "Write a random-init 64×64 RGB generator (gray widths, k=32) here and exit."
)


# --------------------------------------------------------------------------- the colour sequence
# The colour generator starts from this architecture: the original grayscale widths (k = 32,
# 256/128/64/32) with three output channels — a quarter of the default RGB generator's cost
# (k = 256, 512/256/128/64) on a 2-core CPU, and 8× fewer numbers per stored code.
COLOUR_SPEC = generators.GeneratorSpec(z_dim=32, features=(256, 128, 64, 32), channels=3)


def colour_sequence(num_frames: int = 32, size: int = 64) -> np.ndarray:
    """A slow zoom-and-pan over ``skimage.data.astronaut()`` (bundled, no download), uint8 (T, S, S, 3).

    The square window shrinks from 300 to 200 pixels while its centre moves from (200, 230) to
    (160, 250) (row, column) over the 512×512 image — the face and the flag drift and grow —
    and each window is resized to S×S with PIL's bilinear filter (antialiased), as lrgen loads
    frames.
    """
    from skimage import data

    image = Image.fromarray(data.astronaut())
    u = np.linspace(0.0, 1.0, num_frames)
    frames = []
    for a in u:
        side = 300.0 - 100.0 * a
        cy, cx = 200.0 - 40.0 * a, 230.0 + 20.0 * a
        box = (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)
        frames.append(np.asarray(image.resize((size, size), Image.BILINEAR, box=box, reducing_gap=None)))
    return np.stack(frames)


# --------------------------------------------------------------------------- standard codecs
def _u8(frames: np.ndarray) -> np.ndarray:
    return np.round(np.clip(frames, 0, 1) * 255).astype(np.uint8)


def _pil(frame: np.ndarray) -> Image.Image:
    return Image.fromarray(frame[..., 0] if frame.shape[-1] == 1 else frame)


def _sos(data: bytes) -> int:
    """Offset just past the JPEG start-of-scan segment (header = everything before the scan data)."""
    i = data.index(b"\xff\xda")
    return i + 2 + int.from_bytes(data[i + 2 : i + 4], "big")


def jpeg_rd(frames: np.ndarray, qualities: list[int]) -> list[dict]:
    """Every frame as its own JPEG at each quality; rates with and without repeated headers."""
    import io as pyio

    T, H, W, C = frames.shape
    rows = []
    for q in qualities:
        blobs, decoded = [], []
        for f in _u8(frames):
            buf = pyio.BytesIO()
            _pil(f).save(buf, format="JPEG", quality=q)
            blobs.append(buf.getvalue())
            d = np.asarray(Image.open(pyio.BytesIO(blobs[-1])), np.float32) / 255.0
            decoded.append(d[..., None] if d.ndim == 2 else d)
        x = np.stack(decoded)
        s = compression.score(x, frames)
        heads = [b[: _sos(b)] for b in blobs]
        shared = sum(len(b) for b in blobs) - sum(len(h) for h in heads[1:]) if len(set(heads)) == 1 else None
        for name, size in (("jpeg", sum(len(b) for b in blobs)), ("jpeg_shared_tables", shared)):
            if size is not None:
                rows.append(
                    {"codec": name, "setting": f"quality={q}", "bytes": size, "bpp": 8 * size / (T * H * W), **s}
                )
    return rows


_NAL = re.compile(b"\x00\x00\x01")


def _strip_sei(stream: bytes) -> bytes:
    """Drop SEI NAL units (type 6: x264's version banner) from an Annex-B stream."""
    starts = [m.start() for m in _NAL.finditer(stream)]
    keep = []
    for i, s in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else len(stream)
        # A 4-byte start code leaves its leading zero at the end of the previous unit.
        while end > s + 3 and i + 1 < len(starts) and stream[end - 1] == 0:
            end -= 1
        if stream[s + 3] & 0x1F != 6:
            keep.append(b"\x00\x00\x00\x01" + stream[s + 3 : end])
    return b"".join(keep)


def h264_rd(frames: np.ndarray, qps: list[int], *, keyframe_every: int = 1) -> list[dict]:
    """The sequence as one H.264 GOP at each constant QP (libx264 via PyAV), decoded back.

    ``keyframe_every`` s > 1 encodes only lrgen's key frames {0, s, 2s, …} ∪ {T − 1} and fills
    the others from the two neighbouring decoded key frames, by blending them and by optical
    flow (one row each): the same skipped-frame structure as lrgen, and how a standard codec
    reaches the very low rates where lrgen operates.
    """
    import av

    T, H, W, C = frames.shape
    keys = codec.keyframes(T, keyframe_every)
    u8 = _u8(frames)[keys]
    h, w = u8.shape[1:3]
    rows = []
    for qp in qps:
        enc = av.CodecContext.create("libx264", "w")
        enc.width, enc.height, enc.pix_fmt = w, h, "yuv420p"
        enc.time_base, enc.framerate, enc.gop_size = Fraction(1, 8), Fraction(8, 1), T
        enc.options = {"qp": str(qp), "preset": "veryslow"}
        packets = []
        for t, f in enumerate(u8):
            vf = av.VideoFrame.from_ndarray(f[..., 0] if C == 1 else f, format="gray" if C == 1 else "rgb24")
            vf.pts = t
            packets += enc.encode(vf)
        packets += enc.encode(None)
        stream = _strip_sei(b"".join(bytes(p) for p in packets))
        dec = av.CodecContext.create("h264", "r")
        out = []
        for p in dec.parse(stream) + dec.parse(b""):
            out += dec.decode(p)
        out += dec.decode(None)
        fmt = "gray" if C == 1 else "rgb24"
        x = np.stack([o.to_ndarray(format=fmt) for o in out]).astype(np.float32) / 255.0
        x = x[..., None] if x.ndim == 3 else x
        if x.shape[0] != len(keys):
            raise RuntimeError(f"H.264 decoded {x.shape[0]} frames of {len(keys)}")
        fills = {"blend": baselines.blend_frames, "flow": baselines.flow_frames} if keyframe_every > 1 else {}
        for fill, fn in fills.items() or [("", None)]:
            y = fn(x, keys.astype(np.float64), np.arange(T, dtype=np.float64)) if fn else x
            s = compression.score(y, frames)
            name = f"h264_keys{keyframe_every}_{fill}" if fill else "h264"
            rows.append(
                {"codec": name, "setting": f"qp={qp}", "bytes": len(stream), "bpp": 8 * len(stream) / (T * H * W), **s}
            )
    return rows


# --------------------------------------------------------------------------- lrgen
def lrgen_rd(frames, generator: str, everies, ranks, bits_list, rank_type: str, iterations: int, log) -> list[dict]:
    """Fit key-frame codes once per (interval, rank); quantise, serialise and decode at every b."""
    spec, params = checkpoint.load_generator(generator)
    T, H, W, C = frames.shape
    rows = []
    for every in everies:
        for rank in ranks:
            base = compression.CompressConfig(
                keyframe_every=every, rank=rank, rank_type=rank_type, iterations=iterations
            )
            base.validate(T, spec.z_dim)
            keys = codec.keyframes(T, every)
            t0 = time.perf_counter()
            z, fit = compression.fit_codes(spec, params, frames[keys], base)
            fit_seconds = time.perf_counter() - t0
            # The path between key frames as experiments.compress chooses it (method=auto).
            method, _ = selection.select_path(z, keys.astype(np.float64), frames[keys], spec, params, rank=rank)
            unq = compression.render_keyframe_codes(z, keys, T, spec, params, rank=rank, method=method)
            s_unq = compression.score(unq, frames)
            log(
                f"  s={every} r={rank}: {len(keys)} key frames fitted in {fit_seconds:.0f}s, {method} path, "
                f"unquantised {s_unq['psnr']:.2f} dB"
            )
            for bits in bits_list:
                cfg = compression.CompressConfig(
                    keyframe_every=every, rank=rank, rank_type=rank_type, bits=bits, method=method
                )
                header = compression.make_header(cfg, frames.shape, spec, params, generator)
                data, x = compression.encode_codes(z, header, spec, params)
                s = compression.score(x, frames)
                rows.append(
                    {
                        "codec": "lrgen",
                        "setting": f"keyframe_every={every} rank={rank} bits={bits} {method}",
                        "bytes": len(data),
                        "bpp": 8 * len(data) / (T * H * W),
                        **s,
                        "psnr_unquantised": s_unq["psnr"],
                        "keyframes": len(keys),
                        "fit_psnr_keyframes": fit.get("psnr_keyframes_fit"),
                    }
                )
    return rows


# --------------------------------------------------------------------------- outputs
STYLE = {
    "lrgen": ("tab:red", "o"),
    "jpeg": ("tab:blue", "s"),
    "jpeg_shared_tables": ("tab:cyan", "D"),
    "h264": ("tab:green", "^"),
    "h264_keys4_blend": ("tab:olive", "v"),
    "h264_keys8_blend": ("tab:brown", "<"),
    "h264_keys4_flow": ("tab:purple", ">"),
    "h264_keys8_flow": ("tab:pink", "p"),
}


def plot(path: str, rows: list[dict], title: str, generator_bytes: int) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.2), layout="constrained")
    for i, key in enumerate(("psnr", "ssim")):
        ax = fig.add_subplot(1, 2, i + 1)
        for name, (colour, marker) in STYLE.items():
            pts = sorted((r["bpp"], r[key]) for r in rows if r["codec"] == name and r[key] is not None)
            if not pts:
                continue
            if name == "lrgen":
                pts = _pareto(pts)
            ax.plot(*zip(*pts), color=colour, marker=marker, ms=4, lw=1.2, label=name)
        ax.set_xscale("log")
        ax.set_xlabel("bits per pixel")
        ax.set_ylabel("PSNR (dB)" if key == "psnr" else "SSIM")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{title} (lrgen: Pareto front; generator {generator_bytes / 1e6:.1f} MB shared, not counted)")
    FigureCanvasAgg(fig)
    with io.atomic_write(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)


def _pareto(pts):
    """Points no other point beats at a lower or equal rate."""
    out, best = [], -np.inf
    for bpp, v in sorted(pts):
        if v > best:
            out.append((bpp, v))
            best = v
    return out


def table(rows: list[dict]) -> str:
    lines = ["| codec | setting | bytes | bpp | PSNR (dB) | SSIM |", "|---|---|---:|---:|---:|---:|"]
    for r in sorted(rows, key=lambda r: (r["codec"], r["bpp"])):
        psnr = "inf" if r["psnr"] is None else f"{r['psnr']:.2f}"
        lines.append(f"| {r['codec']} | {r['setting']} | {r['bytes']} | {r['bpp']:.4f} | {psnr} | {r['ssim']:.4f} |")
    return "\n".join(lines)


def main(argv):
    del argv
    log = lambda s: print(s, flush=True)  # noqa: E731
    if FLAGS.make_colour_generator:
        spec = COLOUR_SPEC
        params = jax.jit(lambda key: generators.init_generator(spec, key))(jax.random.key(0))
        checkpoint.save_generator(FLAGS.make_colour_generator, spec, params, source="random init, seed 0")
        log(f"wrote a random {spec.to_dict()} generator → {FLAGS.make_colour_generator}")
        return
    if FLAGS.make_colour_sequence:
        x = colour_sequence(FLAGS.num_frames)
        with io.atomic_write(FLAGS.make_colour_sequence) as tmp:
            np.save(tmp, x)
        log(f"wrote {x.shape} uint8 → {FLAGS.make_colour_sequence}")
        return
    if not (FLAGS.video and FLAGS.generator and FLAGS.workdir):
        print("error: --video, --generator and --workdir are required", file=sys.stderr)
        sys.exit(1)
    spec, params = checkpoint.load_generator(FLAGS.generator)
    job = jobs.RecoverJob(
        video=FLAGS.video, image_size=spec.image_size, num_frames=FLAGS.num_frames, grayscale=spec.channels == 1
    )
    frames = jobs.load_frames(job)
    label = FLAGS.label or os.path.basename(os.path.normpath(FLAGS.video))
    log(f"{label}: {frames.shape}, generator {FLAGS.generator} ({codec.generator_bytes(params)} bytes)")
    rows = jpeg_rd(frames, [int(q) for q in FLAGS.jpeg_qualities])
    for s in (1, 4, 8):
        rows += h264_rd(frames, [int(q) for q in FLAGS.h264_qps], keyframe_every=s)
    previous = os.path.join(FLAGS.workdir, "rd.json")
    if FLAGS.reuse_lrgen and os.path.isfile(previous):
        with open(previous) as f:
            old = json.load(f)
        same = all(old["meta"][k] == v for k, v in (("video", FLAGS.video), ("generator", FLAGS.generator)))
        if not same or old["meta"]["iterations"] != FLAGS.iterations:
            print(f"error: {previous} was made with another video, generator or --iterations", file=sys.stderr)
            sys.exit(1)
        rows += [r for r in old["rows"] if r["codec"] == "lrgen"]
        log(f"lrgen rows reused from {previous}")
    else:
        rows += lrgen_rd(
            frames,
            FLAGS.generator,
            [int(s) for s in FLAGS.keyframe_every],
            [int(r) for r in FLAGS.ranks],
            [int(b) for b in FLAGS.bits],
            FLAGS.rank_type,
            FLAGS.iterations,
            log,
        )
    os.makedirs(FLAGS.workdir, exist_ok=True)
    meta = {
        "video": FLAGS.video,
        "label": label,
        "frames": list(frames.shape),
        "generator": FLAGS.generator,
        "generator_bytes_float32": codec.generator_bytes(params),
        "iterations": FLAGS.iterations,
        "argv": sys.argv,
        "environment": outputs.environment(),
    }
    outputs.write_json(os.path.join(FLAGS.workdir, "rd.json"), {"meta": meta, "rows": rows})
    with io.atomic_write(os.path.join(FLAGS.workdir, "rd.csv")) as tmp:
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, ["codec", "setting", "bytes", "bpp", "psnr", "ssim"], extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)
    md = table(rows)
    with io.atomic_write(os.path.join(FLAGS.workdir, "rd.md")) as tmp:
        with open(tmp, "w") as f:
            f.write(md + "\n")
    plot(os.path.join(FLAGS.workdir, "rd.png"), rows, label, codec.generator_bytes(params))
    log(md)


if __name__ == "__main__":
    app.run(main)

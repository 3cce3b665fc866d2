"""Tests for lrgen.nets.generators, lrgen.nets.layers (the 4×4 transposed convolution) and
lrgen.checkpoint.

Invariants, not snapshots: parity with the original PyTorch generator (float64 fixture), the
custom VJP against autodiff of the reference form, PyTorch ``ConvTranspose2d`` semantics against
a naive scatter written from its definition, architecture shapes, and checkpoint round trips
whose every failure is a ``ValueError`` naming the path.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from lrgen import checkpoint
from lrgen.nets import generators, layers

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
GMLR = SHARED / "data" / "gmlr"
WEIGHTS = GMLR / "mnist_dcgan_gmlr.npz"
REFERENCE = GMLR / "mnist_dcgan_gmlr_reference.npz"

needs_reference = pytest.mark.skipif(
    not (WEIGHTS.is_file() and REFERENCE.is_file()),
    reason=f"original generator fixture not found under {GMLR} (shared data absent)",
)

SMALL = generators.GeneratorSpec(z_dim=5, features=(6, 4, 3), channels=1)


@pytest.fixture
def x64():
    """Run the test body with 64-bit types enabled; restored afterwards."""
    with jax.enable_x64(True):
        yield


def _rel(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


def _naive_conv_transpose_s2(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """PyTorch ConvTranspose2d(k=4, s=2, p=1) from its definition: scatter, then crop by p=1."""
    n, h, wd, _ = x.shape
    out = np.zeros((n, 2 * h, 2 * wd, w.shape[1]), np.float64)
    for i in range(h):
        for j in range(wd):
            for kh in range(4):
                for kw in range(4):
                    oh, ow = 2 * i - 1 + kh, 2 * j - 1 + kw
                    if 0 <= oh < 2 * h and 0 <= ow < 2 * wd:
                        out[:, oh, ow, :] += x[:, i, j, :] @ w[:, :, kh, kw]
    return out


def _naive_generator(weights: list[np.ndarray], z: np.ndarray) -> np.ndarray:
    """The whole DCGAN generator in numpy, first layer ConvT(k=4, s=1, p=0) on a 1×1 input."""
    h = np.einsum("nk,kohw->nhwo", z, weights[0])
    for w in weights[1:]:
        h = _naive_conv_transpose_s2(np.maximum(h, 0.0), w)
    return np.tanh(h)


def _random_state_dict(spec: generators.GeneratorSpec, seed=0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    widths = (spec.z_dim, *spec.features, spec.channels)
    return {
        f"main.{2 * i}.weight": rng.normal(size=(a, b, 4, 4)).astype(np.float32)
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True))
    }


# --------------------------------------------------------------------------- parity with PyTorch
@needs_reference
def test_parity_with_original_pytorch_generator_float64(x64):
    spec, params = generators.load_torch_npz(WEIGHTS)
    assert spec == generators.GeneratorSpec(z_dim=32, features=(256, 128, 64, 32), channels=1)
    ref = np.load(REFERENCE)
    params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
    model = generators.build_generator(spec, param_dtype=jnp.float64)
    x = model.apply({"params": params}, jnp.asarray(ref["z"], jnp.float64))
    assert x.dtype == jnp.float64
    x_nchw = np.asarray(x).transpose(0, 3, 1, 2)
    assert x_nchw.shape == ref["x"].shape
    np.testing.assert_allclose(x_nchw, ref["x"], rtol=0, atol=1e-6)


@needs_reference
def test_parity_with_original_pytorch_generator_float32():
    spec, params = generators.load_torch_npz(WEIGHTS)
    ref = np.load(REFERENCE)
    model = generators.build_generator(spec)
    x = model.apply({"params": params}, jnp.asarray(ref["z"], jnp.float32))
    assert x.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(x).transpose(0, 3, 1, 2), ref["x_f32"], rtol=0, atol=1e-4)


def test_generator_equals_naive_numpy_generator(x64):
    spec = generators.GeneratorSpec(z_dim=3, features=(5, 4, 2), channels=3)
    state = _random_state_dict(spec, seed=3)
    spec2, params = generators.params_from_torch_state_dict(state)
    assert spec2 == spec
    z = np.random.default_rng(4).normal(size=(2, spec.z_dim))
    x = generators.build_generator(spec, jnp.float64).apply({"params": params}, jnp.asarray(z))
    weights = [state[f"main.{2 * i}.weight"].astype(np.float64) for i in range(len(state))]
    np.testing.assert_allclose(np.asarray(x), _naive_generator(weights, z), rtol=0, atol=1e-12)


# --------------------------------------------------------------------------- the layer and its VJP
CONV_SHAPES = [
    # (N, H, W, C_in, C_out): square, non-square with C_out = 1, 1×1 spatial.
    (2, 3, 3, 4, 5),
    (3, 2, 5, 3, 1),
    (2, 1, 1, 3, 2),
]


@pytest.mark.parametrize("shape", CONV_SHAPES)
def test_conv_transpose_matches_naive_scatter(x64, shape):
    n, h, w, c_in, c_out = shape
    rng = np.random.default_rng(sum(shape))
    x = rng.normal(size=(n, h, w, c_in))
    kernel = rng.normal(size=(c_in, c_out, 4, 4))
    y = layers.conv_transpose_s2(jnp.asarray(x), jnp.asarray(kernel))
    assert y.shape == (n, 2 * h, 2 * w, c_out)
    np.testing.assert_allclose(np.asarray(y), _naive_conv_transpose_s2(x, kernel), rtol=0, atol=1e-12)


@pytest.mark.parametrize("how", layers._FORWARDS)
@pytest.mark.parametrize("shape", CONV_SHAPES + [(2, 8, 6, 3, 6)])
def test_every_forward_formulation_matches_naive_scatter(x64, shape, how):
    # The layer picks dilated / sub-pixel / GEMM+col2im by shape; each must be the same function.
    n, h, w, c_in, c_out = shape
    rng = np.random.default_rng(50 + sum(shape))
    x = rng.normal(size=(n, h, w, c_in))
    kernel = rng.normal(size=(c_in, c_out, 4, 4))
    y = layers._conv_transpose_fwd(jnp.asarray(x), jnp.asarray(kernel), how)
    np.testing.assert_allclose(np.asarray(y), _naive_conv_transpose_s2(x, kernel), rtol=0, atol=1e-12)


@pytest.mark.parametrize("shape", CONV_SHAPES + [(2, 8, 6, 3, 6)])
def test_every_gradient_formulation_matches_autodiff_of_reference(x64, shape):
    # Input and weight gradients are picked per layer too (layers._GRADS_X, _GRADS_W); each must
    # equal the derivative JAX takes of the reference (input-dilated) form.
    n, h, w, c_in, c_out = shape
    rng = np.random.default_rng(200 + sum(shape))
    x = jnp.asarray(rng.normal(size=(n, h, w, c_in)))
    kernel = jnp.asarray(rng.normal(size=(c_in, c_out, 4, 4)))
    dy = jnp.asarray(rng.normal(size=(n, 2 * h, 2 * w, c_out)))
    dx_ref, dw_ref = jax.vjp(layers.conv_transpose_s2_reference, x, kernel)[1](dy)
    for how in layers._GRADS_X:
        assert _rel(layers._conv_transpose_grad_x(dy, kernel, how), dx_ref) < 1e-12, how
    for how in layers._GRADS_W:
        assert _rel(layers._conv_transpose_grad_w(x, dy, how), dw_ref) < 1e-12, how


@pytest.mark.parametrize("shape", CONV_SHAPES[:2] + [(2, 8, 6, 3, 6)])
def test_custom_vjp_equals_autodiff_of_reference(x64, shape):
    n, h, w, c_in, c_out = shape
    rng = np.random.default_rng(100 + sum(shape))
    x = jnp.asarray(rng.normal(size=(n, h, w, c_in)))
    kernel = jnp.asarray(rng.normal(size=(c_in, c_out, 4, 4)))
    dy = jnp.asarray(rng.normal(size=(n, 2 * h, 2 * w, c_out)))

    y, vjp = jax.vjp(layers.conv_transpose_s2, x, kernel)
    y_ref, vjp_ref = jax.vjp(layers.conv_transpose_s2_reference, x, kernel)
    np.testing.assert_allclose(np.asarray(y), np.asarray(y_ref), rtol=0, atol=1e-12)
    dx, dw = vjp(dy)
    dx_ref, dw_ref = vjp_ref(dy)
    assert dx.shape == x.shape and dw.shape == kernel.shape
    assert dx.dtype == dw.dtype == jnp.float64
    assert _rel(dx, dx_ref) < 1e-10
    assert _rel(dw, dw_ref) < 1e-10


def test_custom_vjp_under_jit_in_a_loss(x64):
    rng = np.random.default_rng(9)
    x = jnp.asarray(rng.normal(size=(2, 3, 2, 3)))
    kernel = jnp.asarray(rng.normal(size=(3, 1, 4, 4)))
    loss = lambda f: lambda a, b: jnp.sum(jnp.sin(f(a, b)))
    g = jax.jit(jax.grad(loss(layers.conv_transpose_s2), argnums=(0, 1)))(x, kernel)
    g_ref = jax.grad(loss(layers.conv_transpose_s2_reference), argnums=(0, 1))(x, kernel)
    assert _rel(g[0], g_ref[0]) < 1e-10
    assert _rel(g[1], g_ref[1]) < 1e-10


@pytest.mark.parametrize("shape", [(1, 2, 3, 2, 1)])
def test_custom_vjp_check_grads(x64, shape):
    n, h, w, c_in, c_out = shape
    rng = np.random.default_rng(7)
    x = jnp.asarray(rng.normal(size=(n, h, w, c_in)))
    kernel = jnp.asarray(rng.normal(size=(c_in, c_out, 4, 4)))
    check_grads(layers.conv_transpose_s2, (x, kernel), order=1, modes=["rev"])


# --------------------------------------------------------------------------- architecture
@pytest.mark.parametrize("image_size", [32, 64, 128])
@pytest.mark.parametrize("channels", [1, 3])
def test_default_spec_shapes(image_size, channels):
    spec = generators.GeneratorSpec.default(image_size=image_size, channels=channels)
    assert spec.image_size == image_size and spec.channels == channels
    assert spec.z_dim == (32 if channels == 1 else 256)
    params = jax.eval_shape(lambda: generators.init_generator(spec, jax.random.key(0)))
    widths = (spec.z_dim, *spec.features, channels)
    assert sorted(params) == [f"ConvTranspose_{i}" for i in range(len(widths) - 1)]
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        assert params[f"ConvTranspose_{i}"]["kernel"].shape == (a, b, 4, 4)  # PyTorch layout
    model = generators.build_generator(spec)
    out = jax.eval_shape(model.apply, {"params": params}, jax.ShapeDtypeStruct((2, 3, spec.z_dim), jnp.float32))
    assert out.shape == (2, 3, image_size, image_size, channels)


def test_init_scale_and_output_range():
    # All kernels share one shape so the random init compiles once (threefry compiles slowly on CPU).
    spec = generators.GeneratorSpec(z_dim=3, features=(3, 3, 3), channels=3)
    params = generators.init_generator(spec, jax.random.key(1))
    bound = 1.0 / np.sqrt(3 * 4 * 4)  # PyTorch 0.4: U(-1/sqrt(in*kH*kW), +1/sqrt(in*kH*kW))
    kernels = np.stack([np.asarray(params[f"ConvTranspose_{i}"]["kernel"]) for i in range(4)])
    assert np.max(np.abs(kernels)) <= bound and np.max(np.abs(kernels)) > 0.9 * bound
    assert abs(np.mean(kernels)) < 0.2 * bound
    assert len({k.tobytes() for k in kernels}) == 4  # each layer drew its own numbers
    z = jnp.asarray(100.0 * np.random.default_rng(2).normal(size=(4, spec.z_dim)), jnp.float32)
    x = generators.build_generator(spec).apply({"params": params}, z)
    assert x.shape == (4, 32, 32, 3)
    assert bool(jnp.all(jnp.isfinite(x))) and float(jnp.max(jnp.abs(x))) <= 1.0


def test_default_spec_rejects_unsupported():
    with pytest.raises(ValueError, match="image_size"):
        generators.GeneratorSpec.default(image_size=48, channels=1)
    with pytest.raises(ValueError, match="channels"):
        generators.GeneratorSpec.default(image_size=64, channels=2)


def test_spec_dict_round_trip():
    spec = generators.GeneratorSpec.default(image_size=128, channels=3)
    assert generators.GeneratorSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


# --------------------------------------------------------------------------- torch state dicts
def test_state_dict_round_trip():
    spec = generators.GeneratorSpec(z_dim=7, features=(9, 5, 4, 2), channels=3)
    state = _random_state_dict(spec, seed=5)
    spec2, params = generators.params_from_torch_state_dict(state, "random")
    assert spec2 == spec
    generators.check_params(spec, params, "random")
    back = {f"main.{2 * i}.weight": np.asarray(params[f"ConvTranspose_{i}"]["kernel"]) for i in range(len(params))}
    assert sorted(back) == sorted(state)
    for k in state:
        np.testing.assert_array_equal(back[k], state[k])
        assert back[k].dtype == state[k].dtype


def test_state_dict_layer_order_is_numeric():
    # main.10 must come after main.8, not between main.0 and main.2.
    spec = generators.GeneratorSpec(z_dim=3, features=(8, 7, 6, 5, 4), channels=1)
    state = _random_state_dict(spec)
    assert "main.10.weight" in state
    spec2, params = generators.params_from_torch_state_dict(dict(reversed(list(state.items()))))
    assert spec2 == spec
    np.testing.assert_array_equal(params["ConvTranspose_5"]["kernel"], state["main.10.weight"])


def _corrupt(kind: str) -> dict[str, np.ndarray]:
    state = _random_state_dict(SMALL)
    if kind == "bias":
        state["main.0.bias"] = np.zeros(SMALL.features[0], np.float32)
    elif kind == "batchnorm":
        state["main.1.running_mean"] = np.zeros(SMALL.features[0], np.float32)
    elif kind == "prefixed":  # saved from nn.DataParallel
        state = {"module." + k: v for k, v in state.items()}
    elif kind == "widths":
        state["main.2.weight"] = np.zeros((SMALL.features[0] + 1, SMALL.features[1], 4, 4), np.float32)
    elif kind == "kernel3x3":
        state["main.4.weight"] = np.zeros((SMALL.features[1], SMALL.features[2], 3, 3), np.float32)
    elif kind == "ndim":
        state["main.4.weight"] = np.zeros((SMALL.features[1], SMALL.features[2]), np.float32)
    elif kind == "channels":
        state["main.6.weight"] = np.zeros((SMALL.features[2], 2, 4, 4), np.float32)
    elif kind == "empty":
        state = {}
    return state


@pytest.mark.parametrize("kind", ["bias", "batchnorm", "prefixed", "widths", "kernel3x3", "ndim", "channels", "empty"])
def test_state_dict_rejections_name_the_source(kind):
    with pytest.raises(ValueError, match="my-weights.npz"):
        generators.params_from_torch_state_dict(_corrupt(kind), "my-weights.npz")


@pytest.mark.parametrize("kind", ["bias", "widths", "kernel3x3"])
def test_load_torch_npz_rejections_name_the_path(tmp_path, kind):
    path = tmp_path / f"bad_{kind}.npz"
    np.savez(path, **_corrupt(kind))
    with pytest.raises(ValueError, match=str(path)):
        generators.load_torch_npz(path)


# --------------------------------------------------------------------------- checkpoints
def _small_params(seed=0):
    # From numpy rather than init_generator: the same tree, without compiling threefry per shape.
    spec, params = generators.params_from_torch_state_dict(_random_state_dict(SMALL, seed))
    assert spec == SMALL
    return params


def test_checkpoint_round_trip_exact(tmp_path):
    params = _small_params()
    written = checkpoint.save_generator(tmp_path / "gen", SMALL, params, note="test")
    assert written == str(tmp_path / "gen") and os.path.isabs(written)
    assert sorted(os.listdir(tmp_path)) == ["gen"]  # no temporary directory left behind
    meta = json.loads((tmp_path / "gen" / checkpoint.META).read_text())
    assert meta["spec"] == SMALL.to_dict() and meta["note"] == "test"

    spec, loaded = checkpoint.load_generator(tmp_path / "gen")
    assert spec == SMALL
    assert jax.tree.structure(loaded) == jax.tree.structure(params)
    for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(params), strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

    # A training workdir whose generator/ subdirectory holds the export loads the same.
    checkpoint.save_generator(tmp_path / "workdir" / "generator", SMALL, params)
    spec_w, loaded_w = checkpoint.load_generator(tmp_path / "workdir")
    assert spec_w == SMALL
    for a, b in zip(jax.tree.leaves(loaded_w), jax.tree.leaves(params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_checkpoint_overwrite_replaces_and_cleans_up(tmp_path):
    checkpoint.save_generator(tmp_path / "gen", SMALL, _small_params(0))
    new = _small_params(1)
    checkpoint.save_generator(tmp_path / "gen", SMALL, new)
    assert sorted(os.listdir(tmp_path)) == ["gen"]
    _, loaded = checkpoint.load_generator(tmp_path / "gen")
    for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(new), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_checkpoint_refuses_to_replace_foreign_directory(tmp_path):
    foreign = tmp_path / "data"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("keep me")
    with pytest.raises(ValueError, match=str(foreign)):
        checkpoint.save_generator(foreign, SMALL, _small_params())
    assert (foreign / "precious.txt").read_text() == "keep me"
    assert sorted(os.listdir(tmp_path)) == ["data"]


def test_save_rejects_params_of_another_architecture(tmp_path):
    other = generators.GeneratorSpec(z_dim=5, features=(6, 4, 2), channels=1)
    with pytest.raises(ValueError, match="gen"):
        checkpoint.save_generator(tmp_path / "gen", other, _small_params())
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "spec_edit",
    [
        {"features": [6, 4, 2]},  # other widths, same depth
        {"features": [6, 4, 3, 2]},  # one layer more
        {"channels": 3},
        {"z_dim": 6},
    ],
)
def test_load_into_wrong_architecture_raises(tmp_path, spec_edit):
    path = tmp_path / "gen"
    checkpoint.save_generator(path, SMALL, _small_params())
    meta_path = path / checkpoint.META
    meta = json.loads(meta_path.read_text())
    meta["spec"].update(spec_edit)
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=str(path)):
        checkpoint.load_generator(path)


def test_load_rejects_bad_metadata(tmp_path):
    path = tmp_path / "gen"
    checkpoint.save_generator(path, SMALL, _small_params())
    meta_path = path / checkpoint.META
    good = json.loads(meta_path.read_text())
    for meta in ({**good, "format": "other"}, {**good, "version": 99}, {k: v for k, v in good.items() if k != "spec"}):
        meta_path.write_text(json.dumps(meta))
        with pytest.raises(ValueError, match=str(path)):
            checkpoint.load_generator(path)
    meta_path.write_text("{not json")
    with pytest.raises(ValueError, match=str(path)):
        checkpoint.load_generator(path)


def test_load_rejects_missing_and_foreign_paths(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        checkpoint.load_generator(tmp_path / "absent")
    txt = tmp_path / "weights.txt"
    txt.write_text("not weights")
    with pytest.raises(ValueError, match=str(txt)):
        checkpoint.load_generator(txt)
    npy = tmp_path / "weights.npy"
    np.save(npy, np.zeros(3))
    with pytest.raises(ValueError, match=str(npy)):
        checkpoint.load_generator(npy)
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    with pytest.raises(ValueError, match=str(empty_dir)):
        checkpoint.load_generator(empty_dir)


@pytest.mark.parametrize(
    "content",
    [b"PK\x03\x04 truncated zip", b"plain text, not numpy", None],
    ids=["corrupt-zip", "garbage", "single-array"],
)
def test_load_rejects_corrupt_npz(tmp_path, content):
    path = tmp_path / "weights.npz"
    if content is None:  # an .npy payload under an .npz name
        with open(path, "wb") as f:
            np.save(f, np.zeros((2, 2)))
    else:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=str(path)):
        checkpoint.load_generator(path)


@needs_reference
def test_load_generator_accepts_original_npz():
    spec, params = checkpoint.load_generator(WEIGHTS)
    assert spec.image_size == 64 and spec.channels == 1
    generators.check_params(spec, params, str(WEIGHTS))

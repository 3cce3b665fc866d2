"""Tests for the batch-norm DCGAN nets (lrgen.nets: 5×5 layers, generator, encoder, VGG), the
``arch`` of GeneratorSpec, and lrgen.encoder.

Invariants: the fast 5×5 stride-2 convolutions equal XLA's strided / input-dilated ones and a
naive scatter from the definition (values and gradients, float64); folded batch norm equals
batch norm in evaluation mode; architectures round-trip through their checkpoints, and a
checkpoint of another architecture is refused with one line.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lrgen import checkpoint
from lrgen import encoder as encoder_lib
from lrgen.nets import generators, layers, networks


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def _naive_transpose(x, w):
    n, h, wd, _ = x.shape
    out = np.zeros((n, 2 * h, 2 * wd, w.shape[-1]))
    for i in range(h):
        for j in range(wd):
            for a in range(5):
                for b in range(5):
                    o, p = 2 * i + a - 2, 2 * j + b - 2
                    if 0 <= o < 2 * h and 0 <= p < 2 * wd:
                        out[:, o, p] += x[:, i, j] @ w[a, b]
    return out


def test_conv_transpose_matches_definition_and_xla(x64):
    kx, kw = jax.random.split(jax.random.key(0))
    x = jax.random.normal(kx, (2, 3, 4, 3), jnp.float64)
    w = jax.random.normal(kw, (5, 5, 3, 2), jnp.float64)
    fast = jax.jit(layers.conv_transpose5_s2)(x, w)
    np.testing.assert_allclose(fast, _naive_transpose(np.asarray(x), np.asarray(w)), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(fast, jax.jit(layers.conv_transpose5_s2_reference)(x, w), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["conv", "transpose"])
def test_fast_convolutions_have_the_reference_gradients(x64, name):
    fast, ref = {
        "conv": (layers.conv5_s2, layers.conv5_s2_reference),
        "transpose": (layers.conv_transpose5_s2, layers.conv_transpose5_s2_reference),
    }[name]
    fast, ref = jax.jit(fast), jax.jit(ref)
    kx, kw, kc = jax.random.split(jax.random.key(1), 3)
    x = jax.random.normal(kx, (2, 6, 4, 3), jnp.float64)
    w = jax.random.normal(kw, (5, 5, 3, 2), jnp.float64)
    np.testing.assert_allclose(fast(x, w), ref(x, w), rtol=1e-12, atol=1e-12)
    c = jax.random.normal(kc, ref(x, w).shape, jnp.float64)
    g_fast = jax.jit(jax.grad(lambda x, w: jnp.sum(c * fast(x, w)), argnums=(0, 1)))(x, w)
    g_ref = jax.jit(jax.grad(lambda x, w: jnp.sum(c * ref(x, w)), argnums=(0, 1)))(x, w)
    for a, b in zip(g_fast, g_ref):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def _trained_bn_generator(features=(16, 8, 4), channels=1, k=6):
    """A BN generator whose running statistics are far from (0, 1), as after training."""
    model = generators.DCGANGenerator(features, channels)
    variables = dict(jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, k))))
    train_apply = jax.jit(lambda v, z: model.apply(v, z, train=True, mutable=["batch_stats"])[1])
    for i in range(3):
        z = 3.0 * jax.random.normal(jax.random.key(i + 1), (32, k))
        variables = {"params": variables["params"], "batch_stats": train_apply(variables, z)["batch_stats"]}
    variables["params"] = jax.tree.map(lambda p: p * 1.3 + 0.05, variables["params"])  # γ ≠ 1, β ≠ 0
    return model, variables


def test_folded_generator_equals_batch_norm_in_eval_mode():
    model, variables = _trained_bn_generator()
    z = jax.random.normal(jax.random.key(9), (5, 6))
    want = jax.jit(lambda v, z: model.apply(v, z, train=False))(variables, z)
    spec = generators.GeneratorSpec(6, (16, 8, 4), 1, "dcgan_bn")
    folded = generators.fold_generator(variables)
    generators.check_params(spec, folded, "folded")  # exactly the inference architecture's tree
    got = jax.jit(generators.build_generator(spec).apply)({"params": folded}, z)
    assert got.shape == (5, 32, 32, 1)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_spec_arch_round_trip_and_old_dicts():
    spec = generators.GeneratorSpec(100, (256, 128, 64, 32), 3, "dcgan_bn")
    assert generators.GeneratorSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    old = {"z_dim": 32, "features": [256, 128, 64, 32], "channels": 1}  # written before arch existed
    assert generators.GeneratorSpec.from_dict(old).arch == "gmlr"
    with pytest.raises(ValueError, match="arch='vae'"):
        generators.GeneratorSpec.from_dict({**old, "arch": "vae"})


def test_dcgan_generator_checkpoint_round_trip_and_foreign_architecture(tmp_path):
    _, variables = _trained_bn_generator()
    spec = generators.GeneratorSpec(6, (16, 8, 4), 1, "dcgan_bn")
    params = generators.fold_generator(variables)
    checkpoint.save_generator(tmp_path / "work" / "generator", spec, params)
    spec2, loaded = checkpoint.load_generator(tmp_path / "work")
    assert spec2 == spec
    for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # The same directory claiming the original architecture is refused with one line.
    meta_path = tmp_path / "work" / "generator" / checkpoint.META
    meta = json.loads(meta_path.read_text())
    meta["spec"] = generators.GeneratorSpec(6, (16, 8, 4), 1, "gmlr").to_dict()
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="do not match the architecture") as e:
        checkpoint.load_generator(tmp_path / "work")
    assert "\n" not in str(e.value)


def test_encoder_outputs_unit_codes_and_round_trips(tmp_path):
    spec = networks.EncoderSpec(z_dim=5, features=(4, 8, 8), channels=1, image_size=32)
    variables = spec.init(jax.random.key(0))
    frames = np.random.default_rng(0).random((3, 32, 32, 1)).astype(np.float32)
    z = encoder_lib.encode(spec, variables, frames)
    assert z.shape == (3, 5)
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, rtol=1e-5)
    gspec = generators.GeneratorSpec(5, (8, 4, 2), 1)
    checkpoint.save_encoder(tmp_path / "run" / "encoder", spec, variables, generator_spec=gspec, note="t")
    spec2, loaded = checkpoint.load_encoder(tmp_path / "run")
    assert spec2 == spec and checkpoint.encoder_generator_spec(tmp_path / "run") == gspec
    np.testing.assert_array_equal(encoder_lib.encode(spec2, loaded, frames), z)
    with pytest.raises(ValueError, match="encode: frames have shape"):
        encoder_lib.encode(spec, variables, frames[:, :16, :16])
    with pytest.raises(ValueError, match="--encoder=.*holds no encoder.json"):
        checkpoint.load_encoder(tmp_path)


def test_vgg_loader_reads_the_documented_layout(tmp_path):
    rng = np.random.default_rng(0)
    entries, c_in = {}, 3
    for item in networks.VGG19_LAYERS[:5]:  # conv1_1, conv1_2, pool, conv2_1, conv2_2
        if item == "pool":
            continue
        entries[f"{item[0]}/kernel"] = rng.normal(size=(3, 3, c_in, 4)).astype(np.float32)
        entries[f"{item[0]}/bias"] = np.zeros(4, np.float32)
        c_in = 4
    np.savez(tmp_path / "vgg.npz", **entries)
    weights = networks.load_vgg19(tmp_path / "vgg.npz", "relu2_2")
    assert list(weights) == ["conv1_1", "conv1_2", "conv2_1", "conv2_2"]
    feats = networks.vgg_features(weights, jnp.ones((2, 16, 16, 1)))
    assert feats.shape == (2, 8, 8, 4) and bool(jnp.all(feats >= 0))
    with pytest.raises(ValueError, match="--vgg_weights=.*missing conv3_1/kernel"):
        networks.load_vgg19(tmp_path / "vgg.npz", "relu3_1")
    with pytest.raises(ValueError, match="--vgg_layer=relu9_9"):
        networks.load_vgg19(tmp_path / "vgg.npz", "relu9_9")


def test_tree_dir_refuses_foreign_directory(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "keep.txt").write_text("x")
    with pytest.raises(ValueError, match="refusing to replace it"):
        checkpoint.save_tree_dir(tmp_path / "mine", "thing.json", {"format": "x"}, {"a": np.zeros(2)})
    assert (tmp_path / "mine" / "keep.txt").read_text() == "x"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]

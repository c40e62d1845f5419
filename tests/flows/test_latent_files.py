"""Latent files: VAE / pixel-space preprocessing, atomic writes, validated reads."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff.data.digit_styles import digit_styles
from jaxdiff.flows.latent_files import load_latents, preprocess_to_latents, vae_encode_fn
from jaxdiff.nets.vae import AutoencoderKL, VAEConfig
from tests.data.test_style_folders import random_images

TINY = VAEConfig(
    in_channels=1, out_channels=1, block_out_channels=(8, 16), layers_per_block=1,
    norm_num_groups=4, scaling_factor=0.18215, shift_factor=0.1,
)  # fmt: skip


@pytest.fixture(scope="module")
def vae():
    """Encoder weights drawn N(0, 0.2^2) on the shapes init gives (eval_shape: no compile)."""
    module = AutoencoderKL(TINY)
    init = lambda: module.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)), method=module.encode)  # noqa: E731
    rng = np.random.default_rng(0)
    shapes = jax.eval_shape(init)["params"]
    params = jax.tree.map(lambda a: rng.normal(0.0, 0.2, a.shape).astype(np.float32), shapes)
    return module, params, vae_encode_fn(module, params)


def test_preprocess_with_vae_round_trip(tmp_path, vae):
    module, params, encode_fn = vae
    images = digit_styles("test").images[:5]
    styles = np.array([0, 1, 1, 0, 1])
    calls = []

    def encode(x):
        calls.append(x.shape)
        return encode_fn(x)

    out = preprocess_to_latents(
        images, styles, tmp_path / "lat.npz", encode=encode, encoder_name="tiny-vae",
        scaling_factor=TINY.scaling_factor, shift_factor=TINY.shift_factor, batch_size=2,
    )  # fmt: skip
    assert calls == [(2, 8, 8, 1)] * 3  # the short last batch is padded to one shape
    # per-image encoding (GroupNorm and attention act within an image): the padding of
    # the last batch must not leak into image 4
    mean = np.concatenate([encode_fn(images[[0, 1]]), encode_fn(images[[2, 3]]),
                           encode_fn(images[[4, 0]])[:1]])  # fmt: skip
    expected = (mean - 0.1) * 0.18215
    data = load_latents(out)
    assert data.latents.shape == (5, 4, 4, 4) and np.abs(expected).max() > 0.01
    np.testing.assert_allclose(data.latents, expected, atol=1e-5)
    np.testing.assert_array_equal(data.labels, styles)
    assert data.metadata == {
        "format": "jaxdiff.style_latents", "encoder": "tiny-vae", "scaling_factor": 0.18215,
        "shift_factor": 0.1, "image_shape": [8, 8, 1], "latent_shape": [4, 4, 4],
        "num_styles": 2, "num_images": 5,
    }  # fmt: skip
    assert sorted(os.listdir(tmp_path)) == ["lat.npz"]
    default = preprocess_to_latents(images, styles, tmp_path / "d.npz", encode=encode)
    assert load_latents(default).metadata["encoder"] == "encode"
    named = preprocess_to_latents(images, styles, tmp_path / "n.npz", encode=encode_fn,
                                  batch_size=2)  # fmt: skip
    assert load_latents(named).metadata["encoder"] == "autoencoder_kl_mean"
    np.testing.assert_allclose(load_latents(named).latents, mean, atol=1e-6)


def test_pixel_space_latents_are_the_images(tmp_path):
    images = random_images(4, 3, 3, 2)
    out = preprocess_to_latents(images, [0, 0, 1, 1], tmp_path / "sub" / "px.npz")
    data = load_latents(out)
    np.testing.assert_array_equal(data.latents, images)
    assert data.metadata["encoder"] == "pixels" and data.metadata["scaling_factor"] == 1.0


def test_failing_encode_leaves_nothing(tmp_path):
    def encode(x):
        if encode.calls:
            raise RuntimeError("out of memory")
        encode.calls += 1
        return x

    encode.calls = 0
    with pytest.raises(RuntimeError, match="out of memory"):
        preprocess_to_latents(random_images(4, 2, 2, 1), [0] * 4, tmp_path / "a.npz",
                              encode=encode, batch_size=2)  # fmt: skip
    assert os.listdir(tmp_path) == []


def test_interrupted_write_keeps_old_file(tmp_path, monkeypatch):
    images = random_images(3, 2, 2, 1)
    path = preprocess_to_latents(images, [0, 1, 0], tmp_path / "a.npz")
    before = path.read_bytes()

    def half_write(f, **arrays):
        f.write(b"PK\x03\x04 partial zip")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", half_write)
    with pytest.raises(KeyboardInterrupt):
        preprocess_to_latents(-images, [0, 1, 0], path, overwrite=True)
    assert os.listdir(tmp_path) == ["a.npz"] and path.read_bytes() == before


def test_preprocess_errors(tmp_path):
    images = random_images(3, 2, 2, 1)
    with pytest.raises(ValueError, match=r"images must be finite and lie in \[-1, 1\]"):
        preprocess_to_latents(images * 255, [0, 1, 0], tmp_path / "a.npz")
    with pytest.raises(ValueError, match=r"\[N, H, W, C\]"):
        preprocess_to_latents(images[0], [0, 1], tmp_path / "a.npz")
    with pytest.raises(ValueError, match="labels must be an int array"):
        preprocess_to_latents(images, [0.0, 1.0, 0.0], tmp_path / "a.npz")
    with pytest.raises(ValueError, match=r"out_path=.*\.npz"):
        preprocess_to_latents(images, [0, 1, 0], tmp_path / "a.npy")
    with pytest.raises(TypeError, match="encode must be callable"):
        preprocess_to_latents(images, [0, 1, 0], tmp_path / "a.npz", encode="vae")
    with pytest.raises(ValueError, match=r"encode returned shape \(2, 4\)"):
        preprocess_to_latents(images, [0, 1, 0], tmp_path / "a.npz",
                              encode=lambda x: np.zeros((2, 4)))  # fmt: skip
    with pytest.raises(ValueError, match="non-finite"):
        preprocess_to_latents(images, [0, 1, 0], tmp_path / "a.npz",
                              encode=lambda x: np.full_like(x, np.nan))  # fmt: skip
    with pytest.raises(ValueError, match="scaling_factor"):
        preprocess_to_latents(images, [0, 1, 0], tmp_path / "a.npz", scaling_factor=0.0)
    assert os.listdir(tmp_path) == []
    preprocess_to_latents(images, [0, 1, 0], tmp_path / "a.npz")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        preprocess_to_latents(images, [0, 1, 0], tmp_path / "a.npz")


def test_load_latents_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="path="):
        load_latents(tmp_path / "absent.npz")
    (tmp_path / "garbage.npz").write_bytes(b"\x00\x01 not a zip archive")
    with pytest.raises(ValueError, match=r"garbage\.npz: not a readable latent \.npz"):
        load_latents(tmp_path / "garbage.npz")
    good = preprocess_to_latents(random_images(3, 2, 2, 1), [0, 1, 0], tmp_path / "good.npz")
    data = good.read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"cut\.npz: not a readable"):
        load_latents(tmp_path / "cut.npz")
    np.savez(tmp_path / "keys.npz", latents=np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"missing keys \['labels', 'metadata'\]"):
        load_latents(tmp_path / "keys.npz")
    np.savez(tmp_path / "meta.npz", latents=np.zeros((3, 2)), labels=np.zeros(3, np.int32),
             metadata=np.array("{not json"))  # fmt: skip
    with pytest.raises(ValueError, match=r"meta\.npz: not a readable"):
        load_latents(tmp_path / "meta.npz")
    real = load_latents(good)
    np.savez(tmp_path / "n.npz", latents=real.latents, labels=real.labels[:2],
             metadata=np.array(json.dumps(real.metadata)))  # fmt: skip
    with pytest.raises(ValueError, match="disagree"):
        load_latents(tmp_path / "n.npz")

"""jaxdiff's AutoencoderKL against diffusers' (PyTorch) on a random tiny model."""

import diffusers
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from jaxdiff.interop.diffusers_vae import (
    vae_config_from_diffusers,
    vae_config_to_diffusers,
    vae_from_diffusers,
    vae_to_diffusers_state_dict,
)
from jaxdiff.interop.keys import StateDictMismatchError
from jaxdiff.interop.state_dict import save_safetensors

TINY = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=["DownEncoderBlock2D"] * 2,
    up_block_types=["UpDecoderBlock2D"] * 2,
    block_out_channels=[32, 64],
    layers_per_block=1,
    norm_num_groups=8,
    latent_channels=4,
    sample_size=16,
)


def _tiny_vae(seed=0, **overrides):
    torch.manual_seed(seed)
    vae = diffusers.AutoencoderKL(**{**TINY, **overrides}).eval()
    with torch.no_grad():  # perturb every tensor so norms and biases are not trivial
        for p in vae.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return vae


@pytest.fixture(scope="module")
def vae():
    return _tiny_vae()


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).standard_normal((2, 16, 16, 3)).astype(np.float32)


def _nchw(x):
    return torch.from_numpy(np.ascontiguousarray(np.transpose(x, (0, 3, 1, 2))))


def _nhwc(t):
    return np.transpose(t.detach().numpy(), (0, 2, 3, 1))


def _torch_encode_decode(vae, images, latents):
    with torch.no_grad():
        dist = vae.encode(_nchw(images)).latent_dist
        decoded = vae.decode(_nchw(latents)).sample
    return _nhwc(dist.mean), _nhwc(dist.logvar), _nhwc(decoded)


def test_encode_decode_match_diffusers(vae, images):
    module, params = vae_from_diffusers(vae)
    mean, logvar = module.apply({"params": params}, jnp.asarray(images), method=module.encode)
    latents = np.random.default_rng(1).standard_normal((2, 8, 8, 4)).astype(np.float32)
    decoded = module.apply({"params": params}, jnp.asarray(latents), method=module.decode)
    ref_mean, ref_logvar, ref_decoded = _torch_encode_decode(vae, images, latents)
    assert mean.shape == (2, 8, 8, 4) and decoded.shape == (2, 16, 16, 3)
    np.testing.assert_allclose(mean, ref_mean, atol=1e-4, rtol=0)
    np.testing.assert_allclose(logvar, ref_logvar, atol=1e-4, rtol=0)
    np.testing.assert_allclose(decoded, ref_decoded, atol=1e-4, rtol=0)
    # __call__ without a key decodes the mean, as diffusers' forward(sample_posterior=False)
    with torch.no_grad():
        ref_recon = _nhwc(vae(_nchw(images)).sample)
    recon = module.apply({"params": params}, jnp.asarray(images))
    np.testing.assert_allclose(recon, ref_recon, atol=1e-4, rtol=0)


def test_round_trip_into_fresh_diffusers_model(vae, images):
    module, params = vae_from_diffusers(vae)
    state = vae_to_diffusers_state_dict(params, module.config)
    fresh = diffusers.AutoencoderKL(**vae_config_to_diffusers(module.config)).eval()
    fresh.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)
    latents = np.random.default_rng(2).standard_normal((1, 8, 8, 4)).astype(np.float32)
    for got, want in zip(
        _torch_encode_decode(fresh, images, latents),
        _torch_encode_decode(vae, images, latents),
        strict=True,
    ):
        np.testing.assert_allclose(got, want, atol=1e-6, rtol=0)


def test_sources_file_directory_and_state_dict(vae, images, tmp_path):
    vae.save_pretrained(tmp_path / "pipe" / "vae")
    (tmp_path / "w").mkdir()
    weights = save_safetensors(
        {k: v.numpy() for k, v in vae.state_dict().items()}, tmp_path / "w" / "vae.safetensors"
    )
    (tmp_path / "w" / "config.json").write_text((tmp_path / "pipe/vae/config.json").read_text())
    ref_module, ref_params = vae_from_diffusers(vae)
    want = ref_module.apply({"params": ref_params}, jnp.asarray(images), method=ref_module.encode)
    sources = [
        (tmp_path / "pipe", None),  # pipeline directory: uses vae/
        (tmp_path / "pipe" / "vae", None),
        (weights, None),
        (vae.state_dict(), dict(vae.config)),
    ]
    for source, config in sources:
        module, params = vae_from_diffusers(source, config)
        got = module.apply({"params": params}, jnp.asarray(images), method=module.encode)
        np.testing.assert_array_equal(got[0], want[0])


def test_legacy_attention_names_are_accepted(vae):
    state = {k: v.numpy() for k, v in vae.state_dict().items()}
    legacy = {
        k.replace("to_q.", "query.").replace("to_out.0.", "proj_attn."): v for k, v in state.items()
    }
    assert legacy.keys() != state.keys()
    _, params = vae_from_diffusers(legacy, dict(vae.config))
    assert vae_to_diffusers_state_dict(params, vae_config_from_diffusers(vae.config)).keys() == (
        state.keys()
    )


def test_mismatched_state_dict_reports_every_problem(vae):
    state = {k: v.numpy() for k, v in vae.state_dict().items()}
    del state["quant_conv.bias"]
    state["encoder.conv_in.weight"] = np.zeros((32, 3, 5, 5), np.float32)
    state["encoder.extra.weight"] = np.zeros(3, np.float32)
    with pytest.raises(StateDictMismatchError) as err:
        vae_from_diffusers(state, dict(vae.config))
    assert err.value.missing == ["quant_conv.bias"]
    assert err.value.unknown == ["encoder.extra.weight"]
    assert list(err.value.mismatched) == ["encoder.conv_in.weight"]


def test_no_quant_conv_and_no_mid_attention():
    vae = _tiny_vae(1, use_quant_conv=False, use_post_quant_conv=False,
                    mid_block_add_attention=False)  # fmt: skip
    module, params = vae_from_diffusers(vae)
    assert "quant_conv" not in params and "attentions_0" not in params["decoder"]["mid_block"]
    images = np.random.default_rng(3).standard_normal((1, 16, 16, 3)).astype(np.float32)
    latents = np.random.default_rng(4).standard_normal((1, 8, 8, 4)).astype(np.float32)
    mean, logvar = module.apply({"params": params}, jnp.asarray(images), method=module.encode)
    decoded = module.apply({"params": params}, jnp.asarray(latents), method=module.decode)
    ref = _torch_encode_decode(vae, images, latents)
    for got, want in zip((mean, logvar, decoded), ref, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


@pytest.mark.parametrize(
    "field, value, match",
    [
        ("act_fn", "gelu", "act_fn"),
        ("down_block_types", ["DownBlock2D", "DownEncoderBlock2D"], "down_block_types"),
        ("_class_name", "UNet2DModel", "_class_name"),
    ],
)
def test_unsupported_options_are_named(field, value, match):
    with pytest.raises(ValueError, match=match):
        vae_config_from_diffusers({**TINY, "_class_name": "AutoencoderKL", field: value})


def test_bad_sources_raise():
    with pytest.raises(ValueError, match="config="):
        vae_from_diffusers({"a": np.zeros(1)})
    with pytest.raises(TypeError, match="AutoencoderKL"):
        vae_from_diffusers(3.0)

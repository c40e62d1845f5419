"""diffusers UNets (PyTorch, random weights) vs the converted Flax UNet, both directions."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from diffusers import UNet2DConditionModel, UNet2DModel

from jaxdiff.interop import (
    StateDictMismatchError,
    config_from_diffusers,
    unet_from_diffusers,
    unet_to_diffusers_state_dict,
)
from jaxdiff.nets.unet import UNet

TOL = 1e-4


def _randomise(model, seed):
    """Random weights everywhere (diffusers zero-initialises some output layers)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.1 * torch.randn(p.shape, generator=gen))
    return model.eval()


def _uncond(**kw):
    base = dict(
        sample_size=16,
        in_channels=3,
        out_channels=3,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=8,
        attention_head_dim=8,
    )
    return _randomise(UNet2DModel(**{**base, **kw}), 0)


def _cond(**kw):
    base = dict(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        norm_num_groups=8,
        cross_attention_dim=32,
        attention_head_dim=4,
    )
    return _randomise(UNet2DConditionModel(**{**base, **kw}), 1)


@pytest.fixture(scope="module")
def uncond():
    return _uncond()


@pytest.fixture(scope="module")
def cond():
    return _cond()


def _inputs(model, seed=0, batch=2, int_t=True):
    gen = torch.Generator().manual_seed(seed)
    cfg = model.config
    x = torch.randn(batch, cfg.in_channels, 16, 16, generator=gen)
    t = torch.tensor([3, 711][:batch]) if int_t else torch.tensor([0.37, 4.5][:batch])
    ctx = None
    if isinstance(model, UNet2DConditionModel):
        ctx = torch.randn(batch, 5, cfg.cross_attention_dim, generator=gen)
    labels = None
    if cfg.num_class_embeds is not None:
        labels = torch.tensor([1, cfg.num_class_embeds - 1][:batch])
    return x, t, ctx, labels


def _torch_out(model, x, t, ctx, labels):
    with torch.no_grad():
        if isinstance(model, UNet2DConditionModel):
            out = model(x, t, encoder_hidden_states=ctx, class_labels=labels).sample
        else:
            out = model(x, t, class_labels=labels).sample
    return out.numpy()


@functools.cache
def _jitted_apply(config):
    module = UNet(config)

    @jax.jit
    def fn(p, *args):
        return module.apply({"params": p}, *args[:2], context=args[2], class_labels=args[3])

    return fn


def _jax_out(module, params, x, t, ctx, labels):
    fn = _jitted_apply(module.config)
    args = (
        jnp.asarray(x.numpy().transpose(0, 2, 3, 1)),
        jnp.asarray(t.numpy()),
        None if ctx is None else jnp.asarray(ctx.numpy()),
        None if labels is None else jnp.asarray(labels.numpy()),
    )
    return np.asarray(fn(params, *args)).transpose(0, 3, 1, 2)


def _assert_match(model, module, params, int_t=True):
    inputs = _inputs(model, int_t=int_t)
    want = _torch_out(model, *inputs)
    got = _jax_out(module, params, *inputs)
    assert got.shape == want.shape
    assert np.abs(want).max() > 1e-2  # a non-trivial output
    np.testing.assert_allclose(got, want, atol=TOL, rtol=0)


@pytest.mark.parametrize("int_t", [True, False])
def test_unet2d_model_matches(uncond, int_t):
    module, params = unet_from_diffusers(uncond)
    _assert_match(uncond, module, params, int_t=int_t)


def test_unet2d_condition_model_matches(cond):
    module, params = unet_from_diffusers(cond)
    assert module.config.conditional and module.config.attention_levels == (0,)
    _assert_match(cond, module, params)


def test_class_conditional_fourier_scale_shift_variant():
    model = _uncond(
        num_class_embeds=5,
        resnet_time_scale_shift="scale_shift",
        time_embedding_type="fourier",
        downsample_padding=0,
        mid_block_scale_factor=1.5,
        attention_head_dim=None,
        freq_shift=1,
    )
    module, params = unet_from_diffusers(model)
    _assert_match(model, module, params, int_t=False)


def test_linear_projection_multilayer_variant():
    model = _cond(
        use_linear_projection=True,
        transformer_layers_per_block=(1, 2),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        num_class_embeds=3,
        flip_sin_to_cos=False,
    )
    module, params = unet_from_diffusers(model)
    _assert_match(model, module, params)


def test_all_source_kinds_agree(uncond, tmp_path):
    _, ref = unet_from_diffusers(uncond)
    state = uncond.state_dict()
    _, from_dict = unet_from_diffusers(state, config=dict(uncond.config))
    uncond.save_pretrained(tmp_path / "st")
    _, from_dir = unet_from_diffusers(tmp_path / "st")
    _, from_file = unet_from_diffusers(tmp_path / "st" / "diffusion_pytorch_model.safetensors")
    uncond.save_pretrained(tmp_path / "pt", safe_serialization=False)
    _, from_bin = unet_from_diffusers(str(tmp_path / "pt" / "diffusion_pytorch_model.bin"))
    for other in (from_dict, from_dir, from_file, from_bin):
        jax.tree.map(np.testing.assert_array_equal, ref, other)


def test_state_dict_without_config_is_refused(uncond):
    with pytest.raises(ValueError, match="needs config="):
        unet_from_diffusers(uncond.state_dict())


def test_roundtrip_to_diffusers(cond):
    module, params = unet_from_diffusers(cond)
    state = unet_to_diffusers_state_dict(params, module.config)
    fresh = UNet2DConditionModel(**{k: v for k, v in cond.config.items() if k[0] != "_"})
    fresh.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in state.items()}, strict=True)
    inputs = _inputs(cond, seed=3)
    np.testing.assert_array_equal(_torch_out(fresh.eval(), *inputs), _torch_out(cond, *inputs))


def test_mismatch_report_lists_everything(uncond):
    state = {k: v.numpy() for k, v in uncond.state_dict().items()}
    state["bogus.weight"] = np.zeros(3)
    del state["conv_in.bias"]
    state["conv_out.weight"] = np.zeros((3, 32, 1, 1), np.float32)
    with pytest.raises(StateDictMismatchError) as info:
        unet_from_diffusers(state, config=dict(uncond.config))
    err = info.value
    assert err.unknown == ["bogus.weight"] and err.missing == ["conv_in.bias"]
    assert err.mismatched == {"conv_out.weight": ((3, 32, 3, 3), (3, 32, 1, 1))}
    msg = str(err)
    assert "bogus.weight" in msg and "conv_in.bias" in msg and "(3, 32, 1, 1)" in msg


@pytest.mark.parametrize(
    ("option", "value"),
    [("only_cross_attention", True), ("conv_in_kernel", 1), ("act_fn", "gelu")],
)
def test_unsupported_options_are_named(cond, option, value):
    with pytest.raises(ValueError, match=option):
        config_from_diffusers({**cond.config, option: value})


def test_unmirrored_block_types_are_refused(uncond):
    cfg = {**uncond.config, "up_block_types": ("UpBlock2D", "UpBlock2D")}
    with pytest.raises(ValueError, match="up_block_types"):
        config_from_diffusers(cfg)


def test_lora_starts_at_base_and_exports_merged(cond, key):
    module, params = unet_from_diffusers(cond, key=key, lora_rank=2, lora_alpha=4.0)
    assert module.config.lora_rank == 2
    _assert_match(cond, module, params)
    with pytest.raises(ValueError, match="key="):
        unet_from_diffusers(cond, lora_rank=2)
    # a "trained" adapter: the exported (merged) weights reproduce the LoRA model
    rng = np.random.default_rng(0)
    trained = jax.tree_util.tree_map_with_path(
        lambda path, v: (
            0.1 * rng.standard_normal(v.shape).astype(np.float32) if path[-1].key == "lora_B" else v
        ),
        params,
    )
    state = unet_to_diffusers_state_dict(trained, module.config)
    fresh = UNet2DConditionModel(**{k: v for k, v in cond.config.items() if k[0] != "_"})
    fresh.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in state.items()})
    inputs = _inputs(cond, seed=4)
    want = _jax_out(module, trained, *inputs)
    assert not np.allclose(want, _torch_out(cond, *inputs), atol=1e-3)
    np.testing.assert_allclose(_torch_out(fresh.eval(), *inputs), want, atol=TOL, rtol=0)

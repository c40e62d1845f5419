"""jaxdiff UNet configs <-> diffusers configs, and a jaxdiff-born UNet exported to diffusers."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from diffusers import UNet2DConditionModel, UNet2DModel

from jaxdiff.interop import config_from_diffusers, config_to_diffusers, unet_to_diffusers_state_dict
from jaxdiff.nets import HighResModelConfig, UNet

# UNet2DModel sets its heads through attention_head_dim: the canonical jaxdiff form of an
# unconditional config has num_heads=1 (one head of attention_head_dim, or of full width)
CONFIGS = [
    HighResModelConfig(in_channels=1, out_channels=1, base_channels=16, channel_mult=(1, 2),
                       num_res_blocks=1, attention_levels=(1,), norm_num_groups=8,
                       attention_head_dim=8, num_heads=1),
    HighResModelConfig(in_channels=3, out_channels=3, base_channels=16, channel_mult=(1, 2),
                       num_res_blocks=1, attention_levels=(0,), norm_num_groups=8,
                       num_classes=5, resnet_time_scale_shift="scale_shift", num_heads=1),
    HighResModelConfig(in_channels=4, out_channels=4, base_channels=16, channel_mult=(1, 2),
                       num_res_blocks=1, attention_levels=(0, 1), norm_num_groups=8,
                       conditional=True, context_dim=24, num_heads=(2, 4),
                       use_linear_projection=True),
]  # fmt: skip


@pytest.mark.parametrize("config", CONFIGS)
def test_config_round_trip_through_diffusers(config):
    dcfg = config_to_diffusers(config)
    cls = UNet2DConditionModel if config.conditional else UNet2DModel
    assert dcfg["_class_name"] == cls.__name__
    model = cls(**{k: v for k, v in dcfg.items() if k != "_class_name"})
    back = config_from_diffusers(dict(model.config))
    assert back == config


def test_jaxdiff_unet_exports_to_diffusers():
    config = CONFIGS[0]
    module = UNet(config)
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 1))
    t = jnp.array([3, 700])
    params = module.init(jax.random.key(1), x, t)["params"]
    params = jax.tree.map(lambda p: p + 0.05 * jnp.sin(jnp.arange(p.size).reshape(p.shape)), params)
    dcfg = config_to_diffusers(config)
    model = UNet2DModel(**{k: v for k, v in dcfg.items() if k != "_class_name"}).eval()
    state = {
        k: torch.from_numpy(np.ascontiguousarray(v))
        for k, v in unet_to_diffusers_state_dict(params, config).items()
    }
    model.load_state_dict(state, strict=True)
    with torch.no_grad():
        want = (
            model(
                torch.from_numpy(np.asarray(x).transpose(0, 3, 1, 2)),
                torch.from_numpy(np.asarray(t)),
            )
            .sample.numpy()
            .transpose(0, 2, 3, 1)
        )
    got = module.apply({"params": params}, x, t)
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_unexpressible_configs_raise():
    with pytest.raises(TypeError, match="HighResModelConfig"):
        config_to_diffusers({"in_channels": 3})
    cond = dataclasses.replace(CONFIGS[2], mid_attention=False)
    with pytest.raises(ValueError, match="middle attention"):
        config_to_diffusers(cond)
    with pytest.raises(ValueError, match="num_heads=8 without attention_head_dim"):
        config_to_diffusers(dataclasses.replace(CONFIGS[1], num_heads=8))

"""Import and export weights: state dicts, diffusers UNets / VAEs, transformers CLIP text."""

from jaxdiff.interop.clip_text import clip_text_from_transformers
from jaxdiff.interop.diffusers_config import config_from_diffusers, config_to_diffusers
from jaxdiff.interop.diffusers_unet import unet_from_diffusers, unet_to_diffusers_state_dict
from jaxdiff.interop.diffusers_vae import (
    vae_config_from_diffusers,
    vae_config_to_diffusers,
    vae_from_diffusers,
    vae_to_diffusers_state_dict,
)
from jaxdiff.interop.keys import StateDictMismatchError, check_state_dict
from jaxdiff.interop.state_dict import load_state_dict, save_safetensors

__all__ = [
    "StateDictMismatchError",
    "check_state_dict",
    "clip_text_from_transformers",
    "config_from_diffusers",
    "config_to_diffusers",
    "load_state_dict",
    "save_safetensors",
    "unet_from_diffusers",
    "unet_to_diffusers_state_dict",
    "vae_config_from_diffusers",
    "vae_config_to_diffusers",
    "vae_from_diffusers",
    "vae_to_diffusers_state_dict",
]

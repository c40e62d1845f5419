"""Flax linen networks (NHWC).

Time embeddings, the diffusers-compatible UNet and AutoencoderKL, LoRA, IsoNext
(isotropic ConvNeXt with AdaGN), the CLIP text encoder (transformers' structure) and MLPs.
"""

from jaxdiff.nets.attention import Attention, BasicTransformerBlock, FeedForward, Transformer2D
from jaxdiff.nets.bind import BoundModel, bind
from jaxdiff.nets.clip_text import CLIPTextConfig, CLIPTextModel, CLIPTextOutput
from jaxdiff.nets.config import HighResModelConfig
from jaxdiff.nets.embeddings import GaussianFourierProjection, TimestepMLP, sinusoidal_embedding
from jaxdiff.nets.isonext import AdaGN, IsoNext, IsoNextBlock, IsoNextConfig, StyleVelocity
from jaxdiff.nets.lora import (
    LoRADense,
    init_adapters,
    lora_trainable_mask,
    merge_lora,
    strip_lora,
    unmerge_lora,
)
from jaxdiff.nets.mlp import MLP, ResidualMLP
from jaxdiff.nets.resnet import Downsample2D, ResnetBlock2D, Upsample2D
from jaxdiff.nets.text_encoder import (
    CLIPTextEncoder,
    HashTextEncoder,
    TextEncoder,
    TextEncoding,
)
from jaxdiff.nets.unet import UNet
from jaxdiff.nets.unet_blocks import DownBlock, MidBlock, UpBlock
from jaxdiff.nets.vae import AutoencoderKL, Decoder, Encoder, VAEConfig, sample_latent

__all__ = [
    "AdaGN",
    "Attention",
    "AutoencoderKL",
    "BasicTransformerBlock",
    "BoundModel",
    "CLIPTextConfig",
    "CLIPTextEncoder",
    "CLIPTextModel",
    "CLIPTextOutput",
    "Decoder",
    "DownBlock",
    "Downsample2D",
    "Encoder",
    "FeedForward",
    "GaussianFourierProjection",
    "HashTextEncoder",
    "HighResModelConfig",
    "IsoNext",
    "IsoNextBlock",
    "IsoNextConfig",
    "LoRADense",
    "MLP",
    "MidBlock",
    "ResidualMLP",
    "ResnetBlock2D",
    "StyleVelocity",
    "TextEncoder",
    "TextEncoding",
    "TimestepMLP",
    "Transformer2D",
    "UNet",
    "UpBlock",
    "VAEConfig",
    "Upsample2D",
    "bind",
    "init_adapters",
    "lora_trainable_mask",
    "merge_lora",
    "sample_latent",
    "sinusoidal_embedding",
    "strip_lora",
    "unmerge_lora",
]

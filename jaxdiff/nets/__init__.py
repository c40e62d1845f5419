"""Flax linen networks (NHWC): time embeddings, the UNet (diffusers-compatible), LoRA."""

from jaxdiff.nets.attention import Attention, BasicTransformerBlock, FeedForward, Transformer2D
from jaxdiff.nets.config import HighResModelConfig
from jaxdiff.nets.embeddings import GaussianFourierProjection, TimestepMLP, sinusoidal_embedding
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
from jaxdiff.nets.unet import UNet
from jaxdiff.nets.unet_blocks import DownBlock, MidBlock, UpBlock

__all__ = [
    "Attention",
    "BasicTransformerBlock",
    "DownBlock",
    "Downsample2D",
    "FeedForward",
    "GaussianFourierProjection",
    "HighResModelConfig",
    "LoRADense",
    "MLP",
    "MidBlock",
    "ResidualMLP",
    "ResnetBlock2D",
    "TimestepMLP",
    "Transformer2D",
    "UNet",
    "UpBlock",
    "Upsample2D",
    "init_adapters",
    "lora_trainable_mask",
    "merge_lora",
    "sinusoidal_embedding",
    "strip_lora",
    "unmerge_lora",
]

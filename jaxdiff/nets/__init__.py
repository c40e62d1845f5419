"""Flax linen networks (NHWC): time embeddings, UNet, IsoNext, MLPs."""

from jaxdiff.nets.embeddings import GaussianFourierProjection, TimestepMLP, sinusoidal_embedding

__all__ = ["GaussianFourierProjection", "TimestepMLP", "sinusoidal_embedding"]

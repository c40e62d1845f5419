"""Text encoders: prompts -> per-token states and a pooled vector for conditioning.

A :class:`TextEncoder` turns ``B`` prompts into a :class:`TextEncoding`: ``tokens``
``[B, T, D]`` (what a latent-diffusion UNet cross-attends to), ``pooled`` ``[B, P]`` (one
vector per prompt, e.g. SDXL's added condition) and the 0/1 token ``mask`` ``[B, T]``.
``T = max_length`` for every batch: prompts are padded to the full context as Stable
Diffusion's pipeline does (diffusers ``StableDiffusionPipeline.encode_prompt``:
``padding="max_length"``, ``truncation=True``, no attention mask unless the text encoder's
``config.json`` sets ``use_attention_mask``).

Two encoders are given:

* :class:`HashTextEncoder`, the offline default: UTF-8 bytes as token ids feeding a small
  random :class:`~jaxdiff.nets.clip_text.CLIPTextModel`; no weights, files or network.
  It conditions on the exact text deterministically but carries no learned meaning.
* :class:`CLIPTextEncoder`: a transformers CLIP text model and its ``CLIPTokenizer``
  read from a local folder (Radford et al. 2021, "Learning Transferable Visual Models
  From Natural Language Supervision").

The empty prompt ``""`` is valid: classifier-free guidance (Ho & Salimans 2022) encodes
it for the unconditional branch.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff._validation import check_bool, check_int_range
from jaxdiff.nets.clip_text import CLIPTextConfig, CLIPTextModel

__all__ = ["CLIPTextEncoder", "HashTextEncoder", "TextEncoder", "TextEncoding"]

# HashTextEncoder's vocabulary: ids 0..255 are UTF-8 bytes, then three specials
_BOS, _EOS, _PAD = 256, 257, 258
_HASH_CONFIG = CLIPTextConfig(
    vocab_size=259,
    hidden_size=64,
    intermediate_size=256,
    projection_dim=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    max_position_embeddings=77,
    eos_token_id=_EOS,  # not 2: pools at the first EOS (CLIPTextModel's docstring)
)
_TOKENIZER_FILES = ("tokenizer.json", "vocab.json")


@flax.struct.dataclass
class TextEncoding:
    """What :meth:`TextEncoder.encode` returns (a pytree).

    Attributes:
        tokens: ``[B, T, D]`` float per-token states (``T = max_length``, ``D = dim``).
        pooled: ``[B, P]`` float, one vector per prompt (``P = pooled_dim``).
        mask: ``[B, T]`` int32, 1 for a real token (BOS, text, EOS) and 0 for padding.
    """

    tokens: jax.Array
    pooled: jax.Array
    mask: jax.Array


@runtime_checkable
class TextEncoder(Protocol):
    """Anything that encodes prompts: ``encode(prompts) -> TextEncoding``.

    Attributes:
        max_length: ``T``, the token count of every encoding (prompts are padded to it).
        dim: ``D``, the width of ``tokens``.
        pooled_dim: ``P``, the width of ``pooled``.
    """

    max_length: int
    dim: int
    pooled_dim: int

    def encode(self, prompts: Sequence[str]) -> TextEncoding:
        """Encode ``B`` prompts into ``tokens [B, T, D]``, ``pooled [B, P]``, ``mask [B, T]``."""
        ...


def _check_prompts(prompts) -> list[str]:
    """``prompts`` as a non-empty list of str, or a TypeError / ValueError saying why not."""
    if isinstance(prompts, str):
        raise TypeError(
            f"prompts must be a list of strings, got a single str {prompts!r}; "
            "wrap it in a list: [prompt]"
        )
    if not isinstance(prompts, list | tuple):
        raise TypeError(f"prompts must be a list or tuple of str, got {type(prompts).__name__}")
    if not prompts:
        raise ValueError("prompts must hold at least one prompt, got an empty sequence")
    for i, prompt in enumerate(prompts):
        if not isinstance(prompt, str):
            raise TypeError(f"prompts[{i}] must be a str, got {type(prompt).__name__}: {prompt!r}")
    return list(prompts)


def _byte_tokenize(
    prompts: list[str], max_length: int, truncate: bool
) -> tuple[np.ndarray, np.ndarray]:
    """UTF-8 bytes framed as ``BOS bytes EOS PAD...``: ids and mask, int32 ``[B, max_length]``.

    Raises:
        ValueError: a prompt has more than ``max_length - 2`` bytes and not ``truncate``.
    """
    room = max_length - 2
    ids = np.full((len(prompts), max_length), _PAD, np.int32)
    mask = np.zeros((len(prompts), max_length), np.int32)
    for row, prompt in enumerate(prompts):
        data = list(prompt.encode("utf-8"))
        if len(data) > room and not truncate:
            raise ValueError(
                f"prompts[{row}] has {len(data)} UTF-8 bytes (tokens), more than "
                f"max_length - 2 = {room}; shorten it or pass truncate=True"
            )
        body = [_BOS, *data[:room], _EOS]
        ids[row, : len(body)] = body
        mask[row, : len(body)] = 1
    return ids, mask


def _jitted_forward(module: CLIPTextModel) -> Callable:
    """``(params, ids, mask or None) -> CLIPTextOutput``, compiled once per shape."""
    return jax.jit(lambda params, ids, mask: module.apply({"params": params}, ids, mask))


# one architecture for every HashTextEncoder: its init and forward compile once per process
_HASH_MODULE = CLIPTextModel(_HASH_CONFIG, with_projection=True)
_hash_init = jax.jit(_HASH_MODULE.init)
_hash_forward = _jitted_forward(_HASH_MODULE)


@dataclasses.dataclass(frozen=True, eq=False)
class HashTextEncoder:
    """The offline :class:`TextEncoder`: byte tokens into a small random CLIP text model.

    Token ids are a prompt's UTF-8 bytes (0..255) between BOS (256) and EOS (257), padded
    with 258; the model (width ``dim = 64``, 2 layers, 4 heads, ``pooled_dim = 32``
    projected) is initialised from ``jax.random.key(seed)``. The same prompt always gives
    the same encoding, whatever else is in its batch.

    Attributes:
        max_length: ``T``, tokens per prompt including BOS and EOS, in ``[2, 77]``.
        seed: the parameters' seed, an int in ``[0, 2**32)``.
        truncate: cut prompts longer than ``max_length - 2`` bytes instead of raising.
    """

    max_length: int = 77
    seed: int = 0
    truncate: bool = False
    dim: int = dataclasses.field(default=_HASH_CONFIG.hidden_size, init=False)
    pooled_dim: int = dataclasses.field(default=_HASH_CONFIG.projection_dim, init=False)
    module: CLIPTextModel = dataclasses.field(default=_HASH_MODULE, init=False, repr=False)
    params: dict = dataclasses.field(init=False, repr=False)

    def __post_init__(self):
        limit = _HASH_CONFIG.max_position_embeddings
        check_int_range("max_length", self.max_length, 2, limit)
        check_int_range("seed", self.seed, 0, 2**32 - 1)
        check_bool("truncate", self.truncate)
        params = _hash_init(jax.random.key(self.seed), jnp.zeros((1, 1), jnp.int32))
        object.__setattr__(self, "params", params["params"])

    def encode(self, prompts: Sequence[str]) -> TextEncoding:
        """Encode prompts (no attention mask, as Stable Diffusion's pipeline).

        Args:
            prompts: ``B >= 1`` strings; ``""`` is valid.

        Returns:
            :class:`TextEncoding` with float32 ``tokens [B, max_length, 64]``,
            ``pooled [B, 32]`` and ``mask [B, max_length]``.

        Raises:
            TypeError: ``prompts`` is a bare str or not a list / tuple of str.
            ValueError: no prompts, or one too long (named) without ``truncate``.
        """
        ids, mask = _byte_tokenize(_check_prompts(prompts), self.max_length, self.truncate)
        out = _hash_forward(self.params, ids, None)
        return TextEncoding(out.last_hidden_state, out.text_embeds, jnp.asarray(mask))


def _tokenizer_folder(path: Path) -> Path:
    """The folder holding ``path``'s tokenizer: itself, ``tokenizer/`` or a sibling.

    diffusers pipelines lay out ``text_encoder/`` beside ``tokenizer/`` (and
    ``text_encoder_2/`` beside ``tokenizer_2/``).
    """
    candidates = [path, path / "tokenizer"]
    if "text_encoder" in path.name:
        candidates.append(path.parent / path.name.replace("text_encoder", "tokenizer"))
    for folder in candidates:
        if any((folder / name).is_file() for name in _TOKENIZER_FILES):
            return folder
    raise FileNotFoundError(
        f"no tokenizer ({' or '.join(_TOKENIZER_FILES)}) for {str(path)!r}; looked in "
        f"{[str(c) for c in candidates]}; save one there with CLIPTokenizer.save_pretrained"
    )


def _import_clip_tokenizer():
    try:
        from transformers import CLIPTokenizer
    except ImportError as err:
        raise ImportError(
            "CLIPTextEncoder.from_pretrained reads the tokenizer with transformers, which is "
            "not installed: pip install transformers (torch is not needed; the jaxdiff[dev] "
            "extra includes it)"
        ) from err
    return CLIPTokenizer


class CLIPTextEncoder:
    """A :class:`TextEncoder` over :class:`~jaxdiff.nets.clip_text.CLIPTextModel`.

    ``tokens`` is ``last_hidden_state`` ``[B, T, hidden_size]``; ``pooled`` is
    ``text_embeds`` ``[B, projection_dim]`` when the model has ``text_projection``, else
    the pooled state ``[B, hidden_size]``. Both are in the model's compute dtype.
    """

    def __init__(
        self,
        module: CLIPTextModel,
        params,
        tokenize: Callable,
        *,
        max_length: int | None = None,
        use_attention_mask: bool = False,
    ):
        """Wrap a model, its parameters and a tokenizer function.

        Args:
            module: the text model.
            params: its parameters (``module.apply({"params": params}, ...)``).
            tokenize: ``tokenize(prompts: list[str]) -> (ids, mask)``, integer arrays
                ``[B, max_length]`` (mask 1 for tokens, 0 for padding).
            max_length: ``T``; ``None`` is the model's ``max_position_embeddings``.
            use_attention_mask: feed the mask to the model (diffusers' pipeline does
                only when the text encoder's config sets ``use_attention_mask``).

        Raises:
            TypeError: ``module`` is not a CLIPTextModel, ``tokenize`` not callable, or
                a flag / length of the wrong type.
            ValueError: ``max_length`` outside ``[2, max_position_embeddings]``.
        """
        if not isinstance(module, CLIPTextModel):
            raise TypeError(f"module must be a CLIPTextModel, got {type(module).__name__}")
        if not callable(tokenize):
            raise TypeError(f"tokenize must be callable, got {type(tokenize).__name__}")
        cfg = module.config
        limit = cfg.max_position_embeddings
        self.max_length = check_int_range(
            "max_length", limit if max_length is None else max_length, 2, limit
        )
        self.use_attention_mask = check_bool("use_attention_mask", use_attention_mask)
        self.dim = cfg.hidden_size
        self.pooled_dim = cfg.projection_dim if module.with_projection else cfg.hidden_size
        self.module, self.params, self.tokenize = module, params, tokenize
        self._forward = _jitted_forward(module)

    @classmethod
    def from_pretrained(
        cls, path, *, max_length: int | None = None, dtype: str = "float32"
    ) -> CLIPTextEncoder:
        """Load a transformers CLIP text model and its ``CLIPTokenizer`` from local folders.

        Args:
            path: a ``save_pretrained`` folder of ``CLIPTextModel`` /
                ``CLIPTextModelWithProjection`` (a pipeline's ``text_encoder/``); the
                tokenizer is read from it, its ``tokenizer/`` subfolder or the sibling
                ``tokenizer/`` (``tokenizer_2/`` for ``text_encoder_2/``). Nothing is
                downloaded.
            max_length: ``T``; ``None`` is the model's ``max_position_embeddings`` (77 for
                CLIP). Longer prompts are truncated, keeping EOS, as diffusers does.
            dtype: compute dtype (``"float32"``, ``"bfloat16"``, ``"float16"``).

        Raises:
            ImportError: transformers is not installed.
            FileNotFoundError: no model or tokenizer files where looked (all named).
            TypeError, ValueError: see ``clip_text_from_transformers`` and ``__init__``.
        """
        from jaxdiff.interop.clip_text import clip_text_from_transformers  # layered above

        clip_tokenizer = _import_clip_tokenizer()
        module, params = clip_text_from_transformers(path, dtype=dtype)
        path = Path(path)
        use_mask = json.loads((path / "config.json").read_text()).get("use_attention_mask")
        tokenizer = clip_tokenizer.from_pretrained(
            str(_tokenizer_folder(path)), local_files_only=True
        )
        length = module.config.max_position_embeddings if max_length is None else max_length

        def tokenize(prompts):
            batch = tokenizer(
                prompts,
                padding="max_length",
                max_length=length,
                truncation=True,
                return_tensors="np",
            )
            return batch["input_ids"], batch["attention_mask"]

        return cls(
            module, params, tokenize, max_length=max_length, use_attention_mask=use_mask is True
        )

    def _tokens(self, prompts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """``tokenize``'s ids and mask as int32 ``[B, max_length]``, shapes checked."""
        ids, mask = (np.asarray(a) for a in self.tokenize(prompts))
        want = (len(prompts), self.max_length)
        for name, arr in (("ids", ids), ("mask", mask)):
            if arr.dtype.kind not in "iub" or arr.shape != want:
                raise ValueError(
                    f"tokenize returned {name} of shape {arr.shape} and dtype {arr.dtype}; "
                    f"expected integers of shape {want} (batch, max_length)"
                )
        return ids.astype(np.int32), mask.astype(np.int32)

    def encode(self, prompts: Sequence[str]) -> TextEncoding:
        """Encode prompts (padded to ``max_length``; ``""`` is valid).

        Raises:
            TypeError: ``prompts`` is a bare str or not a list / tuple of str.
            ValueError: no prompts, or ``tokenize`` returned the wrong shapes.
        """
        ids, mask = self._tokens(_check_prompts(prompts))
        out = self._forward(self.params, ids, mask if self.use_attention_mask else None)
        pooled = out.text_embeds if self.module.with_projection else out.pooled
        return TextEncoding(out.last_hidden_state, pooled, jnp.asarray(mask))

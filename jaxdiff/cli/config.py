"""Hydra configs of the ``jaxdiff`` apps, checked against structured schemas.

Each app (``train``, ``counting``) ships YAML under ``configs/<app>`` and a schema: a
dataclass whose fields are the config's top-level keys, most of them derived from the
library's own config classes with :func:`schema_from` (``training`` is
:class:`~jaxdiff.train.TrainingConfig`, ``model`` of ``train`` is
:class:`~jaxdiff.nets.HighResModelConfig`), so the YAML and the library cannot drift
apart. The schema is registered with Hydra's ConfigStore as ``jaxdiff_<app>_schema``
and is the first entry of the app's defaults list: Hydra type-checks every override
against it.

Hydra's ``+key=value`` bypasses struct mode, so a typo with ``+`` would be silently
added. :func:`compose_config` therefore checks every override key, and every key of the
composed config, against the schema itself and raises :class:`ConfigError` (one line,
with a "did you mean" suggestion) for anything unknown. Fields typed
``dict[str, Any]`` (the counting app's polymorphic ``bridge`` / ``dataset`` groups) are
free-form here; their builders check the keys per ``type``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import os
import re
import types
import typing
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Optional

from jaxdiff._validation import did_you_mean

__all__ = [
    "ConfigError",
    "available_configs",
    "check_output_dir",
    "checking",
    "compose_config",
    "config_dir",
    "config_groups",
    "help_epilog",
    "schema_from",
    "schema_keys",
    "show_config",
]


class ConfigError(ValueError):
    """A bad command-line configuration; ``str(err)`` is one line naming the key."""


@contextlib.contextmanager
def checking(
    section: str, fields: Iterable[str], rename: dict[str, str] | None = None
) -> Iterator[None]:
    """Turn a library ``ValueError`` / ``TypeError`` into a :class:`ConfigError` naming keys.

    Inside the block, a library config is built from the ``section`` of the composed
    config; its error names its own field (``num_steps``), which is rewritten as the key
    the user typed (``training.num_iterations`` with ``rename={"num_steps":
    "num_iterations"}``). A message naming no field is prefixed with the section.
    """
    rename = rename or {}
    try:
        yield
    except ConfigError:
        raise
    except (TypeError, ValueError) as err:
        message = " ".join(str(err).split())
        hits = 0
        for field in sorted(set(fields) | set(rename), key=len, reverse=True):
            pattern = rf"(?<![\w.]){re.escape(field)}(?=[=\[]| must| is| has| needs|:| <)"
            key = f"{section}.{rename.get(field, field)}"
            message, n = re.subn(pattern, key, message)
            hits += n
        named = hits or message.startswith(f"{section}.") or f" {section}." in message
        raise ConfigError(message if named else f"{section}: {message}") from err


def check_output_dir(value) -> Path:
    """``output_dir`` as a Path that is (or can be made) a writable folder; nothing made."""
    if not isinstance(value, str) or not value:
        raise ConfigError(f"output_dir must be a non-empty path, got {value!r}")
    path = Path(value)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"output_dir={value!r} exists and is not a folder")
    existing = next(p for p in (path, *path.absolute().parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK):
        raise ConfigError(f"output_dir={value!r}: {existing} is not a writable folder")
    return path


def config_dir(app: str) -> Path:
    """The shipped Hydra config folder of an app (installed wheel or source checkout)."""
    here = Path(__file__).resolve()
    for candidate in (here.parents[1] / "configs" / app, here.parents[2] / "configs" / app):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"no Hydra configs for {app!r} next to the jaxdiff package")


def available_configs(app: str) -> list[str]:
    """The primary config names of an app (``--config-name`` choices), sorted."""
    return sorted(p.stem for p in config_dir(app).glob("*.yaml"))


def config_groups(app: str) -> dict[str, list[str]]:
    """``{group: [option, ...]}`` of an app's config groups (sub-folders of YAML files)."""
    root = config_dir(app)
    return {
        d.name: sorted(p.stem for p in d.glob("*.yaml"))
        for d in sorted(root.iterdir())
        if d.is_dir() and any(d.glob("*.yaml"))
    }


def _omegaconf_type(hint):
    """The closest annotation OmegaConf can enforce for a library field's type hint."""
    if hint in (bool, int, float, str):
        return hint
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1 and len(args) == 2:
            inner = _omegaconf_type(rest[0])
            return Any if inner is Any else Optional[inner]  # noqa: UP045 - OmegaConf
        return Any
    if origin in (tuple, list) and args and args[0] in (bool, int, float, str):
        if origin is list or (len(args) == 2 and args[1] is Ellipsis):
            return list[args[0]]
    return Any


def _schema_default(field: dataclasses.Field):
    if field.default is not dataclasses.MISSING:
        value = field.default
    elif field.default_factory is not dataclasses.MISSING:
        value = field.default_factory()
    else:
        return dataclasses.field(default="???")  # OmegaConf's MISSING: must be given
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, tuple | list):
        items = list(value)
        return dataclasses.field(default_factory=lambda: list(items))
    return dataclasses.field(default=value)


def schema_from(cls, name: str, *, rename: dict[str, str] | None = None) -> type:
    """A structured-config dataclass with the init fields of dataclass ``cls``.

    Args:
      cls: a library config dataclass (e.g. ``TrainingConfig``).
      name: the schema class name (shown in Hydra's type errors).
      rename: ``{library field: config key}`` where the YAML uses another name (the
        counting app's ``num_iterations`` for ``num_steps``).

    Returns:
      A dataclass with one field per init field of ``cls``, typed as OmegaConf can check
      (bool / int / float / str, optionals and lists of them; ``Any`` otherwise, left to
      ``cls`` itself), with ``cls``'s defaults.
    """
    rename = rename or {}
    hints = typing.get_type_hints(cls)
    fields = [
        (rename.get(f.name, f.name), _omegaconf_type(hints[f.name]), _schema_default(f))
        for f in dataclasses.fields(cls)
        if f.init
    ]
    return dataclasses.make_dataclass(name, fields)


def schema_keys(schema: type, prefix: str = "") -> dict[str, bool]:
    """``{dotted key: is free-form}`` of every key (nodes and leaves) of a schema.

    A ``dict`` field is free-form unless its metadata lists its possible keys
    (``dataclasses.field(metadata={"keys": [...]})``, e.g. the union over a group's types).
    """
    keys = {}
    hints = typing.get_type_hints(schema)
    for field in dataclasses.fields(schema):
        key = prefix + field.name
        hint = hints[field.name]
        listed = field.metadata.get("keys")
        keys[key] = typing.get_origin(hint) is dict and listed is None
        keys.update({f"{key}.{sub}": False for sub in listed or ()})
        if dataclasses.is_dataclass(hint):
            keys.update(schema_keys(hint, key + "."))
    return keys


def _check_key(key: str, keys: dict[str, bool], where: str) -> None:
    parts = key.split(".")
    for i in range(1, len(parts)):
        if keys.get(".".join(parts[:i])):
            return  # inside a free-form node: its builder checks the keys
    if key not in keys:
        raise ConfigError(f"unknown key {key!r} {where}{did_you_mean(key, keys)}")


def _check_overrides(app: str, overrides: list[str], keys: dict[str, bool]) -> None:
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except HydraException as err:
        raise ConfigError(f"bad override: {_first_line(err)}") from err
    groups = config_groups(app)
    for override, text in zip(parsed, overrides, strict=True):
        key = override.key_or_group
        if key in groups and not override.is_delete():
            value = override.value()
            if isinstance(value, str) and value not in groups[key]:
                raise ConfigError(
                    f"{text}: no {key!r} config named {value!r}"
                    f"{did_you_mean(value, groups[key])}; available: {groups[key]}"
                )
            continue
        _check_key(key, keys, f"in override {text!r}")


def _check_composed(cfg: dict, keys: dict[str, bool], prefix: str = "") -> None:
    for name, value in cfg.items():
        key = prefix + str(name)
        _check_key(key, keys, "in the composed config")
        if isinstance(value, dict) and not keys.get(key):
            _check_composed(value, keys, key + ".")


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def _hydra_message(err: BaseException) -> str:
    """One line for a Hydra / OmegaConf error: its own first line and its cause's."""
    line = _first_line(err)
    cause = err.__cause__ or err.__context__
    if cause is not None and _first_line(cause) not in line:
        line = f"{line} {_first_line(cause)}"
    hint = [s.strip() for s in str(err).splitlines() if s.strip().startswith("To append")]
    return f"{line} ({hint[0]})" if hint else line


def compose_config(app: str, overrides: list[str], config_name: str, schema: type) -> dict:
    """The composed config of ``config_name`` + ``overrides``, as a plain dict.

    Args:
      app: ``"train"`` or ``"counting"`` (a folder of ``configs/``).
      overrides: Hydra overrides as typed (``training=quick``, ``sampler.method=ddim``).
      config_name: the primary config (``--config-name``).
      schema: the app's schema dataclass (registered as ``jaxdiff_<app>_schema``).

    Raises:
      ConfigError: an unknown primary config, group option or key (with or without
        ``+``), a value of the wrong type, or a malformed override; one line naming it.
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.config_store import ConfigStore
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    names = available_configs(app)
    if config_name not in names:
        raise ConfigError(
            f"no primary config {config_name!r} in {config_dir(app)}"
            f"{did_you_mean(config_name, names)}; available: {names}"
        )
    keys = schema_keys(schema)
    _check_overrides(app, overrides, keys)
    ConfigStore.instance().store(name=f"jaxdiff_{app}_schema", node=schema)
    try:
        with initialize_config_dir(config_dir=str(config_dir(app)), version_base=None):
            cfg = compose(config_name=config_name, overrides=list(overrides))
        plain = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(_hydra_message(err)) from err
    _check_composed(plain, keys)
    return plain


def help_epilog(app: str) -> str:
    """The config groups, their options and keys, for ``jaxdiff <app> --help``.

    Read from the YAML files alone (no Hydra, no JAX), so ``--help`` stays fast.
    """
    import yaml

    root = config_dir(app)
    primary = yaml.safe_load((root / "config.yaml").read_text()) or {}
    chosen = {}
    for entry in primary.get("defaults", []):
        if isinstance(entry, dict):
            chosen.update(entry)
    groups = config_groups(app)
    lines = ["config groups (group=option on the command line; * = default):"]
    for group, options in groups.items():
        marked = [o + ("*" if o == chosen.get(group) else "") for o in options]
        lines.append(f"  {group}: {', '.join(marked)}")
    lines.append("keys (key=value; --cfg job prints every key of the composed config):")
    for group in groups:
        option = chosen.get(group, groups[group][0])
        keys = yaml.safe_load((root / group / f"{option}.yaml").read_text()) or {}
        lines.append(f"  {group}.{{{', '.join(keys)}}}")
    for key, value in primary.items():
        if key == "defaults":
            continue
        lines.append(f"  {key}.{{{', '.join(value)}}}" if isinstance(value, dict) else f"  {key}")
    lines.append(f"primary configs (--config-name): {', '.join(available_configs(app))}")
    return "\n".join(lines)


def show_config(app: str, cfg: dict, args, run_dir: Path) -> int:
    """``--cfg job|all`` (the composed config as YAML) or ``--info``; the exit code 0.

    The apps do not run under Hydra's own runtime, so ``--cfg all`` shows the same as
    ``--cfg job``.
    """
    from omegaconf import OmegaConf

    if args.cfg:
        print(OmegaConf.to_yaml(cfg), end="", flush=True)
    if args.info:
        print(f"app: jaxdiff {app}", flush=True)
        print(f"config folder: {config_dir(app)}")
        print(f"primary config: {args.config_name}")
        print(f"run directory of this config: {run_dir}")
        print(help_epilog(app), flush=True)
    return 0

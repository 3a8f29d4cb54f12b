"""Named presets and command-line parsing of a config dataclass (tyro), shared by every command.

    cfg = parse_with_preset(argv, PRESETS, "2v2", "marl-grpo train", "GRPO or PPO training.")

`--preset NAME` picks the defaults; every other option overrides one field. A bad value or an
unknown preset ends the command with `SystemExit("<command>: <message>")`.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any, TypeVar

import tyro

from marl_grpo.run.config import deferred_validation

ConfigT = TypeVar("ConfigT")


def pick_preset(presets: dict[str, ConfigT], name: str) -> ConfigT:
    """A fresh deep copy of `presets[name]` (changing it, nested configs and dicts included, leaves
    the preset alone); a clear error for an unknown name."""
    if name not in presets:
        raise ValueError(f"unknown preset {name!r}; choose one of: {', '.join(presets)}")
    cfg = copy.deepcopy(presets[name])
    if "preset" in {f.name for f in dataclasses.fields(cfg)}:
        cfg.preset = name  # what it sets is the preset's, not the user's (`RunConfig.user_fields`)
    return cfg


def given_fields(argv: list[str], cls: type) -> frozenset[str]:
    """The fields of dataclass `cls` that the options `argv` set (`--hidden 64`, `--no-anneal-lr`, ...)."""
    names = {f.name for f in dataclasses.fields(cls)}
    given = set()
    for token in argv:
        if token.startswith("--"):
            name = token[2:].split("=", 1)[0].replace("-", "_")
            given.add(name if name in names or not name.startswith("no_") else name[3:])
    return frozenset(given & names)


def parse_config(cls: type[ConfigT], argv: list[str], command: str, default: ConfigT | None = None,
                 prog: str | None = None, description: str | None = None) -> ConfigT:
    """`tyro.cli` of `cls`, then one validation whose error names the command (not a traceback).
    A run config's `given` names the fields the command line set: resume keeps the others, and a
    given field the run does not read is refused (`RunConfig.check_used`)."""
    with deferred_validation():
        cfg = tyro.cli(cls, default=default, args=argv, prog=prog or command, description=description)
    checks = [getattr(cfg, "validate", None)]
    for f in dataclasses.fields(cls):  # a nested run config (compare's --train.*): the options under its prefix
        nested = getattr(cfg, f.name)
        if dataclasses.is_dataclass(nested) and "given" in {g.name for g in dataclasses.fields(nested)}:
            prefix = f"--{f.name.replace('_', '-')}."
            nested.given = given_fields(["--" + t[len(prefix):] for t in argv if t.startswith(prefix)], type(nested))
    if "given" in {f.name for f in dataclasses.fields(cls)}:
        cfg.given = given_fields(argv, cls)
        if not cfg.resume:  # a resumed run is checked with its saved settings (`resume_config`)
            checks.append(cfg.check_used)
    try:
        for check in filter(None, checks):
            check()
    except ValueError as err:
        raise SystemExit(f"{command}: {err}") from None
    return cfg


def parse_with_preset(argv: list[str], presets: dict[str, Any], default_name: str, command: str,
                      description: str) -> Any:
    """`--preset NAME` picks the defaults (a config dataclass from `presets`); the other options
    override its fields through tyro."""
    name = default_name
    if "--preset" in argv:
        at = argv.index("--preset")
        if at + 1 >= len(argv):
            raise SystemExit(f"{command}: --preset needs a name: one of {', '.join(presets)}")
        name = argv[at + 1]
        argv = argv[:at] + argv[at + 2:]
    try:
        default = pick_preset(presets, name)
    except ValueError as err:
        raise SystemExit(f"{command}: {err}") from None
    return parse_config(type(default), argv, command, default=default, prog=f"{command} --preset {name}",
                        description=f"{description} Presets: {', '.join(presets)} (default {default_name}).")

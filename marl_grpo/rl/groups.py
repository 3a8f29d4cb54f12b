"""GRPO group modes for the game: what a group is, how a segment starts, and the group id of a sequence.

DeepSeekMath's GRPO (Shao et al. 2024, eq. 3) scores G answers to one prompt against their mean.
In the game a "prompt" is a situation and the "answers" are players' returns from it:

| mode | situation | members | how a segment starts |
|---|---|---|---|
| `team` | one match | the teammates | as it is |
| `branch` | G copies of one game state | the same player in each copy | match `s*G` of each block of G is copied into the block (`SoccerVecEnv.branch`) |
| `episode` | G matches from one kickoff seed | the same player in each match | a fresh kickoff, seeded per block, copied into the block |

Modes combine with `+` (`branch+team`: every teammate in every copy). At most one mode copies
matches. A new mode subclasses `GroupMode`, sets its two class attributes, and registers itself
in `GROUP_MODES`.

Sequences are indexed m = b * C + c (match b, controlled agent c), as in `Segment`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from marl_grpo.envs.team import TeamVecEnv


class GroupMode:
    """One way of forming groups. Subclasses set the class attributes and may start segments."""

    name: ClassVar[str]
    copies_matches: ClassVar[bool] = False
    """the members are G copies of one match (blocks of G consecutive matches), not one match"""
    pools_teammates: ClassVar[bool] = False
    """every teammate of a situation is a member (else: one player, across the copies)"""
    whole_matches: ClassVar[bool] = False
    """a segment is one whole match (`max_cycles` steps) instead of `branch_horizon` steps"""

    def __init__(self, group_size: int, seed: int, first_match: int = 0):
        self.group_size, self.seed = group_size, seed
        self.first_match = first_match
        """index of the env's first match in the run's whole batch (its slice under torchrun)"""

    def start_segment(self, env: TeamVecEnv) -> torch.Tensor | None:
        """Prepare the matches for the next segment; the new observations [B, N, D] if they changed."""
        return None

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def _block_sources(self, env: TeamVecEnv) -> torch.Tensor:
        return torch.arange(0, env.num_envs, self.group_size, device=env.device)


GROUP_MODES: dict[str, type[GroupMode]] = {}
"""every group mode by name"""


def register_group_mode(cls: type[GroupMode]) -> type[GroupMode]:
    GROUP_MODES[cls.name] = cls
    return cls


@register_group_mode
class TeamGroups(GroupMode):
    """The teammates at the same step of the same match (only individual rewards tell them apart)."""

    name = "team"
    pools_teammates = True


@register_group_mode
class BranchGroups(GroupMode):
    """G continuations of one copied state, played `branch_horizon` steps."""

    name = "branch"
    copies_matches = True

    def start_segment(self, env: TeamVecEnv) -> torch.Tensor:
        return env.branch(self._block_sources(env), self.group_size)


@register_group_mode
class EpisodeGroups(GroupMode):
    """G whole matches from one kickoff seed (a fresh seed every segment)."""

    name = "episode"
    copies_matches = True
    whole_matches = True

    def __init__(self, group_size: int, seed: int, first_match: int = 0):
        super().__init__(group_size, seed, first_match)
        self.episodes_started = 0

    def start_segment(self, env: TeamVecEnv) -> torch.Tensor:
        seed = self.seed + 7919 * (self.episodes_started + 1) + self.first_match
        self.episodes_started += 1
        if not env.can_branch:  # an env that cannot copy its state seeds each block's copies alike
            return env.reset_blocks(seed, self.group_size)
        env.reset(seed=seed)
        return env.branch(self._block_sources(env), self.group_size)

    def state_dict(self) -> dict[str, Any]:
        return {"episodes_started": self.episodes_started}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.episodes_started = state["episodes_started"]


class Groups:
    """A `group_mode` such as ``"branch+team"``: the registered modes it combines, as one.

    Raises a `ValueError` naming the spec for an unknown mode, a repeated one, or two modes that
    both copy matches. `first_match`: the index of the env's first match in the run's whole batch
    (its slice under torchrun), which offsets the seeds of new kickoffs.
    """

    def __init__(self, spec: str, group_size: int = 8, seed: int = 0, first_match: int = 0):
        names = spec.split("+")
        unknown = [n for n in names if n not in GROUP_MODES]
        modes = [GROUP_MODES[n](group_size, seed, first_match) for n in names if n in GROUP_MODES]
        if unknown or len(set(names)) != len(names) or sum(m.copies_matches for m in modes) > 1:
            raise ValueError(
                f"group_mode={spec!r} is invalid: expected one of {tuple(GROUP_MODES)}, or a combination with "
                "at most one of the modes that copy matches (e.g. branch+team)")
        self.spec, self.modes, self.group_size = spec, modes, group_size
        self.copies_matches = any(m.copies_matches for m in modes)
        self.pools_teammates = any(m.pools_teammates for m in modes)
        self.whole_matches = any(m.whole_matches for m in modes)

    def start_segment(self, env: TeamVecEnv) -> torch.Tensor | None:
        obs = None
        for mode in self.modes:
            obs = mode.start_segment(env) if obs is None else obs
        return obs

    def group_ids(self, num_matches: int, team: torch.Tensor) -> torch.Tensor:
        """[S] group id of each sequence m = b * C + c, from the team [C] (soccer: 0 blue, 1 red) of
        each controlled agent: the situation (the match, or its block of G copies) times the member
        key (the team when teammates pool, else the slot)."""
        C, device = team.numel(), team.device
        match = torch.arange(num_matches, device=device).repeat_interleave(C)
        slot = torch.arange(C, device=device).repeat(num_matches)
        situation = match // self.group_size if self.copies_matches else match
        if self.pools_teammates:
            return situation * max(2, int(team.max()) + 1) + team[slot]
        return situation * C + slot

    def state_dict(self) -> dict[str, Any]:
        return {m.name: m.state_dict() for m in self.modes}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for mode in self.modes:
            mode.load_state_dict(state.get(mode.name, {}))

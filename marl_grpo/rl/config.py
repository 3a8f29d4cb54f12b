"""Soccer training configuration: `RunConfig`'s shared fields plus the soccer ones, and named presets.

    marl-grpo train --preset quick --total-env-steps 200000
    marl-grpo train --preset quick --algo ppo          # the PPO-with-critic baseline

GRPO and PPO share this one config: every setting they have in common (env, team size,
opponent, budget, learning rate, epochs, minibatches, seed, the policy loss and its `loss_type`...)
means the same for both. The GRPO-only fields (group_mode, group_size, supervision, scale,
advantage_baseline, reward_aggregation) do nothing for PPO, nor the PPO-only ones (critic,
gae_lambda, vf_coef, ...) for GRPO, nor the league's without `--opponent league`: giving one is
an error (`TrainConfig.USED_BY`, the table of what reads what); a preset may set them.

In soccer a sequence is one player's segment and a token one step; every sequence has all its T
steps, so the loss types that differ only in how they average over unequal lengths (grpo, bnpo,
dr_grpo, dapo) give the same loss here; cispo, sapo, luspo and vespo change the objective itself
(`marl_grpo.losses.policy_loss`).

Values derived from the config (segment length, iterations, the group modes) are typed
properties; the config is validated when it is built, with clear errors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from marl_grpo.agents import ARCHS, BOT_NAMES, CRITIC_KINDS
from marl_grpo.envs.config import MAX_TEAM_SIZE, SoccerConfig
from marl_grpo.envs.team import parse_env_kwargs, parse_env_spec
from marl_grpo.rl.groups import Groups
from marl_grpo.rl.league import SAMPLINGS, parse_anchors
from marl_grpo.rl.learners import LEARNERS, Algorithm
from marl_grpo.rl.opponent import check_opponent_checkpoint, is_checkpoint_opponent
from marl_grpo.run.config import RunConfig, UsedBy, check_choice, check_int, check_number
from marl_grpo.run.presets import pick_preset

SUPERVISIONS = ("outcome", "process")

GRPO_FIELDS = ("group_mode", "group_size", "supervision", "scale", "advantage_baseline", "reward_aggregation")
"""the fields only GRPO reads (its groups and group advantages)"""
PPO_FIELDS = ("critic", "critic_hidden", "gae_lambda", "vf_coef", "clip_vloss", "norm_value", "norm_adv")
"""the fields only PPO reads (its critic and GAE)"""
LEAGUE_FIELDS = ("league_latest_ratio", "league_anchor_ratio", "league_sampling", "league_snapshot_every",
                 "league_size", "league_keep_every", "league_anchors", "league_window", "league_elo_k",
                 "league_exploiters")
"""the fields only `--opponent league` reads"""
SOCCER_FIELDS = ("team_size", "opponent", "opponent_strength", "compile_bots", "compile_env", "arch",
                 "reward_dist_to_ball", "eval_opponent", "eval_strength")
"""the fields only the soccer env reads (`--env soccer`)"""
EXPLOITER_FIELDS = ("league_exploiter_every", "league_exploiter_threshold", "league_exploiter_timeout")
"""the fields only a league's main exploiters read (`--league-exploiters` above 0)"""


@dataclass
class TrainConfig(RunConfig):
    """Hyperparameters of a GRPO or PPO soccer run (and of the evaluation it runs as it goes)."""

    RESUMABLE = (*RunConfig.RESUMABLE, "total_env_steps", "eval_matches", "eval_opponent", "eval_strength",
                 "compile_bots", "compile_env")
    USED_BY = (
        *RunConfig.USED_BY,
        UsedBy(GRPO_FIELDS, lambda c: c.learner.uses_groups, "algo", "GRPO's group advantages, --algo grpo"),
        UsedBy(PPO_FIELDS, lambda c: c.algo == "ppo", "algo", "PPO's critic and GAE, --algo ppo"),
        UsedBy(("gamma",), lambda c: not c.learner.uses_groups or c.supervision == "process", "supervision",
               "the returns-to-go of process supervision, or PPO's GAE"),
        UsedBy(("group_size",), lambda c: c.groups.copies_matches, "group_mode",
               "the copied matches of a branch or episode mode"),
        UsedBy(("branch_horizon",), lambda c: not (c.learner.uses_groups and c.groups.whole_matches), "group_mode",
               "segments shorter than a match: every mode but episode, and PPO"),
        UsedBy(SOCCER_FIELDS, lambda c: c.env == "soccer", "env", "the soccer env, --env soccer"),
        UsedBy(("env_kwargs",), lambda c: c.env != "soccer", "env", "a vmas or pettingzoo env"),
        UsedBy(LEAGUE_FIELDS, lambda c: c.opponent == "league", "opponent", "the league, --opponent league"),
        UsedBy(EXPLOITER_FIELDS, lambda c: c.opponent == "league" and c.league_exploiters > 0, "league_exploiters",
               "the league's main exploiters, --opponent league --league-exploiters K"),
        UsedBy(("opponent_strength",), lambda c: c.opponent in BOT_NAMES, "opponent",
               f"a scripted opponent, --opponent {'|'.join(BOT_NAMES)}"),
    )

    name: str = "grpo"
    algo: str = "grpo"
    """grpo: group-relative advantages, no critic; ppo: GAE advantages from a learned critic
    (the MAPPO-style baseline), same policy and same clipped-ratio loss"""
    anneal_lr: bool = True

    # ------------------------------------------------------------------ env and opponent
    env: str = "soccer"
    """the task: soccer (this project's env), vmas:<scenario> (VMAS's batched torch envs,
    `marl_grpo.envs.vmas_env`) or pettingzoo:<module>:<function> (any PettingZoo parallel env with
    discrete actions, `marl_grpo.envs.pettingzoo_env`); the contract: `marl_grpo.envs.team`"""
    env_kwargs: tuple[str, ...] = ()
    """key=value settings of a vmas or pettingzoo task (e.g. n_agents=3), values read as Python literals"""
    team_size: int = 2
    """players per team"""
    max_cycles: int = 300
    """match length in steps (a vmas or pettingzoo env: its episodes' time limit, by default the task's own:
    BenchMARL's for VMAS, the env's `max_cycles` for PettingZoo)"""
    opponent: str = "team"
    """who plays red: a scripted bot (random, chaser, team), `self` (the policy plays both sides and
    learns from both), `league` (past selves, anchors and itself, with ratings: `marl_grpo.rl.league`),
    or the path of a soccer checkpoint folder (runs/<name>/checkpoint): that policy, frozen, samples
    red's actions from its own seeded stream (`marl_grpo.rl.opponent`); it must play this run's team sizes"""
    opponent_strength: float = 1.0
    """strength in [0, 1] of the scripted opponent"""
    compile_bots: bool = False
    """run the scripted bots (the opponent, the league's anchors, the evaluation bot) through
    torch.compile: their many small elementwise ops fuse into a few loops, so the bots run several
    times faster for a one-off build (figures: docs/benchmarks.md); same actions"""
    compile_env: bool = False
    """run the training env's rules through torch.compile (`SoccerVecEnv(compile=True)`): faster env
    steps and so faster training iterations, for a one-off build (shorter from torch's on-disk
    cache; figures: docs/benchmarks.md); equal to the eager rules up to float rounding"""

    # ------------------------------------------------------------------ league (--opponent league)
    league_latest_ratio: float = 0.5
    """share of matches where red is the current policy itself (mirrored self-play, both sides learn)"""
    league_anchor_ratio: float | None = None
    """share of matches against the anchors (drawn among them), the snapshots getting the rest;
    None: anchors and snapshots are drawn together, as one pool"""
    league_sampling: str = "pfsp"
    """how a pool member is drawn: uniform, or pfsp (weight (1 - p)^2, p the learner's recent
    score against it: AlphaStar's prioritised fictitious self-play)"""
    league_snapshot_every: int = 20
    """iterations between frozen snapshots of the learner added to the pool (runs/<name>/league/)"""
    league_size: int = 16
    """snapshots kept in the pool (the oldest leaves first); the anchors come on top"""
    league_keep_every: int = 0
    """keep the files of every k-th snapshot after it leaves the pool (0: delete them)"""
    league_anchors: str = "team,chaser"
    """scripted pool members, comma-separated bot names with an optional strength (team,chaser:0.5; empty: none)"""
    league_window: int = 100
    """recent results per member that PFSP reads"""
    league_elo_k: float = 4.0
    """Elo K factor: rating points per match per unit of surprise (updated once per iteration)"""
    league_exploiters: int = 0
    """main exploiters (AlphaStar's remedy for exploitability, `marl_grpo.rl.exploiters`): K branches of
    the learner, each trained only against the current learner and added to the pool when it beats
    it (0: none)"""
    league_exploiter_every: int = 3
    """learner iterations per exploiter iteration (the exploiters take turns): 3 gives them a quarter
    of the run's env steps"""
    league_exploiter_threshold: float = 0.7
    """an exploiter joins the pool when its score (win + draw / 2) over its last `league_window`
    matches against the learner reaches this (AlphaStar: 0.7), then branches again from the learner"""
    league_exploiter_timeout: int = 40
    """exploiter iterations after which it joins the pool (and branches again) even without that score"""
    reward_dist_to_ball: float = 0.001
    """weight of the distance-to-ball shaping term (the other env reward weights keep their defaults)"""

    # ------------------------------------------------------------------ GRPO groups
    group_mode: str = "branch"
    """what a group is: team, branch or episode, or a combination with team such as branch+team
    (DeepSeekMath's GRPO group of G answers to one prompt, transposed to the game; `marl_grpo.rl.groups`)"""
    branch_horizon: int = 32
    """H: steps per iteration's segment: how long each branch is played before the batch branches
    again (branch mode), the rollout length in team-only mode and for PPO"""
    supervision: str = "process"
    """outcome: one advantage per member (its whole return); process: return-to-go at each step,
    normalised across the group at the same step (DeepSeekMath sec. 4.1.3)"""
    gamma: float = 0.99
    """discount of the returns-to-go (GRPO process supervision) and of GAE (PPO)"""

    # ------------------------------------------------------------------ PPO critic
    critic: str = "centralized"
    """PPO's value network input: decentralized (the agent's observation) or centralized
    (the global state plus the agent's index, MAPPO)"""
    critic_hidden: int = 128
    """hidden width of the critic"""
    gae_lambda: float = 0.95
    """GAE lambda (Schulman et al. 2016)"""
    vf_coef: float = 0.5
    """weight of the value loss"""
    clip_vloss: bool = True
    """clip the value update around the rollout's values by clip_eps (CleanRL, MAPPO)"""
    norm_value: bool = True
    """value normalisation: the critic predicts returns standardised by a running mean and std
    (MAPPO's ValueNorm)"""
    norm_adv: bool = True
    """normalise PPO advantages per minibatch (CleanRL); GRPO advantages are already group-scaled"""

    # ------------------------------------------------------------------ budget
    num_envs: int = 1024
    """matches stepped together (a multiple of group_size in branch / episode mode)"""
    total_env_steps: int = 2_000_000
    """budget in match-steps (one vector-env step of num_envs matches counts num_envs)"""

    # ------------------------------------------------------------------ policy
    arch: str = "mlp"
    """policy network: mlp, or entity (DeepSets over teammates and opponents; plays any team size)"""
    hidden: int = 128
    """hidden width of the policy"""

    # ------------------------------------------------------------------ evaluation
    eval_matches: int = 64
    """matches per evaluation, over a fixed set of seeds"""
    eval_opponent: str = "team"
    """scripted bot used for evaluation"""
    eval_strength: float = 1.0
    """strength of the evaluation bot"""

    def validate(self) -> None:
        super().validate()
        check_choice(self, "algo", LEARNERS)
        check_choice(self, "critic", CRITIC_KINDS)
        check_choice(self, "arch", ARCHS)
        check_choice(self, "supervision", SUPERVISIONS)
        check_choice(self, "league_sampling", SAMPLINGS)
        check_number(self, "league_latest_ratio", high=1.0)
        if self.league_anchor_ratio is not None:
            check_number(self, "league_anchor_ratio", high=1.0 - self.league_latest_ratio)
        check_number(self, "league_elo_k")
        for name in ("league_snapshot_every", "league_size", "league_window"):
            check_int(self, name)
        check_int(self, "league_keep_every", low=0)
        check_int(self, "league_exploiters", low=0)
        check_int(self, "league_exploiter_every")
        check_int(self, "league_exploiter_timeout")
        check_number(self, "league_exploiter_threshold", high=1.0, low_open=True)
        parse_anchors(self.league_anchors)
        check_choice(self, "eval_opponent", BOT_NAMES)
        for name in ("gamma", "gae_lambda", "opponent_strength", "eval_strength"):
            check_number(self, name, high=1.0)
        check_number(self, "vf_coef")
        check_number(self, "reward_dist_to_ball", low=-math.inf)
        for name in ("num_envs", "total_env_steps", "branch_horizon", "max_cycles", "hidden", "critic_hidden",
                     "eval_matches", "group_size"):
            check_int(self, name)
        check_int(self, "team_size", high=MAX_TEAM_SIZE)
        groups = self.groups  # parses group_mode
        if self.learner.uses_groups and groups.copies_matches and (
                self.group_size < 2 or self.num_envs % self.group_size):
            raise ValueError(
                f"num_envs={self.num_envs} must be a multiple of group_size={self.group_size} (>= 2) "
                f"in {self.group_mode} mode")
        if self.env == "soccer" and self.learner.uses_groups and not groups.copies_matches and self.team_size < 2:
            raise ValueError(f"group_mode={self.group_mode!r} with team_size={self.team_size} gives one-member groups "
                             "(every advantage 0): use team_size >= 2, or a branch or episode mode")
        parse_env_spec(self.env)
        parse_env_kwargs(self.env_kwargs)
        if self.env != "soccer" and self.learner.uses_groups and self.reward_aggregation == "normalize_then_sum":
            raise ValueError(f"reward_aggregation='normalize_then_sum' needs the soccer env's reward components, not "
                             f"env={self.env!r}: use sum_then_normalize")
        if is_checkpoint_opponent(self.opponent):
            # refused before any training: a missing folder, an LLM checkpoint, other team sizes
            check_opponent_checkpoint(self.opponent, SoccerConfig.from_kwargs(**self.soccer_kwargs()))

    # ------------------------------------------------------------------ derived values
    @classmethod
    def presets(cls) -> dict[str, TrainConfig]:
        return PRESETS

    @property
    def learner(self) -> type[Algorithm]:
        """the learner class of `algo`"""
        return LEARNERS[self.algo]

    @property
    def groups(self) -> Groups:
        """the group modes of `group_mode` (fresh: they keep the episode counter of a run)"""
        return Groups(self.group_mode, self.group_size, self.seed)

    @property
    def segment_len(self) -> int:
        """T: steps per iteration (a whole match in episode mode)"""
        whole = self.learner.uses_groups and self.groups.whole_matches
        return self.max_cycles if whole else self.branch_horizon

    @property
    def env_steps_per_iteration(self) -> int:
        return self.segment_len * self.num_envs

    @property
    def iterations(self) -> int:
        """iterations of the budget (at least one)"""
        return max(1, self.total_env_steps // self.env_steps_per_iteration)

    def soccer_kwargs(self) -> dict[str, Any]:
        return {"team_size": self.team_size, "max_cycles": self.max_cycles,
                "reward_dist_to_ball": self.reward_dist_to_ball}


GRPO_PRESET_LR = 6e-3
"""learning rate of the GRPO presets `quick`, `2v2`, `selfplay` and `league-2v2`: it learnt
more per sample than 1e-3 for bot training, self-play and the league alike (docs/results.md, "How
6e-3 was found"); PPO's `ppo-2v2` keeps 1e-3, the rate it was compared at"""

PRESETS: dict[str, TrainConfig] = {
    # the first command of the getting-started page: a short run on a small CPU
    "quick": TrainConfig(name="quick", total_env_steps=3_000_000, eval_every=10, eval_matches=32, save_every=10,
                         learning_rate=GRPO_PRESET_LR),
    # the learning benchmark: 2v2 against the positional team bot, 15 minutes on 2 cores. Learning
    # rate 6e-3 (annealed over the 15 minutes): 1e-3 plateaued lower, and the updates stay small at
    # 6e-3 (approx KL, clip fraction and win rates: docs/results.md)
    "2v2": TrainConfig(name="2v2", total_env_steps=100_000_000, max_minutes=15.0, eval_every=50, compile_bots=True,
                       compile_env=True, learning_rate=GRPO_PRESET_LR),
    # the PPO-with-critic baseline on the same benchmark (4 epochs: PPO's best in a small sweep)
    "ppo-2v2": TrainConfig(name="ppo-2v2", algo="ppo", update_epochs=4, total_env_steps=100_000_000,
                           max_minutes=15.0, eval_every=50, compile_bots=True, compile_env=True),
    # self-play, both sides learn
    "selfplay": TrainConfig(name="selfplay", opponent="self", learning_rate=GRPO_PRESET_LR),
    # the self-play league, 15 minutes on 2 cores: 45% of the matches against itself, 30% against
    # the team and chaser bots (PFSP between them), 25% against its past snapshots (the
    # best of the mixes tried; docs/results.md compares it with plain self-play)
    "league-2v2": TrainConfig(name="league-2v2", opponent="league", total_env_steps=100_000_000, max_minutes=15.0,
                              eval_every=50, compile_bots=True, compile_env=True, league_snapshot_every=50,
                              league_latest_ratio=0.45, league_anchor_ratio=0.3, learning_rate=GRPO_PRESET_LR),
    # one entity-encoder policy
    "entity": TrainConfig(name="entity", arch="entity"),
    # the smallest real run, for tests
    "tiny": TrainConfig(name="tiny", num_envs=16, group_size=4, branch_horizon=8, max_cycles=40,
                        total_env_steps=16 * 8 * 3, eval_every=2, eval_matches=4, save_every=1,
                        hidden=32, progress=False),
}


def preset(name: str) -> TrainConfig:
    return pick_preset(PRESETS, name)

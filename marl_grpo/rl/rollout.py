"""Rollout: play segments of steps in the vector env and keep what the learner needs.

A *segment* is T steps of all B matches. The learner sees it as S = B * C sequences (C = the
agents the policy controls in each match), each T steps long: one player's stretch of play is
one "sequence", one step is one "token" (the shape glossary of `marl_grpo`). Before each segment
the GRPO group mode (`marl_grpo.rl.groups.Groups.start_segment`) may copy matches so that a
group's members start from the same state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from marl_grpo.agents import Bot, SoccerPolicy
from marl_grpo.envs import REWARD_COMPONENTS, SoccerVecEnv
from marl_grpo.rl.groups import Groups
from marl_grpo.rl.league import League
from marl_grpo.rl.opponent import PolicyOpponent


@dataclass
class Segment:
    """One segment of play: T steps, B matches, C controlled agents per match, D = observation width,
    D_state = global-state width (`SoccerConfig.state_dim`)."""

    obs: torch.Tensor  # [T, B, C, D]
    actions: torch.Tensor  # [T, B, C] int64
    logp: torch.Tensor  # [T, B, C] log-prob under the acting policy
    rewards: torch.Tensor  # [T, B, C]
    dones: torch.Tensor  # [T, B] bool, the match ended after step t
    team: torch.Tensor  # [C] 0 blue / 1 red, of each controlled agent
    episode_returns: list[float]  # mean return of the controlled agents, per match that ended
    episode_results: list[float]  # +1 win / 0 draw / -1 loss of the controlled side, per match that ended
    agents: torch.Tensor  # [C] index in the match of each controlled agent
    next_obs: torch.Tensor  # [B, C, D] observation after the last step (PPO bootstraps its value)
    states: torch.Tensor | None = None  # [T, B, D_state] global state before each step (centralized critic)
    next_state: torch.Tensor | None = None  # [B, D_state] global state after the last step
    learned: torch.Tensor | None = None  # [B, C] bool, the sequences the learner trains on (None: all)
    reward_components: torch.Tensor | None = None  # [T, B, C, F] weighted, summing to `rewards` (envs.REWARD_COMPONENTS)

    def learned_rows(self) -> torch.Tensor | None:
        """Indices m = b * C + c of the learned sequences (None: every sequence): against a league
        pool member, red is the member's play, not the learner's."""
        return None if self.learned is None else self.learned.reshape(-1).nonzero().squeeze(1)


class Collector:
    """Steps `env` with `policy` (for the controlled agents) and `opponent` (for the others);
    `groups` (None: no groups, as PPO) prepares each segment.

    `opponent`: a scripted `Bot` or a frozen checkpoint (`marl_grpo.rl.opponent.PolicyOpponent`,
    with a bot's interface; the policy controls blue), None (self-play: the policy controls
    everyone), or a `League` (`marl_grpo.rl.league`: the policy acts for blue, and for red in the
    matches where it plays itself; pool members play red in the others).

    `shard = (index, count)`: `env` holds slice `index` of `count` equal slices of the run's
    matches (one per process under torchrun). Its matches are seeded as that slice of a single
    process's matches, and the policy's and the opponent's random draws are that slice of the
    single process's draws, so the split run plays exactly the same matches.
    """

    def __init__(self, env: SoccerVecEnv, policy: SoccerPolicy, opponent: Bot | PolicyOpponent | League | None,
                 groups: Groups | None, seed: int, record_state: bool = False, shard: tuple[int, int] = (0, 1),
                 record_components: bool = False):
        self.env, self.policy, self.groups = env, policy, groups
        self.league = opponent if isinstance(opponent, League) else None
        self.opponent = None if self.league is not None else opponent
        self.shard = shard
        first_match = shard[0] * env.num_envs  # this slice's first match in the whole batch
        if self.opponent is not None:
            self.opponent.shard = shard
        self.record_state = record_state  # keep `env.state()` for a centralized critic
        self.record_components = record_components  # keep each reward component (normalize_then_sum)
        n = env.num_agents
        n_blue = env.config.n_blue if opponent is not None else n  # only soccer has opponents
        device = env.device
        # self-play and league: the policy may control everyone, and learns from both sides
        self.controlled = torch.arange(n if self.opponent is None else n_blue, device=device)
        self.others = torch.arange(n_blue, n, device=device) if self.opponent is not None else None
        # whose episode returns and results are reported: blue against a league (the learner's side)
        self.reported = torch.arange(n_blue if self.league is not None else len(self.controlled), device=device)
        self.team = torch.tensor(env.teams, device=device)[self.controlled]
        self.generator = torch.Generator(device=policy.device).manual_seed(seed)
        self.obs = env.reset(seed=seed + first_match)

    @torch.no_grad()
    def collect(self, steps: int) -> Segment:
        if self.groups is not None:
            started = self.groups.start_segment(self.env)
            self.obs = self.obs if started is None else started
        env = self.env
        B = env.num_envs
        learned = rows = None
        if self.league is not None:
            learned = self.league.start_segment(env, steps)
            rows = learned.reshape(-1).nonzero().squeeze(1)
        obs_buf, act_buf, logp_buf, rew_buf, done_buf, state_buf, comp_buf = [], [], [], [], [], [], []
        episode_returns, episode_results = [], []
        obs = self.obs
        for _ in range(steps):
            own = obs[:, self.controlled]
            if rows is not None:
                # the policy acts for the learned rows in one pass; pool members fill in red
                acted, acted_logp = self.policy.act(own.reshape(-1, own.shape[-1])[rows], generator=self.generator)
                actions = torch.zeros(B, env.num_agents, dtype=torch.long, device=env.device)
                logp = torch.zeros(B, env.num_agents, device=acted_logp.device)
                actions.view(-1)[rows], logp.view(-1)[rows] = acted, acted_logp
                self.league.act(obs, actions)
            else:
                actions, logp = self.policy.act(own, generator=self.generator, shard=self.shard)
            full = actions
            if self.opponent is not None:
                full = torch.empty(B, env.num_agents, dtype=torch.long, device=env.device)
                full[:, self.controlled] = actions
                full[:, self.others] = self.opponent.act(obs[:, self.others])  # the bot decides for its side only
            obs_buf.append(own)
            if self.record_state:
                state_buf.append(env.state())
            act_buf.append(actions)
            logp_buf.append(logp)
            obs, rewards, terminated, truncated, infos = env.step(full)
            rew_buf.append(rewards[:, self.controlled])
            if self.record_components:
                comp_buf.append(torch.stack([infos[f"reward_{k}"][:, self.controlled] for k in REWARD_COMPONENTS], -1))
            done = terminated | truncated
            done_buf.append(done)
            if bool(done.any()):
                ended = done.nonzero()[:, 0]
                episode_returns += infos["episode_return"][ended][:, self.reported].mean(1).tolist()
                if "final_score" in infos:  # soccer
                    # blue's result (in self-play both sides are the policy, so this is just blue's view)
                    score = infos["final_score"][ended]
                    results = (score[:, 0] - score[:, 1]).sign().float().tolist()
                    episode_results += results
                    if self.league is not None:
                        self.league.record(ended, results)
        self.obs = obs
        return Segment(
            obs=torch.stack(obs_buf), actions=torch.stack(act_buf), logp=torch.stack(logp_buf),
            rewards=torch.stack(rew_buf), dones=torch.stack(done_buf), team=self.team,
            episode_returns=episode_returns, episode_results=episode_results,
            agents=self.controlled, next_obs=obs[:, self.controlled],
            states=torch.stack(state_buf) if self.record_state else None,
            next_state=env.state() if self.record_state else None, learned=learned,
            reward_components=torch.stack(comp_buf) if self.record_components else None,
        )

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """The env's full state, the sampling streams (the policy's and the opponent's) and the group
        modes' counters (exact resume)."""
        return {"env": self.env.get_state(), "sampling_rng": self.generator.get_state(),
                "groups": None if self.groups is None else self.groups.state_dict(),
                "opponent": None if self.opponent is None else self.opponent.state_dict(),
                "league": None if self.league is None else self.league.rank_state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.obs = self.env.set_state({k: v.to(self.env.device) for k, v in state["env"].items()})
        self.generator.set_state(state["sampling_rng"])
        if self.groups is not None:
            self.groups.load_state_dict(state["groups"])
        if self.opponent is not None:
            self.opponent.load_state_dict(state["opponent"])
        if self.league is not None:
            self.league.load_rank_state_dict(state["league"])

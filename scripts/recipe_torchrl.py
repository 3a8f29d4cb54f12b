"""Recipe: MAPPO on the soccer env with TorchRL (`PettingZooWrapper` over the parallel API).

Install (torchrl==0.14.1, the newest that takes torch 2.13 as it is, is in the `dev` extra, the
one the tests use):

    pip install -e ".[dev]"             # or, next to an installed marl-grpo: pip install "torchrl==0.14.1"

Run (CPU or CUDA; `--device auto` picks cuda when it is there, no network needed):

    python scripts/recipe_torchrl.py                          # 3 iterations x 400 frames, < 30 s
    python scripts/recipe_torchrl.py --iterations 200 --frames-per-batch 6000 --max-cycles 300
    python scripts/recipe_torchrl.py --group-map one          # one group "agents": 1 policy for all 4
    python scripts/recipe_torchrl.py --opponent team          # the team bot plays red inside the env:
                                                              # one group "blue" learns against it
    python scripts/recipe_torchrl.py --smoke                  # the tiny budget the tests use

What it shows, following TorchRL's multi-agent PPO tutorial:

- `PettingZooWrapper(soccer_v0.parallel_env(...))` groups the agents per team (`blue`, `red`,
  from the `blue_0`/`red_1` names) or, with `--group-map one`, puts all of them in one `agents`
  group. Each group has its own data under `rollout[group]`: observation [T, n, D], action [T, n],
  reward / done [T, n, 1] and the env's per-agent infos under `rollout["next", group, "info"]`:
  the weighted reward components `reward_goal`, `reward_ball_touch`, ... (they sum to the reward)
  and `score_for` / `score_against`, each [T, n]. (`rollout[group, "info"]` at the root holds the
  infos of the previous step, zeros after a reset.)
- Per group: a decentralised policy shared by the group's players (`MultiAgentMLP`,
  `share_params=True`, Categorical over the 10 actions) and a centralised critic (MAPPO: each
  player's value reads the whole group's observations; one head per player, because each player
  has its own individual reward terms), trained with `ClipPPOLoss` + GAE.

It ends by scoring the trained blue policy (its most likely actions) against the team bot with
`marl_grpo.evaluate` (`--eval-matches` matches, seeds `--seed` onwards).

`main()` returns a dict (per-iteration mean episode rewards and losses, the last batch, the
`Score`) that `tests/test_recipes.py` checks.
"""

from __future__ import annotations

import argparse
import math
import time

import marl_grpo  # registers the env with PettingZoo; marl_grpo.evaluate scores the trained policy
import torch
from tensordict.nn import TensorDictModule, TensorDictSequential
from torch.distributions import Categorical
from torchrl.collectors import Collector
from torchrl.data.replay_buffers import ReplayBuffer
from torchrl.data.replay_buffers.samplers import SamplerWithoutReplacement
from torchrl.data.replay_buffers.storages import LazyTensorStorage
from torchrl.envs import PettingZooWrapper, RewardSum, TransformedEnv
from torchrl.envs.utils import MarlGroupMapType
from torchrl.modules import MultiAgentMLP, ProbabilisticActor
from torchrl.objectives import ClipPPOLoss, ValueEstimators

from marl_grpo.agents import env_opponent
from marl_grpo.envs import REWARD_COMPONENTS, SoccerConfig, soccer_v0


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def make_env(team_size: int = 2, max_cycles: int = 50, group_map: str = "team", seed: int = 0,
             device: torch.device | str = "cpu", opponent: str | None = None) -> TransformedEnv:
    """The soccer env as a TorchRL env, with a running episode return per group (`RewardSum`).
    `opponent` (a bot name or a checkpoint folder; None or "none": self-play) plays red inside the
    env, and only blue's players are agents."""
    red = env_opponent(opponent, SoccerConfig(team_size=team_size), seed)
    env = PettingZooWrapper(
        soccer_v0.parallel_env(team_size=team_size, max_cycles=max_cycles, opponent=red),
        group_map=MarlGroupMapType.ALL_IN_ONE_GROUP if group_map == "one" else None,  # None: per team
        return_state=True,  # the global state at rollout["state"], for a critic that wants it
        categorical_actions=True,
        seed=seed,
        device=device,
    )
    reset_keys = [(group, "_reset") for group in env.group_map]  # not the root "_reset"
    return TransformedEnv(env, RewardSum(in_keys=env.reward_keys, reset_keys=reset_keys))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--iterations", type=int, default=3, help="collect + train iterations")
    p.add_argument("--frames-per-batch", type=int, default=400, help="env steps per iteration")
    p.add_argument("--minibatch-size", type=int, default=200)
    p.add_argument("--epochs", type=int, default=2, help="PPO epochs over each batch")
    p.add_argument("--team-size", type=int, default=2)
    p.add_argument("--max-cycles", type=int, default=50, help="steps per match (300 is the env default)")
    p.add_argument("--group-map", choices=("team", "one"), default="team",
                   help="team: groups blue/red, each its own policy; one: group 'agents', one policy")
    p.add_argument("--opponent", default="none",
                   help="none (self-play: both teams learn), team, chaser, random (a bot plays red inside the "
                        "env) or PATH (a marl-grpo checkpoint folder plays red); then only blue learns")
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--gamma", type=float, default=0.99)
    p.add_argument("--lmbda", type=float, default=0.95)
    p.add_argument("--clip-epsilon", type=float, default=0.2)
    p.add_argument("--entropy-coeff", type=float, default=1e-3)
    p.add_argument("--max-grad-norm", type=float, default=1.0)
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:1, ...")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-matches", type=int, default=100,
                   help="matches of the final score against the team bot (marl_grpo.evaluate)")
    p.add_argument("--smoke", action="store_true",
                   help="tiny budget for CI: 2 iterations x 100 frames, matches of 40 steps")
    args = p.parse_args(argv)
    if args.smoke:
        args.iterations, args.frames_per_batch, args.minibatch_size, args.max_cycles = 2, 100, 50, 40
        args.hidden = 32
    return args


def build_group_modules(env, group: str, hidden: int, device: torch.device):
    """Policy (decentralised, parameters shared in the group) and centralised critic of one group."""
    n_agents = len(env.group_map[group])
    obs_dim = env.observation_spec[group, "observation"].shape[-1]
    n_actions = env.full_action_spec[group, "action"].space.n
    policy_net = MultiAgentMLP(n_agent_inputs=obs_dim, n_agent_outputs=n_actions, n_agents=n_agents,
                               centralised=False, share_params=True, device=device, depth=2,
                               num_cells=hidden, activation_class=torch.nn.Tanh)
    policy = ProbabilisticActor(
        TensorDictModule(policy_net, in_keys=[(group, "observation")], out_keys=[(group, "logits")]),
        in_keys={"logits": (group, "logits")},
        out_keys=[(group, "action")],
        distribution_class=Categorical,
        return_log_prob=True,
        log_prob_key=(group, "sample_log_prob"),
    )
    critic_net = MultiAgentMLP(n_agent_inputs=obs_dim, n_agent_outputs=1, n_agents=n_agents,
                               centralised=True, share_params=False, device=device, depth=2,
                               num_cells=hidden, activation_class=torch.nn.Tanh)
    critic = TensorDictModule(critic_net, in_keys=[(group, "observation")], out_keys=[(group, "state_value")])
    return policy, critic


def blue_actor(policies: dict, group_map: dict, device: torch.device):
    """The trained blue policy as a `marl_grpo.evaluate` callable: obs [B, N, D] -> its most likely
    actions [B, N]. The group `blue`, or with `--group-map one` the group `agents`, which has more
    players than blue: its policy is decentralised with shared parameters (each row's action reads
    only that row), so blue's rows are padded with zeros to the group's size and the rest dropped."""
    from tensordict import TensorDict
    from torchrl.envs.utils import ExplorationType, set_exploration_type

    group = "blue" if "blue" in policies else "agents"
    actor, size = policies[group], len(group_map[group])

    def act(obs: torch.Tensor) -> torch.Tensor:
        batch, n_blue, width = obs.shape
        rows = torch.cat([obs, obs.new_zeros(batch, size - n_blue, width)], 1).to(device)
        with torch.no_grad(), set_exploration_type(ExplorationType.DETERMINISTIC):
            return actor(TensorDict({(group, "observation"): rows}, batch_size=[batch]))[group, "action"][:, :n_blue]
    return act


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    device = pick_device(args.device)
    env = make_env(args.team_size, args.max_cycles, args.group_map, args.seed, device, args.opponent)
    groups = list(env.group_map)
    print(f"device={device} groups={dict(env.group_map)}")

    policies, losses = {}, {}
    for group in groups:
        policy, critic = build_group_modules(env, group, args.hidden, device)
        loss = ClipPPOLoss(actor_network=policy, critic_network=critic, clip_epsilon=args.clip_epsilon,
                           entropy_coeff=args.entropy_coeff,
                           normalize_advantage=False)  # don't normalise across the agent dimension
        loss.set_keys(reward=(group, "reward"), action=(group, "action"), done=(group, "done"),
                      terminated=(group, "terminated"), value=(group, "state_value"),
                      sample_log_prob=(group, "sample_log_prob"),
                      advantage=(group, "advantage"), value_target=(group, "value_target"))
        loss.make_value_estimator(ValueEstimators.GAE, gamma=args.gamma, lmbda=args.lmbda)
        policies[group], losses[group] = policy, loss
    params = [p for loss in losses.values() for p in loss.parameters()]
    optim = torch.optim.Adam(params, args.lr)

    collector = Collector(env, TensorDictSequential(*policies.values()), frames_per_batch=args.frames_per_batch,
                          total_frames=args.iterations * args.frames_per_batch, device=device,
                          storing_device=device,
                          auto_register_policy_transforms=False)  # no recurrent policy: nothing to add
    buffer = ReplayBuffer(storage=LazyTensorStorage(args.frames_per_batch, device=device),
                          sampler=SamplerWithoutReplacement(), batch_size=args.minibatch_size)

    history: list[dict] = []
    data = None
    start = time.perf_counter()
    for it, data in enumerate(collector):
        if it == 0:
            for g in groups:
                print(f"rollout['next', '{g}', 'info', 'reward_goal'].shape = "
                      f"{tuple(data['next', g, 'info', 'reward_goal'].shape)}; info keys: "
                      f"{sorted(data['next', g, 'info'].keys())}")
        with torch.no_grad():
            for loss in losses.values():
                loss.value_estimator(data, params=loss.critic_network_params,
                                     target_params=loss.target_critic_network_params)
        buffer.empty()
        buffer.extend(data.reshape(-1))
        loss_log = {g: [] for g in groups}
        for _ in range(args.epochs):
            for _ in range(max(1, args.frames_per_batch // args.minibatch_size)):
                batch = buffer.sample()
                total = 0.0
                for g, loss in losses.items():
                    vals = loss(batch)
                    value = vals["loss_objective"] + vals["loss_critic"] + vals["loss_entropy"]
                    loss_log[g].append(value.item())
                    total = total + value
                total.backward()
                torch.nn.utils.clip_grad_norm_(params, args.max_grad_norm)
                optim.step()
                optim.zero_grad()
        collector.update_policy_weights_()

        row: dict = {"iteration": it, "frames": (it + 1) * args.frames_per_batch}
        for g in groups:
            done = data["next", g, "done"]
            returns = data["next", g, "episode_reward"][done]
            row[f"{g}/episode_reward_mean"] = returns.mean().item() if returns.numel() else math.nan
            row[f"{g}/episodes"] = int(done.any(-1).any(-1).sum())  # [T, n, 1] -> matches that ended
            row[f"{g}/loss"] = sum(loss_log[g]) / len(loss_log[g])
            for name in REWARD_COMPONENTS:  # each component summed over the batch, mean over players
                row[f"{g}/reward_{name}"] = data["next", g, "info", f"reward_{name}"].sum(0).mean().item()
        history.append(row)
        print(f"iter {it}: " + "  ".join(
            f"{g}: episode_reward_mean={row[f'{g}/episode_reward_mean']:+.3f} "
            f"loss={row[f'{g}/loss']:+.4f} goal={row[f'{g}/reward_goal']:+.3f}" for g in groups)
              + f"  ({time.perf_counter() - start:.1f} s)")
    collector.shutdown()
    env.close()
    score = marl_grpo.evaluate(blue_actor(policies, env.group_map, device), team_size=args.team_size,
                               opponent="team", matches=args.eval_matches, seed=args.seed, obs_type="torch",
                               device=device, max_cycles=args.max_cycles)
    print(f"the trained blue policy, scored by marl_grpo.evaluate:\n{score}")
    return {"history": history, "groups": groups, "last_batch": data, "env_group_map": dict(env.group_map),
            "score": score}


if __name__ == "__main__":
    main()

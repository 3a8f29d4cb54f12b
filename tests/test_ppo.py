"""The PPO-with-critic baseline: critic inputs, value normalisation, GAE advantages from the
critic, the shared policy loss, a real update, and the CLI run with its logs and resume."""

import dataclasses
import json

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import marl_grpo.run.update
from marl_grpo.agents import SoccerCritic, SoccerPolicy, make_bot
from marl_grpo.cli import main
from marl_grpo.envs import SoccerConfig, SoccerVecEnv
from marl_grpo.rl import TrainConfig, preset
from marl_grpo.rl.ppo import PPOLearner, ValueNormalizer
from marl_grpo.rl.train import make_collector, make_learner
from marl_grpo.run.update import policy_update


def _setup(device, critic="centralized", opponent="team", **overrides):
    cfg = dataclasses.replace(preset("tiny"), algo="ppo", critic=critic, opponent=opponent, **overrides)
    env = SoccerVecEnv(num_envs=cfg.num_envs, device=device, **cfg.soccer_kwargs())
    torch.manual_seed(0)
    policy = SoccerPolicy(env.config, hidden=16, device=device)
    learner = make_learner(policy, cfg, env)
    bot = None if opponent == "self" else make_bot(opponent, env.config, device=device)
    return cfg, env, policy, learner, make_collector(env, policy, bot, learner, cfg)


def test_critic_inputs(device):
    config = SoccerConfig(team_size=2)
    central = SoccerCritic(config, "centralized", hidden=8, device=device)
    assert central.input_dim == config.state_dim + 4 == 27
    state = torch.randn(5, config.state_dim).to(device)
    agents = torch.tensor([0, 1], device=device)
    x = central.inputs(torch.zeros(5, 2, 35, device=device), state, agents)
    assert x.shape == (5, 2, 27)
    assert torch.equal(x[:, 1, : config.state_dim], state)
    assert x[0, 0, config.state_dim:].tolist() == [1, 0, 0, 0] and x[0, 1, config.state_dim:].tolist() == [0, 1, 0, 0]
    assert central(x).shape == (5, 2)
    decentral = SoccerCritic(config, "decentralized", hidden=8, device=device)
    obs = torch.randn(5, 2, 35).to(device)
    assert decentral.inputs(obs, None, agents) is obs and decentral(obs).shape == (5, 2)
    with pytest.raises(ValueError, match="critic='joint' is invalid"):
        SoccerCritic(config, "joint")
    with pytest.raises(ValueError, match="needs the global state"):
        central.inputs(obs, None, agents)
    with pytest.raises(ValueError, match="expects inputs 27 wide, got 35"):
        central(obs)


def test_value_normalizer_tracks_mean_and_variance(device):
    norm = ValueNormalizer(True)
    data = torch.tensor([1.0, 2.0, 3.0, 10.0], device=device), torch.tensor([-4.0, 0.5], device=device)
    for batch in data:
        norm.update(batch)
    every = torch.cat(data).double().cpu().numpy()
    assert norm.stats.mean == pytest.approx(every.mean(), rel=1e-3)
    assert norm.stats.var == pytest.approx(every.var(), rel=1e-3)
    x = torch.tensor([0.0, 5.0], device=device)
    torch.testing.assert_close(norm.normalize(x), ((x - every.mean()) / np.sqrt(every.var())).float(), rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(norm.denormalize(norm.normalize(x)), x)
    other = ValueNormalizer(True)
    other.load_state_dict(norm.state_dict())
    assert other.state_dict() == norm.state_dict()
    off = ValueNormalizer(False)
    off.update(torch.tensor([100.0], device=device))
    assert torch.equal(off.normalize(x), x)


@pytest.mark.parametrize("critic", ["centralized", "decentralized"])
def test_advantages_are_gae_of_the_critic(critic, device):
    gamma, lam = 0.9, 0.8
    cfg, env, policy, learner, collector = _setup(device, critic, gamma=gamma, gae_lambda=lam, max_cycles=12)
    collector.collect(cfg.branch_horizon)  # a first segment: the value normaliser has statistics
    learner.advantages(collector.collect(cfg.branch_horizon))
    segment = collector.collect(cfg.branch_horizon)
    assert (segment.states is not None) == (critic == "centralized")
    assert segment.dones.any(), "the tiny matches should end inside a segment"
    assert learner.value_norm.stats.count > 1
    before = ValueNormalizer(True)  # the statistics the advantages are computed with (they update after)
    before.load_state_dict(learner.value_norm.state_dict())
    batch, stats = learner.advantages(segment)
    adv = batch.advantages.T.cpu()  # [T, M]

    # the same numbers from a plain loop over steps, sequences and the critic called row by row
    T, B, C = segment.rewards.shape
    with torch.no_grad():
        def value(obs, state, c):
            x = obs if critic == "decentralized" else torch.cat(
                [state, torch.nn.functional.one_hot(segment.agents[c], env.num_agents).float()])
            return float(before.denormalize(learner.critic(x)))
        values, returns = [], []
        for b in range(B):
            for c in range(C):
                states = segment.states if segment.states is not None else torch.zeros(T, B, 1)
                nxt = value(segment.next_obs[b, c], None if segment.next_state is None else segment.next_state[b], c)
                running = 0.0
                for t in reversed(range(T)):
                    v = value(segment.obs[t, b, c], states[t, b], c)
                    not_done = 0.0 if segment.dones[t, b] else 1.0
                    delta = float(segment.rewards[t, b, c]) + gamma * not_done * nxt - v
                    running = delta + gamma * lam * not_done * running
                    assert adv[t, b * C + c] == pytest.approx(running, abs=1e-4)
                    values.append(v)
                    returns.append(running + v)
                    nxt = v
    # CleanRL's explained variance of the rollout's values against the GAE returns
    values, returns = np.array(values), np.array(returns)
    expected = 1 - np.var(returns - values) / np.var(returns)
    assert stats["losses/explained_variance"] == pytest.approx(expected, abs=1e-3)


def test_update_uses_the_shared_policy_loss_and_trains_the_critic(monkeypatch, device):
    calls = []
    shared = marl_grpo.run.update.policy_loss

    def counting(*args, **kwargs):
        calls.append(kwargs["options"].loss_type)  # the PolicyLossOptions the update built
        return shared(*args, **kwargs)

    monkeypatch.setattr(marl_grpo.run.update, "policy_loss", counting)
    cfg, env, policy, learner, collector = _setup(device, update_epochs=3, num_minibatches=2)
    segment = collector.collect(cfg.branch_horizon)
    actor = [p.clone() for p in policy.parameters()]
    critic = [p.clone() for p in learner.critic.parameters()]

    def update():
        return policy_update(learner.advantages(segment)[0], learner.optimizer, learner.parameters, cfg)

    first = update()
    assert len(calls) == 3 * 2  # epochs x minibatches, all through losses.policy_loss
    assert all(not torch.equal(a, b) for a, b in zip(actor, policy.parameters()))
    assert all(not torch.equal(a, b) for a, b in zip(critic, learner.critic.parameters()))
    assert {"losses/value_loss", "losses/value_clip_frac", "losses/policy_loss", "losses/approx_kl"} <= set(first)
    # the critic fits the targets: more passes over the same segment lower the value loss
    for _ in range(15):
        last = update()  # (the targets move slightly with the normaliser)
    assert last["losses/value_loss"] < 0.7 * first["losses/value_loss"]


def test_ppo_ignores_groups_and_counts_parameters():
    # 30 is no multiple of 8: only an error for GRPO's branch groups
    cfg = dataclasses.replace(TrainConfig(), algo="ppo", group_mode="branch", num_envs=30, group_size=8)
    assert not cfg.learner.uses_groups and cfg.segment_len == cfg.branch_horizon
    with pytest.raises(ValueError, match="multiple of group_size"):
        dataclasses.replace(cfg, algo="grpo")
    with pytest.raises(ValueError, match=r"algo='a2c' is invalid: expected one of \('grpo', 'ppo'\)"):
        dataclasses.replace(cfg, algo="a2c")
    with pytest.raises(ValueError, match="critic='joint' is invalid"):
        dataclasses.replace(cfg, critic="joint")
    with pytest.raises(ValueError, match=r"gae_lambda=1.5 is invalid"):
        dataclasses.replace(cfg, gae_lambda=1.5)
    env_config = SoccerConfig(team_size=2)
    learner = PPOLearner(SoccerPolicy(env_config, hidden=16, device="cpu"), cfg, env_config)
    counts = learner.num_parameters()
    assert counts == {"actor_parameters": learner.policy.num_parameters(),
                      "critic_parameters": sum(p.numel() for p in learner.critic.parameters())}
    # 27 -> 128 -> 128 -> 1
    assert counts["critic_parameters"] == 27 * 128 + 128 + 128 * 128 + 128 + 128 + 1


def test_ppo_cli_run_logs_value_tags_and_resumes(tmp_path, device):
    runs = tmp_path / "runs"
    args = ["train", "--preset", "tiny", "--algo", "ppo", "--log-dir", str(runs), "--name", "p", "--max-cycles", "16",
            "--device", device]
    main(args + ["--total-env-steps", "256"])
    acc = EventAccumulator(str(runs / "p"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"losses/value_loss", "losses/explained_variance", "losses/policy_loss", "charts/episodic_return",
            "eval/win_rate", "charts/peak_memory_mb"} <= tags
    assert [e.step for e in acc.Scalars("losses/value_loss")] == [128, 256]
    text = acc.Tensors("hyperparameters/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "|critic_parameters|" in text and "|actor_parameters|" in text and "|algo|ppo|" in text

    state = torch.load(runs / "p" / "checkpoint" / "trainer_state.pt", weights_only=False)["trainer"]
    saved_critic = state["learner"]["critic"]
    assert state["learner"]["value_norm"]["count"] > 1
    main(args + ["--total-env-steps", "384", "--resume"])
    acc = EventAccumulator(str(runs / "p"))
    acc.Reload()
    assert [e.step for e in acc.Scalars("losses/value_loss")] == [128, 256, 384]
    resumed = torch.load(runs / "p" / "checkpoint" / "trainer_state.pt", weights_only=False)["trainer"]["learner"]["critic"]
    assert any(not torch.equal(saved_critic[k], resumed[k]) for k in saved_critic)  # kept training the critic
    assert json.loads((runs / "p" / "checkpoint" / "config.json").read_text())["train"]["algo"] == "ppo"

"""The GRPO learner: group ids of every mode, advantages against a plain loop, and one real update."""

import dataclasses

import pytest
import torch

from marl_grpo.agents import SoccerPolicy, make_bot
from marl_grpo.envs import SoccerConfig, SoccerVecEnv
from marl_grpo.rl import TrainConfig, preset
from marl_grpo.rl.grpo import GRPOLearner
from marl_grpo.rl.rollout import Collector, Segment
from marl_grpo.run.update import policy_update


def _segment(device: str, T=3, B=4, C=2, seed=0) -> Segment:
    g = torch.Generator().manual_seed(seed)
    segment = Segment(obs=torch.zeros(T, B, C, 35), actions=torch.zeros(T, B, C, dtype=torch.long),
                      logp=torch.zeros(T, B, C), rewards=torch.randn(T, B, C, generator=g),
                      dones=torch.zeros(T, B, dtype=torch.bool), team=torch.zeros(C, dtype=torch.long),
                      episode_returns=[], episode_results=[], agents=torch.arange(C),
                      next_obs=torch.zeros(B, C, 35))
    # drawn on the CPU (the same rewards on every device), then moved to the test device
    return Segment(**{k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in vars(segment).items()})


def _learner(device: str, **overrides) -> GRPOLearner:
    # one setting for every mode: a group size that team mode does not read is not the test's subject
    cfg = dataclasses.replace(TrainConfig(), num_envs=4, group_size=2, given=frozenset(overrides), **overrides)
    policy = SoccerPolicy(35, hidden=8, device=device)
    return GRPOLearner(policy, cfg, SoccerConfig(team_size=2))


@pytest.mark.parametrize("mode, expected", [
    # sequences m = b * C + c with B = 4 matches, C = 2 blue players, G = 2
    ("branch", [0, 1, 0, 1, 2, 3, 2, 3]),          # same player across the 2 copies of a state
    ("episode", [0, 1, 0, 1, 2, 3, 2, 3]),
    ("branch+team", [0, 0, 0, 0, 2, 2, 2, 2]),     # every teammate in every copy
    ("team", [0, 0, 2, 2, 4, 4, 6, 6]),            # the teammates of one match
])
def test_group_ids(mode, expected, device):
    assert _learner(device, group_mode=mode).group_ids(_segment(device)).tolist() == expected


def test_outcome_advantages_match_a_loop(device):
    learner = _learner(device, group_mode="branch", supervision="outcome")
    seg = _segment(device)
    batch, stats = learner.advantages(seg)
    adv = batch.advantages.T.cpu()  # [T, M]
    returns = seg.rewards.cpu().reshape(3, 8).sum(0)
    ids = learner.group_ids(seg).tolist()
    for m in range(8):
        members = torch.tensor([returns[k] for k in range(8) if ids[k] == ids[m]])
        expected = (returns[m] - members.mean()) / (members.std() + 1e-4)
        assert torch.allclose(adv[:, m], expected.expand(3), atol=1e-5)
    assert stats["grpo/group_size"] == 2.0


def test_process_advantages_use_returns_to_go_per_step(device):
    learner = _learner(device, group_mode="branch", supervision="process", gamma=0.5)
    seg = _segment(device)
    adv = learner.advantages(seg)[0].advantages.T.cpu()
    r = seg.rewards.cpu().reshape(3, 8)
    rtg = torch.stack([r[2] * 0.25 + r[1] * 0.5 + r[0], r[2] * 0.5 + r[1], r[2]])
    ids = learner.group_ids(seg).tolist()
    for t in range(3):
        for m in range(8):
            members = torch.stack([rtg[t, k] for k in range(8) if ids[k] == ids[m]])
            expected = (rtg[t, m] - members.mean()) / (members.std() + 1e-4)
            assert torch.allclose(adv[t, m], expected, atol=1e-4)


@pytest.mark.parametrize("opponent, kl_coef", [("team", 0.0), ("self", 0.1)])
def test_one_real_iteration_changes_the_policy(opponent, kl_coef, device):
    cfg = dataclasses.replace(preset("tiny"), opponent=opponent, kl_coef=kl_coef)
    env = SoccerVecEnv(num_envs=cfg.num_envs, device=device, **cfg.soccer_kwargs())
    policy = SoccerPolicy(env.config, hidden=16, device=device)
    bot = None if opponent == "self" else make_bot(opponent, env.config, device=device)
    learner = GRPOLearner(policy, cfg, env.config)
    learner.refresh_reference()
    collector = Collector(env, policy, bot, cfg.groups, seed=0)
    segment = collector.collect(cfg.branch_horizon)
    assert segment.obs.shape == (8, 16, 4 if opponent == "self" else 2, env.obs_dim)
    before = [p.clone() for p in policy.parameters()]
    batch, _ = learner.advantages(segment)
    with torch.no_grad():
        logp_before = batch.log_probs(torch.arange(batch.num_units, device=device))[0]
    stats = policy_update(batch, learner.optimizer, learner.parameters, cfg)
    assert all(not torch.equal(a, b) for a, b in zip(before, policy.parameters()))
    # the step went uphill on the surrogate: actions with a positive advantage became more likely
    with torch.no_grad():
        moved = batch.log_probs(torch.arange(batch.num_units, device=device))[0] - logp_before
    assert float((moved * batch.advantages).sum()) > 0
    assert {"losses/policy_loss", "losses/entropy", "losses/approx_kl", "losses/clipfrac"} <= set(stats)
    assert ("losses/kl" in stats) == (kl_coef > 0)
    # the first epoch starts on-policy: every ratio is 1 before the first step
    assert stats["losses/approx_kl"] < 0.05


def _segment_and_learner(device, **changes):
    from marl_grpo.rl.train import SoccerTrainer

    cfg = dataclasses.replace(preset("tiny"), max_cycles=16, num_envs=16, group_size=4, **changes)
    trainer = SoccerTrainer(cfg, torch.device(device), None)
    return trainer.collect(), trainer.learner


@pytest.mark.parametrize("supervision", ["process", "outcome"])
def test_loo_baseline_is_the_mean_baseline_scaled_by_n_over_n_minus_1(supervision, device):
    """RLOO's r_i - mean_{j != i} r_j = n / (n - 1) (r_i - mean_j r_j), in branch groups of 4."""
    segment, learner = _segment_and_learner(device, supervision=supervision, scale="none")
    mean_adv = learner.advantages(segment)[0].advantages
    learner.cfg = dataclasses.replace(learner.cfg, advantage_baseline="loo")
    loo_adv = learner.advantages(segment)[0].advantages
    assert mean_adv.abs().max() > 0
    torch.testing.assert_close(loo_adv, mean_adv * 4 / 3)


@pytest.mark.parametrize("supervision", ["process", "outcome"])
def test_normalize_then_sum_reads_the_envs_reward_components(supervision, device):
    from marl_grpo.advantages import episode_returns, group_advantages, process_group_advantages

    segment, learner = _segment_and_learner(device, supervision=supervision, reward_aggregation="normalize_then_sum")
    parts = segment.reward_components  # [T, B, C, F]
    T, B, C = segment.rewards.shape
    assert parts.shape == (T, B, C, 5)
    torch.testing.assert_close(parts.sum(-1), segment.rewards)  # weighted components sum to the reward
    assert (parts[..., 0] != 0).any() or (parts[..., 4] != 0).any()
    adv = learner.advantages(segment)[0].advantages  # [S, T]
    ids = learner.group_ids(segment)
    weights = [abs(w) for w in SoccerConfig(team_size=2).reward_weights.values()]
    rewards, dones = parts.reshape(T, B * C, 5), segment.dones.repeat_interleave(C, dim=1)
    options = dict(group_ids=ids, scale="group", aggregation="normalize_then_sum", components=True,
                   reward_weights=weights)
    if supervision == "process":
        expected = process_group_advantages(rewards, gamma=0.99, dones=dones, **options)
    else:
        outcomes = episode_returns(rewards, dones[..., None].expand_as(rewards))
        expected = group_advantages(outcomes.transpose(0, 1), **options).T
    torch.testing.assert_close(adv, expected.T)
    # and it is not the summed reward's advantage
    learner.cfg = dataclasses.replace(learner.cfg, reward_aggregation="sum_then_normalize")
    assert not torch.allclose(learner.advantages(segment)[0].advantages, adv)


def _on_policy_loss(loss_type: str, logp: torch.Tensor, advantages: torch.Tensor) -> float:
    """The loss of each type where every ratio is 1 and every step is real (soccer), by hand:
    the clipped surrogates give -A per step, cispo -min(1, 0.2) A logp (its cap falls back to
    clip_eps), sapo -sigmoid(0) 4 / tau A, vespo -phi(1) A logp; luspo sums a segment's steps."""
    adv = advantages if advantages.dim() == 2 else advantages[:, None].expand_as(logp)
    tau = torch.where(adv > 0, 1.0, 1.05)
    per_step = {"cispo": 0.2 * adv * logp, "sapo": 2 / tau * adv, "vespo": adv * logp}.get(loss_type, adv)
    return float(-per_step.sum(1).mean() if loss_type == "luspo" else -per_step.mean())


@pytest.mark.parametrize("loss_type, ratio_level", [("cispo", "token"), ("sapo", "token"), ("vespo", "token"),
                                                   ("luspo", "sequence"), ("grpo", "sequence")])
def test_soccer_trains_with_every_trl_loss_type(tmp_path, monkeypatch, loss_type, ratio_level):
    """The command line's loss type reaches the loss core, whose value on the update's first
    (on-policy) minibatches is the hand-computed one, never zero, and whose stats are the type's own."""
    import marl_grpo.run.update
    from marl_grpo.cli import main
    from marl_grpo.losses import policy_loss

    calls = []

    def recording(*args, options, ref_logp=None):
        loss, stats = policy_loss(*args, options=options, ref_logp=ref_logp)
        calls.append((args, options, float(loss.detach()), stats))
        return loss, stats

    monkeypatch.setattr(marl_grpo.run.update, "policy_loss", recording)
    main(["train", "--preset", "tiny", "--max-cycles", "16", "--log-dir", str(tmp_path), "--loss-type", loss_type,
          "--ratio-level", ratio_level, "--advantage-baseline", "loo"])
    result = __import__("json").loads((tmp_path / "tiny" / "result.json").read_text())
    assert result["config"]["loss_type"] == loss_type and result["iteration"] == 3
    assert len(calls) == 3 * 2 * 8  # iterations x epochs x minibatches
    assert {(options.loss_type, options.ratio_level) for _, options, _, _ in calls} == {(loss_type, ratio_level)}
    on_policy = [(args, loss) for args, _, loss, _ in calls if torch.allclose(args[0], args[1], atol=1e-5)]
    assert len(on_policy) >= 3  # at least each iteration's first minibatch
    expected = [_on_policy_loss(loss_type, args[0].detach(), args[2]) for args, _ in on_policy]
    assert [loss for _, loss in on_policy] == pytest.approx(expected, rel=1e-4, abs=1e-6)
    assert max(abs(e) for e in expected) > 1e-3
    stats = calls[0][3]
    assert ("cispo_clip_ratio" in stats) == (loss_type == "cispo")
    assert ("vespo/phi_seq_mean" in stats) == (loss_type == "vespo")
    assert ("clip_frac" in stats) == (loss_type not in ("sapo", "vespo"))


def test_compile_env_trains_on_the_compiled_rules():
    """`--compile-env` builds the training env with `compile=True` (on in the 15-minute presets) and
    a segment collects through it (same shapes, finite), close to the eager env's first step."""
    from marl_grpo.rl.train import SoccerTrainer

    assert preset("2v2").compile_env and preset("league-2v2").compile_env and not preset("quick").compile_env
    cfg = dataclasses.replace(preset("tiny"), max_cycles=16, num_envs=16, group_size=4, compile_env=True)
    trainer = SoccerTrainer(cfg, torch.device("cpu"), None)
    engine = trainer.env.engine
    assert engine._physics_fn is not engine._physics and not engine.ops.numpy_sqrt
    segment = trainer.collect()
    eager, _ = _segment_and_learner("cpu")
    assert segment.obs.shape == eager.obs.shape and torch.isfinite(segment.obs).all()
    torch.testing.assert_close(segment.obs[0], eager.obs[0], rtol=0, atol=1e-5)

"""The LLM-agent mode: prompts, strict answers, log-probs, the shared loss core, a real run."""

import copy
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

pytest.importorskip("transformers")

from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

import marl_grpo.llm.train  # noqa: E402
import marl_grpo.run.update  # noqa: E402
from marl_grpo.cli import main  # noqa: E402
from marl_grpo.llm import LLMConfig, preset, train_llm  # noqa: E402
from marl_grpo.llm.train import load_agent  # noqa: E402
from marl_grpo.agents import make_bot  # noqa: E402
from marl_grpo.agents.llm import Completions, LLMAgent, build_tiny_tokenizer, eos_mask  # noqa: E402
from marl_grpo.agents.llm_text import (  # noqa: E402
    ACTION_WORDS, DIRECTION_ANSWERS, compass, parse_answer, parse_answers, render_direction, render_soccer, vocabulary,
)
from marl_grpo.envs import SoccerVecEnv  # noqa: E402
from marl_grpo.advantages import group_advantages  # noqa: E402
from marl_grpo.llm.config import PRESETS  # noqa: E402
from marl_grpo.llm.tasks import DirectionTask, SoccerTask, answer_rewards, reward_components  # noqa: E402
from marl_grpo.run.presets import parse_with_preset  # noqa: E402
from marl_grpo.losses import policy_loss  # noqa: E402

TINY = {"hidden_size": 32, "num_layers": 2, "num_heads": 2, "intermediate_size": 64}
LLM_TAGS = {"llm/reward_mean", "llm/reward_std", "llm/frac_zero_std", "llm/invalid_frac", "llm/completion_len",
            "llm/tokens_per_s", "llm/answer_reward", "losses/policy_loss", "losses/approx_kl", "losses/clipfrac",
            "losses/kl", "losses/entropy", "eval/reward_greedy", "eval/reward_sampled", "eval/reward_chance"}


@pytest.fixture(scope="module")
def agent(device) -> LLMAgent:
    return LLMAgent.tiny(seed=0, device=device, **TINY)


def _states(team_sizes: tuple[int, int], steps: int, seed: int, device: str) -> tuple[SoccerVecEnv, torch.Tensor]:
    """Observations [B * N, D] of bot matches after `steps` steps (chaser vs random: varied play)."""
    env = SoccerVecEnv(num_envs=3, blue_size=team_sizes[0], red_size=team_sizes[1], device=device, max_cycles=60)
    chaser = make_bot("chaser", env.config, seed=seed, device=device)
    rand = make_bot("random", env.config, seed=seed, device=device)
    obs = env.reset(seed=seed)
    for _ in range(steps):
        actions = torch.where(torch.rand(obs.shape[:2], device=device) < 0.5, chaser.act(obs), rand.act(obs))
        obs = env.step(actions)[0]
    return env, obs.reshape(-1, obs.shape[-1])


def _batch(agent: LLMAgent, prompts: list[str], completions: list[list[str]], group_size: int) -> Completions:
    """A batch with hand-written completions (word lists; "<eos>" ends one), right-padded, on the
    agent's device."""
    tok = agent.tokenizer
    enc = tok(prompts, return_tensors="pt", padding=True).to(agent.device)
    width = max(len(c) for c in completions)
    ids = torch.tensor([[tok.convert_tokens_to_ids(w) for w in c] + [tok.pad_token_id] * (width - len(c))
                        for c in completions], device=agent.device)
    mask = eos_mask(ids, agent.eos_token_id)
    return Completions(enc["input_ids"].repeat_interleave(group_size, 0),
                       enc["attention_mask"].repeat_interleave(group_size, 0), ids, mask, agent.decode(ids), group_size)


def _scalars(run_dir: Path) -> dict[str, list]:
    acc = EventAccumulator(str(run_dir))
    acc.Reload()
    return {tag: acc.Scalars(tag) for tag in acc.Tags()["scalars"]}


# --------------------------------------------------------------------------- text


@pytest.mark.parametrize("team_sizes", [(1, 1), (2, 2), (3, 3), (1, 3), (3, 2)])
def test_prompts_use_only_the_tiny_vocabulary(team_sizes, device):
    tok = build_tiny_tokenizer()
    assert tok.unk_token_id == 3 and len(tok) == len(vocabulary()) + 4
    for word in ACTION_WORDS + DIRECTION_ANSWERS:  # every answer is a single token
        assert len(tok(word, add_special_tokens=False)["input_ids"]) == 1
    for steps in (0, 7, 45):
        env, obs = _states(team_sizes, steps, seed=steps + sum(team_sizes), device=device)
        prompts = render_soccer(obs, env.config) + render_direction(obs, env.config)[0]
        for prompt in prompts:
            ids = tok(prompt)["input_ids"]
            assert tok.unk_token_id not in ids, prompt
            assert ids[0] == tok.bos_token_id and tok.decode(ids[1:]) == prompt
        soccer = render_soccer(obs, env.config)
        assert all(p.endswith("kick . answer with one action word . action :") for p in soccer)
        # the described situation matches the observation: the ball's compass word and the teams
        layout = env.config.obs_layout()
        for o, prompt in zip(obs, soccer):
            dx, dy = o[layout["ball_rel"]].tolist()
            dist = int(re.search(r"ball (\d+) m", prompt).group(1))
            if dist > 0:
                assert f"ball {dist} m {compass(dx, dy)} ," in prompt
            assert prompt.count("opponent ") - prompt.count("opponent goal") == (
                team_sizes[1] if "blue" in prompt.split(" . ")[0] else team_sizes[0])


def test_direction_answer_matches_the_rounded_offset(device):
    env, obs = _states((2, 2), 20, seed=3, device=device)
    prompts, answers = render_direction(obs, env.config)
    for prompt, answer in zip(prompts, answers):
        dx, dy = (int(v) for v in re.search(r"x (-?\d+) y (-?\d+) from you", prompt).groups())
        assert answer == ("here" if dx == dy == 0 else compass(dx, dy))
    assert compass(10, 0) == "east" and compass(-10, 10) == "northwest" and compass(0, -30) == "south"


def test_parser_is_strict():
    assert parse_answer("north") == 3 and parse_answer(" kick\n") == 9 and parse_answer("stay") == 0
    for bad in ("North", "north .", "north north", "go north", "", "<pad> north", "<unk>", "here"):
        assert parse_answer(bad) is None, bad
    assert parse_answer("here", DIRECTION_ANSWERS) == 8
    index, valid = parse_answers(["east", "east east", "kick"])
    assert index.tolist() == [1, 0, 9] and valid.tolist() == [True, False, True]


# --------------------------------------------------------------------------- rewards


def test_invalid_answers_are_penalised(device):
    task = DirectionTask(num_prompts=2, group_size=3, stride=3, env_kwargs={"team_size": 1}, seed=0, device=device)
    batch = task.draw()
    truth = [DIRECTION_ANSWERS[i] for i in batch.truth.tolist()]
    wrong = [next(w for w in DIRECTION_ANSWERS if w != t) for t in truth]
    texts = [truth[0], wrong[0], "ball north", truth[1], truth[1] + " .", "<bos>"]
    rewards, _, valid, table = answer_rewards(task, batch, texts, 3, format_penalty=0.5)
    assert valid.tolist() == [True, True, False, True, False, False]
    assert rewards.tolist() == [1.0, 0.0, -0.5, 1.0, -0.5, -0.5]
    assert table.sum(1).tolist() == [1.0, 1.0]
    # the soccer task: a malformed answer plays stay, and gets stay's reward minus the penalty
    soccer = SoccerTask(num_prompts=2, group_size=2, horizon=3, stride=5, env_kwargs={"team_size": 2}, seed=1,
                        device=device)
    batch = soccer.draw()
    rewards, _, valid, table = answer_rewards(
        soccer, batch, ["north", "nonsense", "kick", "east ."], 2, format_penalty=1.0)
    assert valid.tolist() == [True, False, True, False]
    assert torch.allclose(rewards, torch.stack([table[0, 3], table[0, 0] - 1, table[1, 9], table[1, 0] - 1]))


def test_soccer_branches_score_like_the_action_table(device):
    """Each completion's branch (G copies of the state) returns exactly what the same action
    returns in the action table (deterministic bots); the scale is [0, 1] with 1 for the best."""
    task = SoccerTask(num_prompts=3, group_size=10, horizon=4, stride=9, env_kwargs={"team_size": 2}, seed=2,
                      device=device)
    before = task.source.env.get_state()
    batch = task.draw()
    snapshot = task.source.env.get_state()
    actions = torch.arange(10).repeat(3, 1)
    rewards, table = task.score(batch, actions, torch.ones(3, 10, dtype=torch.bool))
    assert torch.equal(rewards, table)
    assert ((table >= 0) & (table <= 1)).all() and torch.equal(table.max(1).values.cpu(), torch.ones(3))
    # the source matches are restored after branching, and they did advance before the draw
    after = task.source.env.get_state()
    assert all(torch.equal(after[k], snapshot[k]) for k in snapshot)
    assert not torch.equal(after["t"], before["t"])


# --------------------------------------------------------------------------- log-probs and the loss


def test_logps_match_a_token_by_token_loop_and_mask_after_eos(agent, device):
    torch.manual_seed(0)
    env, obs = _states((2, 2), 5, seed=0, device=device)
    prompts = render_soccer(obs[:3], env.config)
    batch = agent.generate(prompts, 4, max_new_tokens=4, generator=torch.Generator(device=device).manual_seed(0),
                           temperature=0.7)
    full = agent.completion_logps(batch, temperature=0.7, share_prompt=False)
    shared = agent.completion_logps(batch, temperature=0.7)
    # the reference: one unpadded forward pass per completion prefix, log_softmax(logits / T)
    expected = torch.zeros_like(full)
    with torch.no_grad():
        for s in range(len(batch)):
            prompt = batch.prompt_ids[s][batch.prompt_mask[s].bool()]
            for t in range(int(batch.completion_mask[s].sum())):
                ids = torch.cat([prompt, batch.completion_ids[s, :t]])[None]
                logits = agent.model(input_ids=ids).logits[0, -1]
                expected[s, t] = torch.log_softmax(logits / 0.7, -1)[batch.completion_ids[s, t]]
    assert torch.allclose(full, expected, atol=1e-5) and torch.allclose(shared, full, atol=1e-5)
    # the EOS mask: up to and including the first EOS
    ids = torch.tensor([[5, 2, 7, 2], [2, 0, 0, 0], [5, 6, 7, 8]])
    assert eos_mask(ids, 2).tolist() == [[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 1]]


def test_gspo_sequence_ratio_matches_its_definition(agent, device):
    """GSPO (Zheng et al. 2025): s_i = exp(mean over the completion's tokens, EOS included and
    what follows it excluded, of logp - old_logp), on real model log-probs."""
    env, obs = _states((2, 2), 5, seed=1, device=device)
    prompts = render_soccer(obs[:2], env.config)
    words = [["north", "<eos>", "kick", "kick"], ["east", "west", "<eos>"], ["kick", "east", "stay", "south"],
             ["<eos>"]]
    batch = _batch(agent, prompts, words, group_size=2)
    old = agent.completion_logps(batch).detach()
    moved = copy.deepcopy(agent)
    with torch.no_grad():
        for p in moved.model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    logp = moved.completion_logps(batch)
    mask = batch.completion_mask
    assert mask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1], [1, 0, 0, 0]]
    seq_ratio = torch.exp(((logp.detach() - old) * mask).sum(1) / mask.sum(1))
    adv = torch.tensor([1.0, -0.5, 0.7, -1.2], device=device)
    for eps in (10.0, 0.01):
        loss, stats = policy_loss(logp, old, adv, mask, clip_eps=eps, ratio_level="sequence", loss_type="grpo")
        clipped = seq_ratio.clamp(1 - eps, 1 + eps)
        assert torch.allclose(loss, -torch.minimum(seq_ratio * adv, clipped * adv).mean(), atol=1e-6)
        assert torch.allclose(stats["ratio_mean"], seq_ratio.mean(), atol=1e-6)
    assert (seq_ratio - 1).abs().max() > 1e-3  # the perturbation really moved the ratio
    # tokens after the EOS do not change the ratio
    words[0][2:] = ["stay", "stay"]
    other = _batch(agent, prompts, words, group_size=2)
    assert torch.allclose((moved.completion_logps(other).detach() - agent.completion_logps(other)).mul(mask).sum(1),
                          ((logp.detach() - old) * mask).sum(1), atol=1e-6)


def test_kl_to_an_identical_reference_is_zero(agent, device):
    env, obs = _states((1, 1), 3, seed=2, device=device)
    batch = agent.generate(render_soccer(obs, env.config), 3, max_new_tokens=3,
                           generator=torch.Generator(device=device).manual_seed(1))
    reference = copy.deepcopy(agent.model).requires_grad_(False)
    logp = agent.completion_logps(batch)
    with torch.no_grad():
        ref_logp = agent.completion_logps(batch, model=reference)
    adv = torch.linspace(-1, 1, len(batch), device=device)
    loss, stats = policy_loss(logp, logp.detach(), adv, batch.completion_mask, ref_logp=ref_logp, kl_coef=0.5)
    plain, _ = policy_loss(logp, logp.detach(), adv, batch.completion_mask)
    assert stats["kl"].item() == 0.0 and torch.equal(loss, plain)


# --------------------------------------------------------------------------- training runs


def test_training_calls_the_shared_loss_and_changes_the_model(tmp_path, monkeypatch, device):
    calls = []

    def counting_policy_loss(*args, **kwargs):
        calls.append(vars(kwargs["options"]))  # the PolicyLossOptions the update built
        return policy_loss(*args, **kwargs)

    monkeypatch.setattr(marl_grpo.run.update, "policy_loss", counting_policy_loss)
    log_dir = tmp_path / "runs"
    # one-token answers (cut at max_new_tokens, no EOS needed) so that a fresh model already gives
    # some valid ones, hence non-zero advantages
    args = ["llm", "--preset", "test", "--log-dir", str(log_dir), "--update-epochs", "2", "--ratio-level", "sequence",
            "--loss-type", "dr_grpo", "--kl-coef", "0.1", "--clip-eps-high", "0.3", "--max-new-tokens", "1",
            "--prompts-per-step", "4", "--group-size", "4", "--ent-coef", "0.01", "--device", device]
    main(args)
    assert len(calls) == 2 * 2  # 2 iterations x 2 epochs x 1 minibatch
    assert {(c["ratio_level"], c["loss_type"], c["kl_coef"], c["clip_eps_high"], c["max_len"]) for c in calls} == {
        ("sequence", "dr_grpo", 0.1, 0.3, 1)}
    ckpt = log_dir / "llm-test" / "checkpoint"
    assert {"config.json", "model.safetensors", "tokenizer.json", "trainer_state.pt", "llm_config.json"} <= {
        p.name for p in ckpt.iterdir()}

    # the parameters changed from the initialisation (the tiny model is built from the seed)
    cfg = preset("test")
    fresh = load_agent(cfg, torch.device("cpu")).model.state_dict()
    trained = AutoModelForCausalLM.from_pretrained(ckpt, local_files_only=True).state_dict()
    changed = [k for k in fresh if not torch.equal(fresh[k], trained[k])]
    assert len(changed) >= len(fresh) // 2, changed

    scalars = _scalars(log_dir / "llm-test")
    assert not LLM_TAGS - set(scalars), sorted(LLM_TAGS - set(scalars))
    assert [e.step for e in scalars["llm/reward_mean"]] == [1, 2]
    assert scalars["losses/kl"][0].value >= 0.0  # the k3 estimator is never negative
    invalid = scalars["llm/invalid_frac"][0].value * 4 * 4  # a share of the 4 prompts x 4 completions
    assert invalid == pytest.approx(round(invalid), abs=1e-4)
    assert 0.0 < scalars["eval/reward_chance"][0].value < 1.0

    # no silent overwrite; --resume continues the step count
    with pytest.raises(SystemExit, match="--resume"):
        main(args)
    main(args + ["--resume", "--total-iterations", "4"])
    assert [e.step for e in _scalars(log_dir / "llm-test")["llm/reward_mean"]] == [1, 2, 3, 4]


def test_first_update_has_zero_kl_and_ratio_one(tmp_path, device):
    """With the reference a copy of the policy and old log-probs taken before the update, the
    first minibatch of the first iteration has KL 0 and ratio exactly 1."""
    result = train_llm(LLMConfig(**{
        **preset("test").to_dict(), "log_dir": str(tmp_path), "kl_coef": 0.2, "total_iterations": 1,
        "eval_every": 0, "save_every": 0, "device": device}))
    scalars = _scalars(Path(result["run_dir"]))
    assert scalars["losses/kl"][0].value == 0.0 and scalars["losses/ratio_mean"][0].value == 1.0
    assert result["history"]["llm/invalid_frac"][0] > 0.5  # a fresh model rarely answers in format


def test_checkpoint_reloads_with_the_same_logits(agent, tmp_path, device):
    agent.save(tmp_path / "model")
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "model", local_files_only=True).to(device)
    tok = AutoTokenizer.from_pretrained(tmp_path / "model", local_files_only=True)
    env, obs = _states((2, 2), 4, seed=4, device=device)
    prompts = render_soccer(obs[:2], env.config)
    enc, enc_saved = agent.tokenizer(prompts, return_tensors="pt", padding=True), tok(prompts, return_tensors="pt",
                                                                                       padding=True)
    assert torch.equal(enc["input_ids"], enc_saved["input_ids"])
    enc = enc.to(device)
    with torch.no_grad():
        assert torch.equal(model(**enc).logits, agent.model(**enc).logits)
    again = LLMAgent.from_pretrained(tmp_path / "model", device=device)
    assert again.generate(prompts, greedy=True).texts == agent.generate(prompts, greedy=True).texts


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("args, message", [
    (["--task", "chess"], "task='chess' is invalid: expected one of \\('soccer', 'direction'\\)"),
    (["--loss-type", "ppo"], "loss_type='ppo' is invalid"),
    (["--ratio-level", "word"], "ratio_level='word' is invalid"),
    (["--group-size", "1"], "group_size=1 is invalid: a GRPO group needs at least 2"),
    (["--top-p", "0"], "top_p=0.0 is invalid"),
    (["--num-minibatches", "3"], "num_minibatches=3 must divide prompts_per_step=2"),
    (["--opponent", "keeper"], "opponent='keeper' is invalid"),
    (["--dtype", "float64"], "dtype='float64' is invalid: expected one of \\('float32', 'bfloat16', 'float16'\\)"),
    (["--loss-type", "vespo", "--ratio-level", "sequence"], "loss_type='vespo' needs ratio_level='token'"),
    (["--loss-type", "sapo", "--delta", "4"], "delta=4.0 bounds the clipped surrogate .* loss_type='sapo' has none"),
    (["--delta", "1"], "delta=1.0 is invalid: expected a finite number > 1.0"),
    (["--off-policy-mask-threshold", "-0.5"], "off_policy_mask_threshold=-0.5 is invalid"),
    (["--advantage-baseline", "median"], "advantage_baseline='median' is invalid: expected one of \\('mean', 'loo'\\)"),
    (["--reward-aggregation", "max"], "reward_aggregation='max' is invalid"),
    (["--sapo-temperature-neg", "0"], "sapo_temperature_neg=0.0 is invalid"),
    (["--model", "/nonexistent/model"], "'/nonexistent/model' does not hold a Hugging Face causal LM"),
])
def test_bad_config_fails_fast(tmp_path, args, message):
    with pytest.raises(SystemExit, match=message):
        main(["llm", "--preset", "test", "--log-dir", str(tmp_path), *args])


def test_loss_and_baseline_flags_reach_the_config():
    cfg = parse_with_preset(
        ["--loss-type", "luspo", "--ratio-level", "sequence", "--delta", "4", "--off-policy-mask-threshold", "0.5",
         "--kl-coef", "0.1", "--use-bias-correction-kl", "--advantage-baseline", "loo", "--reward-aggregation",
         "normalize_then_sum"], PRESETS, "test", "marl-grpo llm", "")
    assert (cfg.loss_type, cfg.ratio_level, cfg.delta, cfg.off_policy_mask_threshold, cfg.use_bias_correction_kl,
            cfg.advantage_baseline, cfg.reward_aggregation) == (
        "luspo", "sequence", 4.0, 0.5, True, "loo", "normalize_then_sum")
    vespo = parse_with_preset(["--loss-type", "vespo", "--vespo-k-neg", "2.5"], PRESETS, "test", "marl-grpo llm", "")
    assert (vespo.loss_type, vespo.vespo_k_neg) == ("vespo", 2.5)
    with pytest.raises(SystemExit, match=r"^marl-grpo llm: --vespo-k-neg 2.5 has no effect with --loss-type luspo"):
        parse_with_preset(["--loss-type", "luspo", "--ratio-level", "sequence", "--vespo-k-neg", "2.5"], PRESETS,
                          "test", "marl-grpo llm", "")
    defaults = preset("test")  # today's defaults: no preset changes
    assert (defaults.loss_type, defaults.delta, defaults.off_policy_mask_threshold, defaults.use_bias_correction_kl,
            defaults.advantage_baseline, defaults.reward_aggregation) == (
        "grpo", None, None, False, "mean", "sum_then_normalize")
    assert (defaults.sapo_temperature_pos, defaults.sapo_temperature_neg, defaults.vespo_k_pos,
            defaults.vespo_lambda_pos, defaults.vespo_k_neg, defaults.vespo_lambda_neg) == (
        1.0, 1.05, 2.0, 3.0, 3.0, 2.0)
    with pytest.raises(ValueError, match="loss_type='vespo' needs ratio_level='token'"):
        LLMConfig(loss_type="vespo", ratio_level="sequence")


def test_reward_components_sum_to_the_reward_bit_for_bit(device):
    task = DirectionTask(num_prompts=2, group_size=3, stride=3, env_kwargs={"team_size": 1}, seed=0, device=device)
    batch = task.draw()
    truth = [DIRECTION_ANSWERS[i] for i in batch.truth.tolist()]
    texts = [truth[0], "north", "ball north", truth[1], truth[1] + " .", "<bos>"]
    rewards, task_rewards, valid, _ = answer_rewards(task, batch, texts, 3, format_penalty=0.7)
    components, weights = reward_components(task_rewards, valid, 0.7)
    assert components[:, 1].tolist() == [0.0, 0.0, -1.0, 0.0, -1.0, -1.0]
    assert torch.equal((components * torch.tensor(weights)).sum(-1), rewards)
    # so the default aggregation gives today's advantages exactly
    assert torch.equal(group_advantages(components, group_size=3, components=True, reward_weights=weights),
                       group_advantages(rewards, group_size=3))


def test_training_passes_loss_type_baseline_and_aggregation(tmp_path, monkeypatch, device):
    calls, losses = [], []

    def recording_group_advantages(*args, **kwargs):
        calls.append(kwargs)
        return group_advantages(*args, **kwargs)

    def recording_policy_loss(*args, **kwargs):
        losses.append(vars(kwargs["options"]))
        return policy_loss(*args, **kwargs)

    monkeypatch.setattr(marl_grpo.llm.train, "group_advantages", recording_group_advantages)
    monkeypatch.setattr(marl_grpo.run.update, "policy_loss", recording_policy_loss)
    result = train_llm(LLMConfig(**{
        **preset("test").to_dict(), "log_dir": str(tmp_path), "total_iterations": 1, "eval_every": 0,
        "save_every": 0, "device": device, "loss_type": "sapo", "sapo_temperature_neg": 1.3,
        "off_policy_mask_threshold": 0.5, "advantage_baseline": "loo", "reward_aggregation": "normalize_then_sum"}))
    assert [(c["baseline"], c["aggregation"], c["components"], c["reward_weights"]) for c in calls] == [
        ("loo", "normalize_then_sum", True, [1.0, 1.0])]
    assert [(k["loss_type"], k["sapo_temperature_neg"], k["off_policy_mask_threshold"]) for k in losses] == [
        ("sapo", 1.3, 0.5)]
    scalars = _scalars(Path(result["run_dir"]))
    assert "losses/clipfrac" not in scalars  # sapo has no hard clip
    assert scalars["losses/ratio_mean"][0].value == 1.0


def test_unknown_preset_and_resume_without_run(tmp_path):
    with pytest.raises(SystemExit, match="unknown preset 'huge'"):
        main(["llm", "--preset", "huge"])
    with pytest.raises(SystemExit, match="no checkpoint"):
        main(["llm", "--preset", "test", "--log-dir", str(tmp_path), "--resume"])


def test_importing_agents_does_not_import_transformers():
    code = "import sys, marl_grpo.agents, marl_grpo.llm, marl_grpo.cli; print('transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


@pytest.mark.parametrize("argv, option, setting", [
    (["--model", "models/x", "--tiny-hidden", "8"], "--tiny-hidden 8", "--model models/x"),
    (["--lora-alpha", "3"], "--lora-alpha 3.0", "--lora-r 0"),
    (["--task", "direction", "--horizon", "2"], "--horizon 2", "--task direction"),
    (["--task", "direction", "--reward-goal", "2"], "--reward-goal 2.0", "--task direction"),
    (["--others-checkpoint", "runs/x/checkpoint", "--opponent", "chaser"], "--opponent chaser",
     "--others-checkpoint runs/x/checkpoint"),
    (["--chat-template", "off", "--system-prompt", "Play."], "--system-prompt Play.", "--chat-template off"),
])
def test_llm_config_refuses_a_setting_the_run_does_not_read(argv, option, setting):
    with pytest.raises(SystemExit, match=rf"^marl-grpo llm: {re.escape(option)} has no effect with "
                                         rf"{re.escape(setting)} \([^()]+\); remove it$"):
        parse_with_preset(argv, PRESETS, "test", "marl-grpo llm", "")
    # the preset's own tiny sizes do not count as given next to --model
    cfg = parse_with_preset(["--model", "models/x"], PRESETS, "test", "marl-grpo llm", "")
    assert (cfg.model, cfg.tiny_hidden, cfg.given) == ("models/x", 16, {"model"})

"""The LLM mode's precision and memory options: float32 master weights under --dtype, LoRA with the
base as reference and exact resume, gradient checkpointing, exact gradient accumulation, and the
completion logs."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

pytest.importorskip("transformers")
pytest.importorskip("peft")

from transformers import AutoModelForCausalLM  # noqa: E402

from marl_grpo.agents.llm import Completions, LLMAgent, eos_mask  # noqa: E402
from marl_grpo.agents.llm_text import ACTION_WORDS, DIRECTION_ANSWERS, parse_answer  # noqa: E402
from marl_grpo.cli import main  # noqa: E402
from marl_grpo.llm import LLMConfig, preset, train_llm  # noqa: E402
from marl_grpo.llm.train import LLMTrainer, enable_gradient_checkpointing, load_agent  # noqa: E402
from marl_grpo.losses import LOSS_TYPES  # noqa: E402
from marl_grpo.run.config import RunConfig  # noqa: E402
from marl_grpo.run.update import UpdateBatch, policy_update  # noqa: E402

TINY = {"hidden_size": 16, "num_layers": 2, "num_heads": 2, "intermediate_size": 32}


def _run(tmp_path: Path, *args: str, name: str = "llm-test") -> Path:
    main(["llm", "--preset", "test", "--log-dir", str(tmp_path), "--name", name, "--max-new-tokens", "1",
          "--prompts-per-step", "4", "--group-size", "4", "--ent-coef", "0.01", *args])
    return tmp_path / name


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


# --------------------------------------------------------------------------- precision


def test_a_bfloat16_checkpoint_trains_in_float32_at_lr_1e_6(tmp_path):
    """A model whose config.json (and file) says bfloat16 loads as float32 and takes Adam steps of
    about the learning rate, 1e-6, which bfloat16 weights (8 mantissa bits) could not hold."""
    agent = LLMAgent.tiny(seed=3, device="cpu", **TINY)
    agent.model.to(torch.bfloat16)
    agent.save(tmp_path / "bf16")
    assert json.loads((tmp_path / "bf16" / "config.json").read_text())["dtype"] == "bfloat16"
    start = {k: v.float() for k, v in load_file(str(tmp_path / "bf16" / "model.safetensors")).items()}

    run = _run(tmp_path, "--model", str(tmp_path / "bf16"), "--learning-rate", "1e-6", "--dtype", "bfloat16",
               "--total-iterations", "1")
    trained = load_file(str(run / "checkpoint" / "model.safetensors"))
    assert {t.dtype for t in trained.values()} == {torch.float32}
    step = torch.cat([(trained[k] - start[k]).abs().reshape(-1) for k in start])
    assert 5e-7 < float(step.max()) < 1.5e-6  # Adam's first step: about lr per weight
    moved = step > 0
    assert float(moved.float().mean()) > 0.5
    # in bfloat16 almost every one of these steps rounds away: the weight would not have moved
    kept = torch.cat([(trained[k].bfloat16() == start[k].bfloat16()).reshape(-1) for k in start])
    assert float(kept[moved].float().mean()) > 0.9


def test_float16_runs_with_a_loss_scale(tmp_path):
    run = _run(tmp_path, "--dtype", "float16", "--total-iterations", "1")
    state = torch.load(run / "checkpoint" / "trainer_state.pt", weights_only=False)
    assert state["trainer"]["grad_scaler"]["scale"] > 0


# --------------------------------------------------------------------------- LoRA


def test_lora_trains_the_adapter_alone_against_the_base_as_reference(tmp_path):
    cfg = LLMConfig(**{**preset("test").to_dict(), "log_dir": str(tmp_path), "lora_r": 4, "kl_coef": 0.1,
                       "ref_refresh": 0, "device": "cpu"})
    trainer = LLMTrainer(cfg, torch.device("cpu"), None)
    agent, fresh = trainer.agent, load_agent(preset("test"), torch.device("cpu")).model
    assert trainer.ref_model is None  # no second copy of the model
    names = [n for n, p in agent.model.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n for n in names)
    assert sum(p.numel() for p in trainer.parameters) == sum(
        p.numel() for n, p in agent.model.named_parameters() if "lora_" in n)
    with torch.no_grad():
        for n, p in agent.model.named_parameters():
            if "lora_B" in n:
                p.fill_(0.05)  # a trained adapter
    ids = torch.tensor([[1, 5, 6, 7, 8]])
    with torch.no_grad():
        with agent.base_model():
            base = agent.model(input_ids=ids).logits
        adapted = agent.model(input_ids=ids).logits
        assert torch.equal(base, fresh(input_ids=ids).logits)  # the reference is the base, exactly
        assert float((adapted - base).abs().max()) > 1e-3


def test_lora_checkpoint_resumes_exactly_and_merges(tmp_path):
    lora = ["--lora-r", "4", "--lora-alpha", "8", "--kl-coef", "0.1", "--ref-refresh", "0", "--update-epochs", "2"]
    straight = _run(tmp_path / "straight", *lora, "--total-iterations", "4")
    _run(tmp_path / "halves", *lora, "--total-iterations", "2")
    halves = _run(tmp_path / "halves", *lora, "--total-iterations", "4", "--resume", "--merge",
                  str(tmp_path / "merged"))
    files = {p.name for p in (halves / "checkpoint").iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "llm_config.json"} <= files
    assert "model.safetensors" not in files  # the adapter alone
    weights = [load_file(str(run / "checkpoint" / "adapter_model.safetensors")) for run in (straight, halves)]
    assert _max_diff(*weights) <= 1e-6
    assert float(max(w.abs().max() for k, w in weights[0].items() if "lora_B" in k)) > 0  # it learned

    # the merged export is a plain model with the adapted model's logits
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged", local_files_only=True)
    cfg = LLMConfig(**{**json.loads((halves / "checkpoint" / "llm_config.json").read_text())})
    adapted = load_agent(cfg, torch.device("cpu"), halves / "checkpoint")
    ids = torch.tensor([[1, 5, 6, 7, 8, 9]])
    with torch.no_grad():
        assert float((merged(input_ids=ids).logits - adapted.model(input_ids=ids).logits).abs().max()) < 1e-5
    # a finished run exports on --resume, its LoRA settings read from the run
    _run(tmp_path / "straight", "--total-iterations", "4", "--resume", "--merge", str(tmp_path / "merged2"))
    assert _max_diff(load_file(str(tmp_path / "merged" / "model.safetensors")),
                     load_file(str(tmp_path / "merged2" / "model.safetensors"))) <= 1e-6
    # and the adapter checkpoint loads for play on its base (tiny: given as a model)
    played = LLMAgent.from_pretrained(halves / "checkpoint", device="cpu", base=load_agent(
        preset("test"), torch.device("cpu")).model)
    assert played.is_lora and not any(p.requires_grad for p in played.model.parameters())


@pytest.mark.parametrize("args, message", [
    (["--lora-r", "4", "--kl-coef", "0.1", "--ref-refresh", "5"], "ref_refresh=5 is not supported with LoRA"),
    (["--merge", "out"], "merge='out' needs a LoRA run"),
    (["--lora-r", "4", "--lora-target-modules", "nope_proj"], "lora_target_modules='nope_proj' does not fit"),
    (["--gradient-accumulation-steps", "3"], "gradient_accumulation_steps=3 is more than the 2 prompt group"),
    (["--lora-r", "-1"], "lora_r=-1 is invalid"),
])
def test_bad_memory_options_fail_in_one_line(tmp_path, args, message):
    with pytest.raises(SystemExit, match=message):
        main(["llm", "--preset", "test", "--log-dir", str(tmp_path), *args])


def test_lora_without_peft_names_the_extra(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "peft" else real(name, *a))
    with pytest.raises(SystemExit, match=r"lora_r=4 needs peft: pip install -e '\.\[llm\]'"):
        main(["llm", "--preset", "test", "--log-dir", str(tmp_path), "--lora-r", "4"])


# --------------------------------------------------------------------------- gradient checkpointing


def test_gradient_checkpointing_recomputes_and_keeps_the_gradients():
    grads, calls = [], []
    for checkpointing in (False, True):
        agent = LLMAgent.tiny(seed=1, device="cpu", **TINY)
        if checkpointing:
            enable_gradient_checkpointing(agent.model)
        agent.model.train()
        count, mlp = [0], agent.model.model.layers[0].mlp  # inside the checkpointed layer
        forward = mlp.forward

        def counted(*args, forward=forward, count=count, **kwargs):  # (module hooks stay off in a recompute)
            count[0] += 1
            return forward(*args, **kwargs)

        mlp.forward = counted
        batch = _completions(agent, rows=4, group_size=2, width=3, seed=0)
        logp = agent.completion_logps(batch, share_prompt=False)
        (logp * batch.completion_mask).sum().backward()
        grads.append({n: p.grad.clone() for n, p in agent.model.named_parameters() if p.grad is not None})
        calls.append(count[0])
    assert calls == [1, 2]  # the layer's forward ran again in the backward pass
    assert _max_diff(*grads) <= 1e-6


# --------------------------------------------------------------------------- gradient accumulation


def _completions(agent: LLMAgent, rows: int, group_size: int, width: int, seed: int) -> Completions:
    """Random completions of varied length (an EOS at a random place, or none) of one prompt per group."""
    g = torch.Generator().manual_seed(seed)
    prompts = [" ".join(ACTION_WORDS[i % 10] for i in range(p, p + 3 + p % 3)) for p in range(rows // group_size)]
    enc = agent.tokenizer(prompts, return_tensors="pt", padding=True)
    ids = torch.randint(4, len(agent.tokenizer), (rows, width), generator=g)
    eos = torch.randint(0, width + 2, (rows,), generator=g)
    for r in range(rows):
        if eos[r] < width:
            ids[r, eos[r]] = agent.eos_token_id
            ids[r, eos[r] + 1:] = agent.tokenizer.pad_token_id
    return Completions(enc["input_ids"].repeat_interleave(group_size, 0),
                       enc["attention_mask"].repeat_interleave(group_size, 0), ids, eos_mask(ids, agent.eos_token_id),
                       agent.decode(ids), group_size)


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
@pytest.mark.parametrize("accumulation", [2, 3])
def test_accumulated_gradient_equals_the_minibatch_gradient(loss_type, accumulation):
    """K micro-batches of uneven sizes and token counts give the gradient of the whole minibatch
    (every loss type: sequence- and token-normalised), with a KL term, an entropy bonus and, for
    grpo, advantages standardised over the minibatch."""
    agent = LLMAgent.tiny(seed=2, device="cpu", **TINY)
    G, units = 2, 5
    batch = _completions(agent, rows=G * units, group_size=G, width=4, seed=1)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        logp = agent.completion_logps(batch)
        old_logp = (logp + 0.3 * torch.randn(logp.shape, generator=g)) * batch.completion_mask
        ref_logp = (logp + 0.2 * torch.randn(logp.shape, generator=g)) * batch.completion_mask
    advantages = torch.randn(G * units, generator=g)
    level = "sequence" if loss_type == "luspo" else "token"
    grads = []
    for steps in (1, accumulation):
        cfg = RunConfig(loss_type=loss_type, ratio_level=level, update_epochs=1, num_minibatches=1,
                        max_grad_norm=1e9, ent_coef=0.01, kl_coef=0.05, gradient_accumulation_steps=steps)
        agent.model.zero_grad(set_to_none=True)
        update = UpdateBatch(
            advantages=advantages, num_units=units, unit_rows=batch.group_rows, old_logp=old_logp, ref_logp=ref_logp,
            log_probs=lambda rows: agent.completion_logps(batch.select(rows), with_entropy=True),
            mask=batch.completion_mask, max_len=6, normalize_advantages=loss_type == "grpo")
        parameters = list(agent.model.parameters())
        stats = policy_update(update, torch.optim.SGD(parameters, lr=0.0), parameters, cfg,
                              generator=torch.Generator().manual_seed(5))
        grads.append({n: p.grad.clone() for n, p in agent.model.named_parameters()})
        if steps == 1:
            loss = stats["losses/total_loss"]
    assert _max_diff(*grads) <= 1e-6
    assert max(float(g.abs().max()) for g in grads[0].values()) > 1e-3  # a real gradient was compared
    assert stats["losses/total_loss"] == pytest.approx(loss, abs=1e-6)  # the micro-batches' losses sum to it


# --------------------------------------------------------------------------- completion logs


def test_completion_logs_hold_the_latest_batch(tmp_path):
    run = _run(tmp_path, "--task", "direction", "--log-completions", "3", "--total-iterations", "2",
               "--eval-every", "1")
    rows = [json.loads(line) for line in (run / "completions.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [1, 1, 1, 2, 2, 2]
    for r in rows:
        assert set(r) == {"iteration", "prompt", "completion", "action", "reward", "advantage"}
        index = parse_answer(r["completion"], DIRECTION_ANSWERS)
        assert (r["action"] is None) == (index is None)
        # direction task: 1 right, 0 wrong, -1 malformed (score 0 minus the format penalty 1)
        assert r["reward"] in (1.0, 0.0, -1.0) and (r["reward"] == -1.0) == (r["action"] is None)
    for it in (1, 2):  # rows 0-3 of a batch are the 4 completions of its first prompt: one group
        group = [r for r in rows if r["iteration"] == it]
        assert len({r["prompt"] for r in group}) == 1 and group[0]["prompt"].endswith(":")
        rewards, adv = [r["reward"] for r in group], [r["advantage"] for r in group]
        for a, b in ((0, 1), (0, 2), (1, 2)):  # the group's standardised advantage keeps the reward order
            assert (rewards[a] > rewards[b]) == (adv[a] > adv[b] + 1e-6)
    acc = EventAccumulator(str(run), size_guidance={"tensors": 0})
    acc.Reload()
    texts = acc.Tensors("completions/text_summary")
    assert [t.step for t in texts] == [1, 2]
    table = texts[-1].tensor_proto.string_val[0].decode()
    assert table.startswith("| prompt | completion | action | reward | advantage |")
    assert table.count("\n") == 1 + 3 and f"{rows[-1]['reward']:.4g}" in table.splitlines()[-1]

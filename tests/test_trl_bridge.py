"""The TRL bridge (`marl_grpo.llm.trl_env`): the environment's contract, and two GRPO steps through
TRL's `GRPOTrainer(environment_factory=...)` with the tiny model (the `trl` extra, installed by `make test`)."""

import inspect

import pytest
import torch

from marl_grpo.agents.llm_text import COMPASS
from marl_grpo.envs import KICK_ACTION
from marl_grpo.llm.trl_env import OVER_NOTE, TOOL_NOTE, SoccerToolEnv

TINY = {"hidden_size": 32, "num_layers": 2, "num_heads": 2, "intermediate_size": 64}
TOOLS = ("kick", "move", "stay")


def _recording(env: SoccerToolEnv) -> list[tuple[torch.Tensor, float]]:
    """Wrap `env.env.step` to record (the actions [1, N], the controlled player's reward) of every step."""
    log, step = [], env.env.step

    def recorded(actions):
        out = step(actions)
        log.append((actions.clone(), float(out[1][0, env.player])))
        return out

    env.env.step = recorded
    return log


def test_reset_describes_the_match_for_the_controlled_player():
    env = SoccerToolEnv(team_size=1, player=0, seed=5)
    text = env.reset(seed=3)
    assert isinstance(text, str) and text.startswith("you are blue player 1 . score 0 to 0 . time left 100 percent .")
    assert text.endswith(f"east is towards the opponent goal . {TOOL_NOTE}") and "action :" not in text
    assert env.reset(seed=3) == text and env.steps == 0 and not env.done
    # TRL passes the dataset row's columns as keywords; without a seed the constructor's seed counts up
    assert SoccerToolEnv(team_size=1, seed=3).reset(prompt=[{"role": "user", "content": ""}]) == text
    red = SoccerToolEnv(team_size=1, player=1).reset(seed=3)
    assert red.startswith("you are red player 1 .")


def test_each_tool_steps_the_match_with_its_action():
    env = SoccerToolEnv(team_size=1, player=0, hold=3, bot="chaser")
    env.reset(seed=1)
    log = _recording(env)
    x0 = float(env.env.player_positions()[0, 0, 0])
    env.move("east")
    assert float(env.env.player_positions()[0, 0, 0]) > x0 + 0.01  # blue attacks +x: east is +x
    x1 = float(env.env.player_positions()[0, 0, 0])
    env.move("west")
    env.move("west")
    assert float(env.env.player_positions()[0, 0, 0]) < x1
    env.stay()
    env.kick()
    env.move("north")
    played = [int(actions[0, 0]) for actions, _ in log]
    expected = [1, 5, 5, 0, KICK_ACTION, 1 + COMPASS.index("north")]
    assert played == [a for a in expected for _ in range(3)] and env.steps == 18
    assert env.env.steps_in_match()[0] == 18

    red = SoccerToolEnv(team_size=1, player=1, hold=4)
    red.reset(seed=1)
    x0 = float(red.env.player_positions()[0, 1, 0])
    text = red.move("east")
    assert float(red.env.player_positions()[0, 1, 0]) < x0 - 0.01  # red's own frame is mirrored: its east is -x
    assert text.startswith("you are red player 1 .") and "you are moving east" in text and TOOL_NOTE not in text


def test_get_reward_is_the_sum_of_the_players_env_rewards_until_the_match_ends():
    env = SoccerToolEnv(team_size=1, player=1, hold=5, max_cycles=30)
    env.reset(seed=2)
    log = _recording(env)
    calls = [lambda: env.move("west"), env.kick, env.stay, lambda: env.move("southwest")]
    texts = [calls[k % len(calls)]() for k in range(6)]
    assert env.done and env.steps == 30 and len(log) == 30
    assert env.get_reward() == sum(r for _, r in log) and env.get_reward() != 0.0
    assert texts[-1].startswith(OVER_NOTE) and "score" in texts[-1]
    with pytest.raises(ValueError, match="the match is over .*30 steps"):
        env.kick()
    assert len(log) == 30  # nothing stepped
    env.reset(seed=2)
    assert env.steps == 0 and not env.done


def test_get_reward_plays_the_rest_of_the_match_standing_still():
    env = SoccerToolEnv(team_size=1, player=0, hold=4, max_cycles=30)
    env.reset(seed=4)
    log = _recording(env)
    env.move("east")
    env.kick()
    reward = env.get_reward()  # 8 steps played by the tools, 22 by the play-out with action stay
    assert env.done and env.steps == 30 and reward == sum(r for _, r in log)
    assert [int(a[0, 0]) for a, _ in log] == [1] * 4 + [KICK_ACTION] * 4 + [0] * 22
    assert env.get_reward() == reward  # once played out, it stays

    short = SoccerToolEnv(team_size=1, player=0, hold=4, max_cycles=30, play_out=False)
    short.reset(seed=4)
    short_log = _recording(short)
    short.move("east")
    short.kick()
    assert short.get_reward() == sum(r for _, r in short_log) == sum(r for _, r in log[:8])
    assert not short.done and short.steps == 8
    short.reset(seed=4)
    assert short.get_reward() == 0.0


def test_bad_arguments_give_clear_errors():
    env = SoccerToolEnv(team_size=1)
    with pytest.raises(RuntimeError, match="reset"):
        env.kick()
    env.reset(seed=0)
    for bad in ("up", "East", " east", 3, None):
        with pytest.raises(ValueError) as err:
            env.move(bad)
        assert repr(bad) in str(err.value) and all(word in str(err.value) for word in COMPASS)
    assert env.steps == 0
    with pytest.raises(ValueError, match="player=2"):
        SoccerToolEnv(team_size=1, player=2)
    with pytest.raises(ValueError, match="hold=0"):
        SoccerToolEnv(hold=0)


def test_tools_are_the_public_methods_with_schemas_from_their_docstrings():
    from transformers.utils import get_json_schema

    env = SoccerToolEnv(team_size=1)
    # TRL's rule: every function of the class not starting with "_", except reset and get_reward
    public = {name for name, _ in inspect.getmembers(SoccerToolEnv, inspect.isfunction)
              if not name.startswith("_")} - {"reset", "get_reward"}
    assert public == set(TOOLS)
    move = get_json_schema(env.move)["function"]
    assert move["name"] == "move" and move["parameters"]["required"] == ["direction"]
    assert move["parameters"]["properties"]["direction"]["enum"] == list(COMPASS)
    for name in ("kick", "stay"):
        assert get_json_schema(getattr(env, name))["function"]["parameters"]["properties"] == {}


def test_tiny_tokenizer_renders_and_parses_tool_calls():
    from trl.chat_template_utils import is_chat_template_prefix_preserving, parse_response, supports_tool_calling

    from marl_grpo.llm.trl_env import build_tiny_tool_tokenizer

    tok = build_tiny_tool_tokenizer()
    assert supports_tool_calling(tok) and is_chat_template_prefix_preserving(tok)
    env = SoccerToolEnv(team_size=2)
    tools = [env.move, env.stay, env.kick]
    chat = [{"role": "user", "content": env.reset(seed=0)},
            {"role": "assistant", "content": "",
             "tool_calls": [{"type": "function", "function": {"name": "move", "arguments": {"direction": "east"}}}]},
            {"role": "tool", "name": "move", "content": env.move("east")}]
    ids = tok.apply_chat_template(chat, tools=tools, add_generation_prompt=True, tokenize=True, return_dict=False)
    assert tok.unk_token_id not in ids
    prefix = tok.apply_chat_template(chat[:1], tools=tools, add_generation_prompt=True, tokenize=True,
                                     return_dict=False)

    def parse(text):
        return parse_response(tok, tok(text, add_special_tokens=False)["input_ids"], prefix=prefix, tools=tools)

    assert parse("<call> move direction = east </call> <eos>")["tool_calls"] == [
        {"type": "function", "function": {"name": "move", "arguments": {"direction": "east"}}}]
    assert parse("<call> kick </call> <eos>")["tool_calls"][0]["function"] == {"name": "kick", "arguments": {}}
    assert parse("east <eos>") == {"role": "assistant", "content": "east"}


# TRL 1.16 still calls transformers' `gradient_checkpointing*` names that 5.24 deprecates (removal in v6)
@pytest.mark.filterwarnings("ignore:.*gradient_checkpointing.*:FutureWarning")
def test_two_grpo_steps_through_trl_environment_factory(tmp_path, monkeypatch, device):
    import huggingface_hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read at import: set it here too
    monkeypatch.setenv("TRL_EXPERIMENTAL_SILENCE", "1")
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from marl_grpo.llm.trl_env import build_tiny_tool_model, build_tiny_tool_tokenizer, teach_tool_format

    torch.manual_seed(0)
    tok = build_tiny_tool_tokenizer()
    model = build_tiny_tool_model(tok, context=512, **TINY)

    def make_env():
        return SoccerToolEnv(team_size=1, max_cycles=40)

    losses = teach_tool_format(model, tok, make_env, steps=60)
    assert losses[-1] < losses[0] / 3
    before = [p.detach().clone() for p in model.parameters()]
    dataset = Dataset.from_dict({"prompt": [[{"role": "user", "content": ""}]] * 4, "seed": [0, 1, 2, 3]})
    args = GRPOConfig(output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=4, num_generations=2,
                      max_completion_length=160, max_tool_calling_iterations=2, learning_rate=1e-3, beta=0.0,
                      logging_steps=1, report_to="none", save_strategy="no", use_cpu=device == "cpu", seed=0,
                      disable_tqdm=True, shuffle_dataset=False)
    trainer = GRPOTrainer(model=model, processing_class=tok, args=args, train_dataset=dataset,
                          environment_factory=make_env)
    trainer.train()

    logs = [row for row in trainer.state.log_history if "reward" in row]
    assert [row["step"] for row in logs] == [1, 2]
    assert sum(row["tools/call_frequency"] for row in logs) > 0  # the model did call the tools
    # the reward is the environments' get_reward (the only reward source), one env per rollout
    envs = trainer.environments
    assert len(envs) == 4 and all(e.done and e.steps == 40 for e in envs)  # scored on the whole match
    rewards = torch.tensor([e.get_reward() for e in envs])
    assert logs[-1]["rewards/SoccerToolEnv/mean"] == pytest.approx(float(rewards.mean()), abs=1e-7)
    assert logs[-1]["reward"] == pytest.approx(float(rewards.mean()), abs=1e-7)
    assert any(not torch.equal(a, b.cpu()) for a, b in zip(before, model.parameters()))

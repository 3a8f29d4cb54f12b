"""A bridge to TRL: one soccer match as an environment of TRL's `GRPOTrainer(environment_factory=...)`.

TRL 1.16's (experimental) ``environment_factory`` contract, as `trl/trainer/grpo_trainer.py` implements it:

- the factory is called with no arguments: once when the trainer is built (to list the tools), then
  whenever a batch needs more instances; instances are pooled and reused, one per rollout;
- ``reset(**row)`` is called at the start of every rollout with the dataset row's columns as keywords
  (``prompt`` and any other column, e.g. ``seed``); the string it returns is appended to the last user
  message of the prompt;
- every public method other than ``reset`` and ``get_reward`` (the class's functions whose name does not
  start with ``_``) is a tool: transformers' ``get_json_schema`` builds its schema from the type hints
  and the Google-style docstring (``Args:``; ``(choices: [...])`` becomes an ``enum``), the model calls
  it through its chat template's tool-call syntax, and the returned string becomes a ``tool`` message
  after which the model generates again (up to ``max_tool_calling_iterations`` rounds and
  ``max_completion_length`` tokens for the whole episode; tool-result tokens are masked out of the
  loss). An exception raised by a tool is caught and shown to the model as ``{'error': '<message>'}``
  (and counted in ``tools/failure_frequency``), so a bad argument raises a `ValueError` naming the
  bad value and the allowed ones;
- ``get_reward()`` (no arguments, a float) is called once per finished rollout and is that rollout's
  reward (one more reward function, weight 1, logged under the class name), so ``reward_funcs`` may be
  omitted. Here it is the controlled player's summed env reward over the whole match: the steps no
  tool call played are played with the player standing still (`SoccerToolEnv.play_out`).

The trainer also needs a chat template that renders tool calls and tool messages (checked by
`trl.chat_template_utils.supports_tool_calling`) and that preserves prefixes, and a way to parse tool
calls out of the generated text: a tokenizer ``response_template`` (transformers >= 5.13), which TRL
adds by itself only for the chat templates of the model families it knows (Qwen, Llama 3.1, ...).
`build_tiny_tool_tokenizer` gives the word-level tiny tokenizer such a template, and
`teach_tool_format` gives a freshly initialised tiny model the habit of calling the tools (a few
supervised steps on random valid calls) so that a tiny run actually plays.

    from marl_grpo.llm.trl_env import SoccerToolEnv
    trainer = GRPOTrainer(model=model, processing_class=tokenizer, args=GRPOConfig(...),
                          train_dataset=dataset,        # columns "prompt" and "seed"
                          environment_factory=lambda: SoccerToolEnv(team_size=1))

See `scripts/recipe_trl.py` for a complete run. This module imports neither TRL nor transformers
(the tiny-model helpers import transformers when called).
"""

from __future__ import annotations

import random
from typing import Any

import torch

from marl_grpo.agents import make_bot
from marl_grpo.agents.llm_text import COMPASS, FIELD_VALUES, fill, render_soccer
from marl_grpo.envs import KICK_ACTION, SoccerVecEnv

TOOL_NOTE = "use the tools : move towards a compass direction , stay or kick ."
"""appended to the kickoff situation that `reset` returns: what the player can do"""
OVER_NOTE = "the match is over ."
"""what a tool answers once the match has ended (with the final score)"""
_DECISION_TAIL = " " + " ".join([fill("actions", actions=FIELD_VALUES["actions"][0]), fill("format"), fill("cue")])
"""the end of a decision prompt (`render_soccer`) that asks for an answer word: cut in the tool mode"""


class SoccerToolEnv:
    """One soccer match in which the model plays one player through tools, the bot everyone else.

    Args:
        team_size: players per team (``blue_size`` / ``red_size`` in `env_kwargs` override it).
        player: the controlled player's index, blue slots first (0 = blue player 1).
        hold: env steps a tool call plays (the player holds its action that long), so that one call matters.
        max_cycles: steps of a match; the episode ends with the match.
        bot: the scripted bot playing every other player ("random", "chaser" or "team").
        bot_strength: that bot's strength (as in `marl_grpo.agents.make_bot`).
        seed: the match seed when `reset` gets none (then ``seed + number of earlier resets``).
        play_out: `get_reward` first plays the rest of the match with the player standing still (action
            stay), so that every rollout is scored on the whole match: an episode that stops calling
            tools early (or whose calls fail) is not spared the remaining steps, and the G episodes
            of a GRPO group, which share the seed, are comparable. False: score the steps played only.
        env_kwargs: further `SoccerConfig` fields (reward weights, pitch, ...).

    The observation text is the LLM mode's decision prompt (`llm_text.render_soccer`: the player's own
    mirrored frame, east = towards the opponent goal) without its answer-word request; `reset` adds
    `TOOL_NOTE` (the tools' results do not repeat it, to keep episodes short).
    Attributes for inspection (not tools): `env` (the `SoccerVecEnv` of one match), `player`, `blue`
    (its team), `done` (the match has ended), `steps` (env steps played since the reset). Everything
    runs on the CPU: one match per rollout is too small for a GPU.
    """

    def __init__(self, team_size: int = 2, player: int = 0, hold: int = 4, max_cycles: int = 60, bot: str = "team",
                 bot_strength: float = 1.0, seed: int = 0, play_out: bool = True,
                 env_kwargs: dict[str, Any] | None = None):
        self.env = SoccerVecEnv(num_envs=1, device="cpu", team_size=team_size, max_cycles=max_cycles,
                                **(env_kwargs or {}))
        config = self.env.config
        if not 0 <= player < config.num_agents:
            raise ValueError(f"player={player} is not a player of this match: expected 0..{config.num_agents - 1}")
        if hold < 1:
            raise ValueError(f"hold={hold} must be >= 1")
        self.player, self.hold, self.base_seed, self.play_out = player, hold, seed, play_out
        self.blue = player < config.n_blue
        self._bot = make_bot(bot, config, strength=bot_strength, seed=seed)
        self._obs: torch.Tensor | None = None
        self._resets = 0
        self._total = 0.0
        self.steps = 0
        self.done = False
        self._final_score: tuple[int, int] | None = None

    # ------------------------------------------------------------------ TRL's contract
    def reset(self, seed: int | None = None, **row: Any) -> str:
        """Start a match (`seed`, else ``seed + resets`` of the constructor) and describe it; other
        dataset columns (`row`, e.g. ``prompt``) are ignored."""
        seed = self.base_seed + self._resets if seed is None else int(seed)
        self._resets += 1
        self._obs = self.env.reset(seed=seed)
        self._bot.reset(seed)
        self._total, self.steps, self.done, self._final_score = 0.0, 0, False, None
        return f"{self._describe()} {TOOL_NOTE}"

    def move(self, direction: str) -> str:
        """Run towards a compass direction for a few steps.

        Args:
            direction: where to run; east is towards the opponent goal
                (choices: ["east", "northeast", "north", "northwest", "west", "southwest", "south", "southeast"])

        Returns:
            The situation after the steps, as text.
        """
        if not isinstance(direction, str) or direction not in COMPASS:
            raise ValueError(f"direction {direction!r} is not a compass direction: use one of {', '.join(COMPASS)} "
                             "(east is towards the opponent goal)")
        return self._play(1 + COMPASS.index(direction))

    def stay(self) -> str:
        """Stay put (no acceleration) for a few steps.

        Returns:
            The situation after the steps, as text.
        """
        return self._play(0)

    def kick(self) -> str:
        """Kick the ball if it is within reach (it flies from you through the ball), then wait a few steps.

        Returns:
            The situation after the steps, as text.
        """
        return self._play(KICK_ACTION)

    def get_reward(self) -> float:
        """The controlled player's summed env reward since the last reset; with `play_out` (the default)
        the rest of the match is played first, the player standing still."""
        if self.play_out and self._obs is not None:
            while not self.done:
                self._play(0)
        return self._total

    # ------------------------------------------------------------------ internals (not tools)
    def _play(self, action: int) -> str:
        if self._obs is None:
            raise RuntimeError("reset() must start a match before a tool is called")
        if self.done:
            raise ValueError(f"the match is over ({self.steps} steps played): no more actions; "
                             f"final {self._score_text()}")
        rows = torch.zeros(1, dtype=torch.long)
        for _ in range(self.hold):
            actions = self._bot.act(self._obs)
            actions[rows, self.player] = action
            obs, rewards, terminated, truncated, infos = self.env.step(actions)
            self._total += float(rewards[0, self.player])
            self.steps += 1
            if bool(terminated[0] | truncated[0]):  # the vec env has already reset: keep the final score
                blue, red = (int(g) for g in infos["final_score"][0])
                self._final_score = (blue, red) if self.blue else (red, blue)
                self.done = True
                break
            self._obs = obs
        return self._describe()

    def _score_text(self) -> str:
        own, opp = (str(min(g, int(FIELD_VALUES["goals"][-1]))) for g in self._final_score)
        return fill("score", goals=own, goals_2=opp)

    def _describe(self) -> str:
        if self.done:
            return f"{OVER_NOTE} {self._score_text()}"
        prompt = render_soccer(self._obs[0, self.player], self.env.config)[0]
        if not prompt.endswith(_DECISION_TAIL):
            raise AssertionError(f"render_soccer changed its ending: {prompt[-80:]!r}")
        return prompt[: -len(_DECISION_TAIL)]


# --------------------------------------------------------------------------- a tiny tool-calling model

TOOL_CHAT_TEMPLATE = (
    "{{ bos_token }} "
    "{% if tools %}<|system|> tools :{% for tool in tools %} {{ tool.function.name }}"
    "{% for name in (tool.function.parameters.properties or {}) %} {{ name }}{% endfor %} .{% endfor %} {% endif %}"
    "{% for message in messages %}"
    "{% if message.role == 'assistant' %}<|assistant|>{% if message.content %} {{ message.content }}{% endif %}"
    "{% for call in message.tool_calls or [] %} <call> {{ call.function.name }}"
    "{% if call.function.arguments is mapping %}{% for key, value in call.function.arguments.items() %}"
    " {{ key }} = {{ value }}{% endfor %}{% else %} {{ call.function.arguments }}{% endif %} </call>{% endfor %}"
    " {{ eos_token }} "
    "{% else %}<|{{ message.role }}|> {{ message.content }} {% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|> {% endif %}"
)
"""Chat template of the word-level tiny tokenizer: every token separated by a space, tools listed as
``<|system|> tools : move direction . stay . kick .``, a tool call as ``<call> move direction = east </call>``,
an assistant turn closed by EOS, a tool result as ``<|tool|> <text>``. Prefix-preserving, as TRL needs."""

TOOL_RESPONSE_TEMPLATE: dict[str, Any] = {
    "defaults": {"role": "assistant"},
    "start_anchor": "<|assistant|>",
    "fields": {
        "tool_calls": {
            "open_pattern": r"<call>\s*(?P<name>\w+)",
            "close_pattern": r"\s*</call>\s*",
            "repeats": True,
            "content": "xml-inline",
            "content_args": {"tag_pattern": r"(?P<key>\w+)\s*=\s*(?P<value>\S+)", "value_parser": {"name": "text"}},
            "transform": {"type": "function", "function": {"name": "{name}", "arguments": "{content}"}},
        },
        "content": {"close_pattern": r"<eos>\s*|$", "content": "text"},
    },
}
"""transformers' ``response_template`` (>= 5.13) that parses `TOOL_CHAT_TEMPLATE`'s tool calls back"""

TOOL_WORDS = ("<|system|>", "<|user|>", "<|assistant|>", "<|tool|>", "<call>", "</call>", "tools", "=", "direction",
              *TOOL_NOTE.split(), *OVER_NOTE.split())
"""words of the tool mode that the decision prompts do not have"""


def build_tiny_tool_tokenizer() -> Any:
    """The tiny word-level tokenizer (`build_tiny_tokenizer`) with the tool-mode words, `TOOL_CHAT_TEMPLATE`
    and `TOOL_RESPONSE_TEMPLATE`: what TRL's tool calling needs from a tokenizer."""
    from marl_grpo.agents.llm import build_tiny_tokenizer
    from marl_grpo.agents.llm_text import vocabulary

    tokenizer = build_tiny_tokenizer([*vocabulary(), *TOOL_WORDS])
    tokenizer.chat_template = TOOL_CHAT_TEMPLATE
    tokenizer.response_template = TOOL_RESPONSE_TEMPLATE
    return tokenizer


def build_tiny_tool_model(tokenizer: Any, context: int = 1024, seed: int = 0, **sizes: int) -> Any:
    """`build_tiny_model` (Llama-style, from a config, no download) for `tokenizer`, with `context` as its
    ``max_position_embeddings`` (TRL stops an episode's tool rounds at that length; a soccer situation is
    some 60 tokens). Plain RoPE does not depend on that number, so raising it changes no weight."""
    from marl_grpo.agents.llm import build_tiny_model

    model = build_tiny_model(tokenizer, seed=seed, **sizes)
    model.config.max_position_embeddings = context
    return model


def teach_tool_format(model: Any, tokenizer: Any, make_env: Any, steps: int = 60, batch_size: int = 16,
                      learning_rate: float = 3e-3, seed: int = 0) -> list[float]:
    """Supervised warm-up so that a freshly initialised model calls the tools at all: `steps` Adam steps
    of cross-entropy on the completion ``<call> ... </call> <eos>`` of a uniformly random valid tool call
    (move in a random direction, stay or kick) after the prompt of a random kickoff, rendered with the
    tokenizer's chat template and the env's tools. It teaches the format and a uniform policy, no
    soccer. Returns the losses; the model is left in train mode."""
    env = make_env()
    tools = [env.move, env.stay, env.kick]
    rng = random.Random(seed)
    prompts = []
    for k in range(batch_size * 4):
        situation = env.reset(seed=seed + k)
        prompts.append(tokenizer.apply_chat_template([{"role": "user", "content": situation}], tools=tools,
                                                     add_generation_prompt=True, tokenize=False))
    calls = [f"<call> move direction = {d} </call>" for d in COMPASS] + ["<call> stay </call>", "<call> kick </call>"]
    device = next(model.parameters()).device
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    model.train()
    losses = []
    for _ in range(steps):
        texts, prompt_lens = [], []
        for _ in range(batch_size):
            prompt = rng.choice(prompts)
            texts.append(f"{prompt} {rng.choice(calls)} {tokenizer.eos_token}")
            prompt_lens.append(len(tokenizer(prompt, add_special_tokens=False)["input_ids"]))
        enc = tokenizer(texts, add_special_tokens=False, return_tensors="pt", padding=True)
        ids, mask = enc["input_ids"].to(device), enc["attention_mask"].to(device)
        labels = ids.masked_fill(mask == 0, -100)
        pad = (mask == 0).sum(1)  # left padding
        for row, (p, n) in enumerate(zip(prompt_lens, pad.tolist())):
            labels[row, : n + p] = -100  # learn the completion only
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        loss = model(input_ids=ids, attention_mask=mask, position_ids=positions, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


__all__ = ["OVER_NOTE", "TOOL_CHAT_TEMPLATE", "TOOL_NOTE", "TOOL_RESPONSE_TEMPLATE", "TOOL_WORDS", "SoccerToolEnv",
           "build_tiny_tool_model", "build_tiny_tool_tokenizer", "teach_tool_format"]

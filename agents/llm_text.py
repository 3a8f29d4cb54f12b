"""The LLM agent's text interface: soccer observation -> English prompt, answer -> action.

Pure Python and torch; no `transformers` here (`marl_grpo.agents.llm` holds the model side).

Prompts describe the situation in the agent's own mirrored frame, where it always attacks
towards the **east** (+x) and **north** is +y, so the eight compass words are exactly the move
actions (`direction_to_action` picks the compass sector, `envs/config.py` the action table):

| action | 0 | 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 | 9 |
|---|---|---|---|---|---|---|---|---|---|---|
| word | stay | east | northeast | north | northwest | west | southwest | south | southeast | kick |

One half length is rendered as 50 metres whatever the pitch size (observations are in half
lengths). Numbers are rounded coarsely (distances to 1 m below 10 m, then to 5 m; offsets to
10 m; time to 10 percent; scores capped at 20) so that a word-level vocabulary stays small.
A 2v2 soccer prompt reads::

    you are blue player 1 . score 0 to 1 . time left 80 percent . you are moving east .
    ball 15 m northeast , still . ball out of kick reach . teammate 2 25 m west .
    opponent 1 9 m north . opponent 2 40 m east . opponent goal 50 m east . own goal 55 m west .
    east is towards the opponent goal . actions : stay east northeast north northwest west
    southwest south southeast kick . answer with one action word . action :

and the answer is one action word (then end-of-sequence, unless generation stops after one token).
`parse_answer` reads it under one of the `ANSWER_FORMATS`: ``word`` (strict: the answer,
stripped of surrounding white space, must be exactly one allowed word, else it is invalid),
``lenient``, ``tag`` or ``choice``. `TextFormat` bundles the answer words, the answer format and
how a chat model sees the prompt (its chat template and system prompt).

Every sentence is a template of `TEMPLATES` whose fields take values from `FIELD_VALUES` only
(checked as each prompt is built), so `vocabulary()` derives the complete word list from the
renderer itself and cannot drift from it.
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from marl_grpo.envs.config import MAX_TEAM_SIZE, NUM_ACTIONS, SoccerConfig

COMPASS = ("east", "northeast", "north", "northwest", "west", "southwest", "south", "southeast")
"""compass words counter-clockwise from east (the attacked goal), as move actions 1..8"""
ACTION_WORDS = ("stay", *COMPASS, "kick")
"""one word per soccer action, indexed like `marl_grpo.envs.ACTION_NAMES`"""
HERE = "here"
"""the direction of something less than half a rounding step away"""
DIRECTION_ANSWERS = (*COMPASS, HERE)
"""the answers of the direction task"""
assert len(ACTION_WORDS) == NUM_ACTIONS

METRES = 50.0
"""metres per half length in the prompts"""
STILL_PLAYER = 0.2
"""a player slower than this fraction of its top speed is described as still"""
STILL_BALL = 0.05
"""a ball slower than this fraction of `kick_power` is described as still"""
MAX_SCORE = 20
"""scores are capped at this many goals in prompts"""

DISTANCES = tuple(range(10)) + tuple(range(10, 125, 5))
"""distances in metres a prompt can show: 1 m steps below 10 m, then 5 m steps up to 120 m"""
OFFSETS = tuple(range(-120, 130, 10))
"""signed offsets in metres (direction task): 10 m steps"""

FIELD_VALUES: dict[str, tuple[str, ...]] = {
    "team": ("blue", "red"),
    "slot": tuple(str(i) for i in range(1, MAX_TEAM_SIZE + 1)),
    "goals": tuple(str(i) for i in range(MAX_SCORE + 1)),
    "percent": tuple(str(i) for i in range(0, 101, 10)),
    "dist": tuple(str(d) for d in DISTANCES),
    "dir": DIRECTION_ANSWERS,
    "motion": ("still", *(f"moving {w}" for w in COMPASS)),
    "offset": tuple(str(o) for o in OFFSETS),
    "actions": (" ".join(ACTION_WORDS),),
    "answers": (" ".join(DIRECTION_ANSWERS),),
}
"""every value each template field can take (a field `name_2` takes the values of `name`)"""

TEMPLATES: dict[str, str] = {
    # soccer decision task
    "intro": "you are {team} player {slot} .",
    "score": "score {goals} to {goals_2} .",
    "time": "time left {percent} percent .",
    "self": "you are {motion} .",
    "ball": "ball {dist} m {dir} , {motion} .",
    "reach": "ball in kick reach .",
    "no_reach": "ball out of kick reach .",
    "teammate": "teammate {slot} {dist} m {dir} .",
    "opponent": "opponent {slot} {dist} m {dir} .",
    "opp_goal": "opponent goal {dist} m {dir} .",
    "own_goal": "own goal {dist} m {dir} .",
    "frame": "east is towards the opponent goal .",
    "actions": "actions : {actions} .",
    "format": "answer with one action word .",
    "cue": "action :",
    # direction task
    "offset": "the ball is at x {offset} y {offset_2} from you , in metres .",
    "axes": "x grows to the east and y to the north .",
    "question": "which direction is the ball ? answers : {answers} .",
    "format_direction": "answer with one direction word .",
    "cue_direction": "direction :",
}
"""sentence templates; prompts are made of these and nothing else"""


def _field_values(name: str) -> tuple[str, ...]:
    return FIELD_VALUES[name.split("_")[0]]


def fill(key: str, **values: str) -> str:
    """Fill template `key`; raises if a value is not one the vocabulary knows."""
    for name, value in values.items():
        if value not in _field_values(name):
            raise ValueError(f"template {key!r}: {name}={value!r} is not one of {_field_values(name)}")
    return TEMPLATES[key].format(**values)


def vocabulary() -> list[str]:
    """Every word a prompt or an answer can contain, derived from `TEMPLATES` and `FIELD_VALUES`."""
    words: set[str] = set(ACTION_WORDS) | set(DIRECTION_ANSWERS)
    for template in TEMPLATES.values():
        for literal, field, _, _ in string.Formatter().parse(template):
            words.update(literal.split())
            if field:
                for value in _field_values(field):
                    words.update(value.split())
    return sorted(words, key=lambda w: (w.lstrip("-").isdigit(), w))


# --------------------------------------------------------------------------- numbers and directions


def _round_distance(metres: float) -> int:
    if metres < 9.5:
        return int(round(metres))
    return int(min(120, 5 * round(metres / 5)))


def _round_offset(metres: float) -> int:
    return int(max(-120, min(120, 10 * round(metres / 10))))


def compass(dx: float, dy: float) -> str:
    """Compass word of the direction (dx, dy) (east = +x, north = +y), as `direction_to_action`."""
    sector = int(round(math.atan2(dy, dx) * 4.0 / math.pi)) % 8
    return COMPASS[sector]


def _place(dx: float, dy: float) -> dict[str, str]:
    """`dist` and `dir` fields of a relative position given in half lengths."""
    dist = _round_distance(METRES * math.hypot(dx, dy))
    return {"dist": str(dist), "dir": HERE if dist == 0 else compass(dx, dy)}


def _motion(vx: float, vy: float, still: float) -> str:
    return "still" if math.hypot(vx, vy) < still else f"moving {compass(vx, vy)}"


# --------------------------------------------------------------------------- observation decoding


def _rows(obs: torch.Tensor | np.ndarray, config: SoccerConfig) -> np.ndarray:
    obs = obs.detach().cpu().numpy() if isinstance(obs, torch.Tensor) else np.asarray(obs)
    obs = obs.astype(np.float64).reshape(-1, obs.shape[-1])
    if obs.shape[-1] != config.obs_dim:
        raise ValueError(f"obs must have shape [..., obs_dim={config.obs_dim}] for this config, got {list(obs.shape)}")
    return obs


def _situation(o: np.ndarray, layout: dict) -> list[str]:
    """The sentences describing one agent's observation `o [D]` (all but the question)."""
    get = lambda name: o[layout[name]]  # noqa: E731
    team = "blue" if get("team")[0] > 0.5 else "red"
    slot = int(np.argmax(get("slot"))) + 1
    own, opp = (min(MAX_SCORE, int(round(g / 0.2))) for g in get("score"))
    percent = int(10 * round(10 * float(np.clip(get("time_left")[0], 0.0, 1.0))))
    vel, ball, ball_vel = get("self_vel"), get("ball_rel"), get("ball_vel")
    out = [
        fill("intro", team=team, slot=str(slot)),
        fill("score", goals=str(own), goals_2=str(opp)),
        fill("time", percent=str(percent)),
        fill("self", motion=_motion(vel[0], vel[1], STILL_PLAYER)),
        fill("ball", **_place(ball[0], ball[1]), motion=_motion(ball_vel[0], ball_vel[1], STILL_BALL)),
        fill("reach" if get("ball_in_reach")[0] > 0.5 else "no_reach"),
    ]
    mates = get("teammates").reshape(-1, 5)
    mate_slots = [k + 1 + (k + 1 >= slot) for k in range(len(mates))]  # teammates in slot order, skipping self
    for k, m in enumerate(mates):
        if m[4] > 0.5:
            out.append(fill("teammate", slot=str(mate_slots[k]), **_place(m[0], m[1])))
    for k, m in enumerate(get("opponents").reshape(-1, 5)):
        if m[4] > 0.5:
            out.append(fill("opponent", slot=str(k + 1), **_place(m[0], m[1])))
    out.append(fill("opp_goal", **_place(*get("opp_goal_rel"))))
    out.append(fill("own_goal", **_place(*get("own_goal_rel"))))
    return out


def render_soccer(obs: torch.Tensor | np.ndarray, config: SoccerConfig) -> list[str]:
    """Decision prompts: observations `[..., D]` -> one prompt per row, ending in ``action :``."""
    layout = config.obs_layout()
    tail = [fill("frame"), fill("actions", actions=FIELD_VALUES["actions"][0]), fill("format"), fill("cue")]
    return [" ".join(_situation(o, layout) + tail) for o in _rows(obs, config)]


def render_direction(obs: torch.Tensor | np.ndarray, config: SoccerConfig) -> tuple[list[str], list[str]]:
    """Direction-task prompts and their true answers: observations `[..., D]` -> (prompts, answers).

    The question gives the ball's offset from the agent (rounded to 10 m) and asks for its
    compass direction; the truth is computed from the rounded offset shown, so it is always
    consistent with the prompt (``here`` for a zero offset).
    """
    layout = config.obs_layout()
    prompts, answers = [], []
    for o in _rows(obs, config):
        dx, dy = (_round_offset(METRES * v) for v in o[layout["ball_rel"]])
        prompts.append(" ".join([
            fill("offset", offset=str(dx), offset_2=str(dy)), fill("axes"),
            fill("question", answers=FIELD_VALUES["answers"][0]), fill("format_direction"), fill("cue_direction"),
        ]))
        answers.append(HERE if dx == dy == 0 else compass(dx, dy))
    return prompts, answers


# --------------------------------------------------------------------------- answers

ANSWER_FORMATS = ("word", "lenient", "tag", "choice")
"""how a completion is read as an answer (`parse_answer`):

- ``word``: strict, the completion (special tokens kept) stripped of surrounding white space is
  exactly one allowed word (the tiny presets' format);
- ``lenient``: the first allowed word in the text, ignoring case, punctuation and markdown
  (`find_word`);
- ``tag``: free text (reasoning) then ``<action>word</action>``; the last such tag counts, and
  its content must be exactly one allowed word up to case, punctuation and markdown;
- ``choice``: constrained decoding (`marl_grpo.agents.llm.ChoiceConstraint`) so that the
  completion can only be one allowed word (then EOS); read as ``word`` once special tokens are
  removed.
"""

FORMAT_INSTRUCTIONS: dict[str, str] = {
    "word": "Answer with exactly one word from this list, and nothing else: {answers}.",
    "lenient": "Answer with one word from this list: {answers}.",
    "tag": "Think briefly, then give your answer as <action>word</action>, where word is one of: {answers}.",
    "choice": "Answer with exactly one word from this list, and nothing else: {answers}.",
}
"""the answer format's instruction, ``{format}`` of the system prompt"""

DEFAULT_SYSTEM_PROMPT = "You are playing a soccer game through text. {format}"
"""the system prompt of chat-template prompts: ``{format}`` becomes the answer format's instruction
(`FORMAT_INSTRUCTIONS`), ``{answers}`` the allowed words separated by spaces"""

_NON_LETTERS = re.compile(r"[^a-z]+")
_COMPOUND = re.compile(r"\b(north|south)[ \t_-]*(east|west)\b")
_TAG = re.compile(r"<action>(.*?)</action>", re.IGNORECASE | re.DOTALL)


def _words(text: str) -> list[str]:
    """Lower-cased words of `text`: compass compounds written apart (``north east``, ``North-East``,
    ``south_west``) are joined, then every run of non-letters (punctuation, digits, markdown,
    white space) separates words."""
    return _NON_LETTERS.sub(" ", _COMPOUND.sub(r"\1\2", text.lower())).split()


def find_word(text: str, allowed: Sequence[str] = ACTION_WORDS) -> int | None:
    """Lenient parser: the index in `allowed` of the first word of `text` (`_words`: lower-cased,
    compass compounds joined, split on anything that is not a letter) that is an allowed word;
    None when there is none. ``**East**.``, ``Action: east`` and ``I'd go north-east`` all parse
    (east, east, northeast); ``eastward`` and ``northeastern`` are not words of the list."""
    for word in _words(text):
        if word in allowed:
            return allowed.index(word)
    return None


def parse_answer(text: str, allowed: Sequence[str] = ACTION_WORDS, answer_format: str = "word") -> int | None:
    """The index in `allowed` of the answer in `text` under `answer_format` (`ANSWER_FORMATS`), or
    None when the answer is malformed.

    ``word`` and ``choice`` are strict: the answer (the completion up to its end-of-sequence
    token), stripped of surrounding white space, must be exactly one allowed word, with no other
    word, punctuation or capitals. ``lenient`` is `find_word`. ``tag`` reads the last
    ``<action>...</action>`` (tag names in any case) and needs its content to be exactly one allowed
    word once lower-cased and stripped of punctuation and markdown (``<action> **East** </action>``
    is east; ``<action>go east</action>`` is malformed).
    """
    if answer_format in ("word", "choice"):
        word = text.strip()
        return allowed.index(word) if word in allowed else None
    if answer_format == "lenient":
        return find_word(text, allowed)
    if answer_format == "tag":
        tags = _TAG.findall(text)
        words = _words(tags[-1]) if tags else []
        return allowed.index(words[0]) if len(words) == 1 and words[0] in allowed else None
    raise ValueError(f"answer_format={answer_format!r} is invalid: expected one of {ANSWER_FORMATS}")


def parse_answers(texts: Sequence[str], allowed: Sequence[str] = ACTION_WORDS,
                  answer_format: str = "word") -> tuple[torch.Tensor, torch.Tensor]:
    """Parse a batch: `(index int64 [S], valid bool [S])`; invalid answers get index 0 (stay)."""
    parsed = [parse_answer(t, allowed, answer_format) for t in texts]
    index = torch.tensor([0 if p is None else p for p in parsed], dtype=torch.long)
    valid = torch.tensor([p is not None for p in parsed], dtype=torch.bool)
    return index, valid


CHAT_TEMPLATE_MODES = ("auto", "on", "off")
"""``auto``: wrap prompts in the tokenizer's chat template when it has one; ``on``: always (a
tokenizer without one is an error); ``off``: plain text, as the tiny word-level model is trained"""


@dataclass(frozen=True)
class TextFormat:
    """How prompts are presented to a model and how its completions are read.

    Args:
        answers: the allowed answer words, in action order (`ACTION_WORDS`, `DIRECTION_ANSWERS`).
        answer_format: one of `ANSWER_FORMATS`.
        chat_template: one of `CHAT_TEMPLATE_MODES`.
        system_prompt: the system message under the chat template (empty: none), with the
            placeholders of `DEFAULT_SYSTEM_PROMPT`; unused without the chat template.
    """

    answers: tuple[str, ...] = ACTION_WORDS
    answer_format: str = "word"
    chat_template: str = "off"
    system_prompt: str = DEFAULT_SYSTEM_PROMPT

    def __post_init__(self) -> None:
        if self.answer_format not in ANSWER_FORMATS:
            raise ValueError(f"answer_format={self.answer_format!r} is invalid: expected one of {ANSWER_FORMATS}")
        if self.chat_template not in CHAT_TEMPLATE_MODES:
            raise ValueError(f"chat_template={self.chat_template!r} is invalid: expected one of {CHAT_TEMPLATE_MODES}")
        object.__setattr__(self, "answers", tuple(self.answers))

    @classmethod
    def from_config(cls, cfg: Any, answers: Sequence[str]) -> TextFormat:
        """The format of a run config (an `LLMConfig`, or its dict as saved in ``llm_config.json``);
        fields it lacks (a checkpoint from before these options) take today's defaults."""
        get = cfg.get if isinstance(cfg, dict) else lambda name, default: getattr(cfg, name, default)
        return cls(tuple(answers), get("answer_format", "word"), get("chat_template", "auto"),
                   get("system_prompt", DEFAULT_SYSTEM_PROMPT))

    def system_message(self) -> str:
        """The system prompt with its placeholders filled ("" = no system message)."""
        instruction = FORMAT_INSTRUCTIONS[self.answer_format]
        fill_in = lambda s: s.replace("{answers}", " ".join(self.answers))  # noqa: E731
        return fill_in(self.system_prompt.replace("{format}", instruction))

    def parse(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """`parse_answers` of `texts` under this format: `(index [S], valid [S])`."""
        return parse_answers(texts, self.answers, self.answer_format)


__all__ = [
    "ACTION_WORDS",
    "ANSWER_FORMATS",
    "CHAT_TEMPLATE_MODES",
    "DEFAULT_SYSTEM_PROMPT",
    "FORMAT_INSTRUCTIONS",
    "COMPASS",
    "DIRECTION_ANSWERS",
    "FIELD_VALUES",
    "HERE",
    "TEMPLATES",
    "compass",
    "fill",
    "find_word",
    "parse_answer",
    "parse_answers",
    "render_direction",
    "render_soccer",
    "TextFormat",
    "vocabulary",
]

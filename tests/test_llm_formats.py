"""Instruct-model input and output of the LLM mode: answer formats, chat template, EOS ids,
constrained decoding (``choice``) and chunked log-probs."""

import pytest
import torch

pytest.importorskip("transformers")

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors  # noqa: E402
from transformers import PreTrainedTokenizerFast  # noqa: E402

import marl_grpo.agents.llm as llm  # noqa: E402
from marl_grpo.agents.llm import (  # noqa: E402
    SPECIAL_TOKENS, ChoiceConstraint, Completions, LLMAgent, build_tiny_model, build_tiny_tokenizer, eos_mask,
)
from marl_grpo.agents.llm_text import (  # noqa: E402
    ACTION_WORDS, DIRECTION_ANSWERS, TextFormat, find_word, parse_answer, parse_answers, vocabulary,
)
from marl_grpo.cli import main  # noqa: E402
from marl_grpo.llm import LLMConfig, preset, train_llm  # noqa: E402

TINY = {"hidden_size": 32, "num_layers": 2, "num_heads": 2, "intermediate_size": 64}
PROMPTS = ["you are blue player 1 . ball 15 m northeast , still . action :",
           "you are red player 2 . ball 3 m west , moving south . action :",
           "opponent goal 50 m east . own goal 55 m west . action :"]
CHAT_TEMPLATE = ("<bos> {% for m in messages %}{{ m['role'] }} : {{ m['content'] }} <eos> {% endfor %}"
                 "{% if add_generation_prompt %}assistant :{% endif %}")
"""a chat template in the tiny tokenizer's words: one <bos>, then role : content <eos> per message"""
COMPOUNDS = ("northeast", "northwest", "southeast", "southwest")


def word_piece_tokenizer() -> PreTrainedTokenizerFast:
    """A WordPiece tokenizer on the prompt vocabulary without the compound compass words, so that
    ``northeast`` is ``north`` + ``##east`` (two tokens, the first of which is also the word
    ``north``)."""
    words = [*SPECIAL_TOKENS, *(w for w in vocabulary() if w not in COMPOUNDS), "##east", "##west"]
    vocab = {w: i for i, w in enumerate(dict.fromkeys(words))}
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="<unk>", continuing_subword_prefix="##"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    tokenizer.post_processor = processors.TemplateProcessing(single="<bos> $A",
                                                             special_tokens=[("<bos>", vocab["<bos>"])])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<bos>", eos_token="<eos>",
                                   pad_token="<pad>", unk_token="<unk>", padding_side="left")


@pytest.fixture(scope="module")
def agent(device) -> LLMAgent:
    return LLMAgent.tiny(seed=0, device=device, **TINY)


@pytest.fixture(scope="module")
def piece_agent(device) -> LLMAgent:
    tokenizer = word_piece_tokenizer()
    return LLMAgent(build_tiny_model(tokenizer, seed=1, **TINY), tokenizer, device)


def _encodings(tokenizer, words) -> set[tuple[int, ...]]:
    return {tuple(tokenizer.encode(text, add_special_tokens=False)) for w in words for text in (w, " " + w)}


# --------------------------------------------------------------------------- parsers


@pytest.mark.parametrize("text, word", [
    ("east", "east"), ("**East**.", "east"), ("Action: east", "east"), ("I'd go north-east", "northeast"),
    ("North East!", "northeast"), ("south_west", "southwest"), ("  KICK\n", "kick"), ("`stay`", "stay"),
    ("go west, then east", "west"), ("northeastern wind, so west", "west"), ("eastward", None), ("", None),
    ("north. East", "north"), ("move 2 the east", "east"), ("Answer: - **Northwest**", "northwest"),
])
def test_lenient_parser(text, word):
    expected = None if word is None else ACTION_WORDS.index(word)
    assert find_word(text) == expected and parse_answer(text, answer_format="lenient") == expected


@pytest.mark.parametrize("text, word", [
    ("<action>east</action>", "east"), ("the ball is north, so <action>north</action>", "north"),
    ("<action>west</action> no wait <action>kick</action>", "kick"), ("<ACTION> **South East** </Action>", "southeast"),
    ("<action>go east</action>", None), ("east", None), ("<action>east", None), ("<action></action>", None),
    ("<action>\nstay\n</action>", "stay"),
])
def test_tag_parser(text, word):
    assert parse_answer(text, answer_format="tag") == (None if word is None else ACTION_WORDS.index(word))


def test_word_and_choice_parsers_stay_strict():
    for answer_format in ("word", "choice"):
        assert parse_answer(" kick\n", answer_format=answer_format) == 9
        for bad in ("East", "east .", "<pad> east", "go east", "north-east", ""):
            assert parse_answer(bad, answer_format=answer_format) is None, (bad, answer_format)
    assert parse_answer("Here.", DIRECTION_ANSWERS, "lenient") == 8
    index, valid = parse_answers(["**West**", "nothing", "<action>kick</action>"], answer_format="lenient")
    assert index.tolist() == [5, 0, 9] and valid.tolist() == [True, False, True]
    with pytest.raises(ValueError, match="answer_format='json' is invalid"):
        parse_answer("east", answer_format="json")


def test_special_tokens_are_dropped_except_for_the_strict_word_format(agent):
    tok = agent.tokenizer
    ids = torch.tensor([[tok.bos_token_id, tok.convert_tokens_to_ids("east"), tok.eos_token_id, tok.pad_token_id]])
    kept, dropped = agent.decode(ids), agent.decode(ids, skip_special_tokens=True)
    assert kept == ["<bos> east"] and dropped == ["east"]
    assert parse_answer(kept[0]) is None  # a stray special token makes a tiny completion invalid
    assert parse_answer(dropped[0], answer_format="lenient") == 1


# --------------------------------------------------------------------------- chat template and system prompt


def test_chat_template_modes(device):
    tokenizer = build_tiny_tokenizer([*vocabulary(), "system", "user", "assistant"])
    tokenizer.chat_template = CHAT_TEMPLATE
    templated = LLMAgent(build_tiny_model(tokenizer, **TINY), tokenizer, device)
    plain = LLMAgent.tiny(device=device, **TINY)
    bos = tokenizer.bos_token_id
    prompt = PROMPTS[0]
    no_system = TextFormat(chat_template="on", system_prompt="")
    assert templated.format_prompts([prompt], no_system) == [f"<bos> user : {prompt} <eos> assistant :"]
    for fmt in (no_system, TextFormat(chat_template="auto", system_prompt="")):
        ids, mask = templated.encode_prompts([prompt], fmt)
        words = tokenizer.convert_ids_to_tokens(ids[0][mask[0].bool()].tolist())
        assert words == ["<bos>", "user", ":", *prompt.split(), "<eos>", "assistant", ":"]  # one <bos>, not two
    # the system prompt's placeholders are filled in
    (text,) = templated.format_prompts([prompt], TextFormat(chat_template="on", answer_format="tag"))
    assert text.startswith("<bos> system : You are playing a soccer game through text. Think briefly, then give "
                           "your answer as <action>word</action>, where word is one of: stay east northeast")
    custom = TextFormat(("east", "west"), chat_template="on", system_prompt="pick {answers} ; {format}")
    assert custom.system_message() == "pick east west ; Answer with exactly one word from this list, and nothing " \
                                      "else: east west."
    # off, and auto without a template: the plain prompt with the tokenizer's own <bos>
    for agent_, fmt in ((templated, TextFormat(chat_template="off")), (plain, TextFormat(chat_template="auto"))):
        ids, mask = agent_.encode_prompts([prompt], fmt)
        assert agent_.tokenizer.convert_ids_to_tokens(ids[0][mask[0].bool()].tolist()) == ["<bos>", *prompt.split()]
        assert not agent_.uses_chat_template(fmt)
    assert templated.uses_chat_template(TextFormat(chat_template="auto"))
    with pytest.raises(ValueError, match="chat_template='on' but this model's tokenizer has no chat template"):
        plain.generate([prompt], text_format=TextFormat(chat_template="on"))
    # generation starts right after the assistant prefix
    done = templated.generate([prompt], 2, max_new_tokens=2, text_format=no_system,
                              generator=torch.Generator(device=device).manual_seed(0))
    assert done.prompt_ids.shape[1] == len(prompt.split()) + 6
    assert tokenizer.convert_ids_to_tokens(done.prompt_ids[0, -2:].tolist()) == ["assistant", ":"]


def test_chat_template_on_without_one_is_one_clear_line(tmp_path):
    with pytest.raises(SystemExit, match="chat_template='on' but this model's tokenizer has no chat template"):
        main(["llm", "--preset", "test", "--log-dir", str(tmp_path), "--chat-template", "on"])
    for flag, value in (("--answer-format", "json"), ("--chat-template", "maybe")):
        with pytest.raises(SystemExit, match=f"{flag[2:].replace('-', '_')}='{value}' is invalid"):
            main(["llm", "--preset", "test", "--log-dir", str(tmp_path), flag, value])


# --------------------------------------------------------------------------- EOS ids


def test_generation_stops_on_every_eos_id(device):
    agent = LLMAgent.tiny(seed=3, device=device, **TINY)
    tok = agent.tokenizer
    extra = [tok.convert_tokens_to_ids(w) for w in ACTION_WORDS]
    agent.model.generation_config.eos_token_id = [tok.eos_token_id, *extra]
    assert agent.eos_token_ids == {tok.eos_token_id, *extra}
    done = agent.generate(PROMPTS, 16, max_new_tokens=4, generator=torch.Generator(device=device).manual_seed(0))
    stops = set(agent.eos_token_ids)
    stopped_on_extra = 0
    for row, mask, text in zip(done.completion_ids.tolist(), done.completion_mask.tolist(), done.texts):
        end = next((i for i, t in enumerate(row) if t in stops), None)
        if end is None:
            assert mask == [1.0] * len(row) and len(row) == 4
            continue
        stopped_on_extra += row[end] in extra
        assert row[end + 1:] == [tok.pad_token_id] * (len(row) - end - 1)  # nothing generated after it
        assert mask == [1.0] * (end + 1) + [0.0] * (len(row) - end - 1)
        assert text == tok.decode(row[:end], skip_special_tokens=False)
    assert stopped_on_extra > 0
    ids = torch.tensor([[5, 9, 2, 7], [9, 2, 0, 0], [5, 6, 7, 8]])
    assert eos_mask(ids, {2, 9}).tolist() == [[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 1]]
    assert eos_mask(ids, 2).tolist() == [[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]]


# --------------------------------------------------------------------------- constrained decoding


def test_choice_trie_for_multi_token_words(piece_agent):
    tok = piece_agent.tokenizer
    north, east = tok.convert_tokens_to_ids("north"), tok.convert_tokens_to_ids("##east")
    assert tok.encode("northeast", add_special_tokens=False) == [north, east]
    trie = piece_agent.choice_constraint(ACTION_WORDS, 4)
    after_north = trie.advance(0, north)
    assert trie.word[after_north] == 3  # "north" ends here ...
    allowed = set(trie.allowed_ids(after_north, 1))
    assert allowed == {east, tok.convert_tokens_to_ids("##west"), tok.eos_token_id}  # ... or goes on
    assert trie.allowed_ids(trie.advance(after_north, east), 2) == [tok.eos_token_id]
    # the batched step is the scalar one, for every node (UNCONSTRAINED too) and token of the vocabulary
    nodes = torch.arange(-1, len(trie.children)).repeat_interleave(len(tok))
    tokens = torch.arange(len(tok)).repeat(len(trie.children) + 1)
    assert trie.advance_batch(nodes, tokens).tolist() == [trie.advance(n, t) for n, t in
                                                          zip(nodes.tolist(), tokens.tolist())]
    # a budget of one token: only the one-token words, and nothing after them
    short = piece_agent.choice_constraint(ACTION_WORDS, 1)
    assert north in short.allowed_ids(0, 0) and tok.convert_tokens_to_ids("##east") not in short.allowed_ids(0, 0)
    assert short.allowed_ids(short.advance(0, north), 1) == [tok.eos_token_id]  # never sampled: budget spent
    with pytest.raises(ValueError, match="answer word 'banana' has no encoding"):
        LLMAgent.tiny(**TINY, device="cpu").choice_constraint(("east", "banana"), 2)
    deep = ChoiceConstraint.build(tok, ["northeast"], [tok.eos_token_id], 3)
    with pytest.raises(ValueError, match="max_new_tokens=1 is too small for answer_format='choice'"):
        ChoiceConstraint.build(tok, ["northeast"], [tok.eos_token_id], 1)
    assert deep.to_end[0] == 2


@pytest.mark.parametrize("which", ["word_level", "word_piece"])
def test_choice_completions_are_always_valid(which, agent, piece_agent, device):
    agent = agent if which == "word_level" else piece_agent
    generator = torch.Generator(device=device).manual_seed(0)
    seen = set()
    for max_new_tokens in (1, 2, 4):
        for greedy, temperature, top_p in ((False, 2.0, 1.0), (False, 1.0, 0.8), (True, 1.0, 1.0)):
            fmt = TextFormat(answer_format="choice")
            done = agent.generate(PROMPTS, 1 if greedy else 40, temperature=temperature, top_p=top_p,
                                  max_new_tokens=max_new_tokens, greedy=greedy, generator=generator, text_format=fmt)
            index, valid = fmt.parse(done.texts)
            assert bool(valid.all()), [t for t, v in zip(done.texts, valid) if not v]
            assert all(t.strip() in ACTION_WORDS for t in done.texts)
            seen |= {t.strip() for t in done.texts}
            if max_new_tokens == 1 and which == "word_piece":  # two-token words do not fit
                assert not seen & set(COMPOUNDS)
    assert len(seen) == len(ACTION_WORDS)  # every word, the two-token ones included
    # the direction task's answers too
    fmt = TextFormat(DIRECTION_ANSWERS, answer_format="choice")
    done = agent.generate(PROMPTS, 20, max_new_tokens=3, generator=generator, text_format=fmt)
    assert bool(fmt.parse(done.texts)[1].all())


def test_choice_logps_are_the_masked_log_softmax(piece_agent, device):
    """Each token's log-prob (and entropy) is the log-softmax of logits / T over the allowed
    tokens only: the continuations of an answer word's encoding that fit the budget, plus EOS
    where a word is complete (computed here from the encodings, not from the trie)."""
    agent, tok, temperature, budget = piece_agent, piece_agent.tokenizer, 0.8, 3
    fmt = TextFormat(answer_format="choice")
    batch = agent.generate(PROMPTS[:2], 6, temperature=temperature, max_new_tokens=budget, text_format=fmt,
                           generator=torch.Generator(device=device).manual_seed(2))
    logp, entropy = agent.completion_logps(batch, temperature=temperature, with_entropy=True)
    encodings = {e for e in _encodings(tok, ACTION_WORDS) if len(e) <= budget}
    assert any(len(e) == 2 for e in encodings)
    expected_logp, expected_entropy = torch.zeros_like(logp), torch.zeros_like(entropy)
    with torch.no_grad():
        for s in range(len(batch)):
            prompt = batch.prompt_ids[s][batch.prompt_mask[s].bool()]
            for t in range(int(batch.completion_mask[s].sum())):
                prefix = tuple(batch.completion_ids[s, :t].tolist())
                allowed = {e[t] for e in encodings if e[:t] == prefix and len(e) > t}
                allowed |= {tok.eos_token_id} if prefix in encodings else set()
                ids = torch.cat([prompt, batch.completion_ids[s, :t]])[None]
                logits = agent.model(input_ids=ids).logits[0, -1] / temperature
                allowed = torch.tensor(sorted(allowed), device=device)
                log_probs = torch.log_softmax(logits[allowed], -1)
                token = int(batch.completion_ids[s, t])
                assert token in allowed.tolist()
                expected_logp[s, t] = log_probs[allowed.tolist().index(token)]
                expected_entropy[s, t] = -(log_probs.exp() * log_probs).sum()
    assert torch.allclose(logp, expected_logp, atol=1e-5) and torch.allclose(entropy, expected_entropy, atol=1e-5)
    assert (batch.completion_mask.sum(1) >= 2).all()  # every completion scored its EOS (or a second token) too
    # the unconstrained log-probs differ: the mask is really applied
    free = Completions(*[getattr(batch, f) for f in ("prompt_ids", "prompt_mask", "completion_ids",
                                                     "completion_mask", "texts", "group_size")])
    assert (agent.completion_logps(free, temperature=temperature) < logp - 1e-3).any()


# --------------------------------------------------------------------------- chunked log-probs


@pytest.mark.parametrize("answer_format", ["word", "choice"])
@pytest.mark.parametrize("share_prompt", [True, False])
def test_chunked_logps_equal_unchunked(answer_format, share_prompt, piece_agent, device, monkeypatch):
    agent = piece_agent
    batch = agent.generate(PROMPTS, 5, max_new_tokens=4, text_format=TextFormat(answer_format=answer_format),
                           generator=torch.Generator(device=device).manual_seed(4))
    weights = torch.randn(batch.completion_ids.shape, generator=torch.Generator().manual_seed(0)).to(device)

    def values_and_grads(chunk_size):
        agent.model.zero_grad()
        logp, entropy = agent.completion_logps(batch, temperature=0.9, with_entropy=True, share_prompt=share_prompt,
                                               chunk_size=chunk_size)
        ((logp * weights).sum() + (entropy * weights.flip(0)).sum()).backward()
        return logp.detach(), entropy.detach(), [p.grad.clone() for p in agent.model.parameters()]

    whole = values_and_grads(None)
    assert int(batch.completion_mask.sum()) > 7
    for chunk_size in (1, 3, 7, 10_000):
        logp, entropy, grads = values_and_grads(chunk_size)
        assert torch.allclose(logp, whole[0], atol=1e-6) and torch.allclose(entropy, whole[1], atol=1e-6)
        assert all(torch.allclose(g, w, atol=1e-6) for g, w in zip(grads, whole[2]))
    # a model whose logits are not head(hidden) goes through its full logits: the same values
    monkeypatch.setattr(llm, "_output_head", lambda model: None)
    logp, entropy, grads = values_and_grads(3)
    assert torch.allclose(logp, whole[0], atol=1e-6) and torch.allclose(entropy, whole[1], atol=1e-6)
    assert all(torch.allclose(g, w, atol=1e-6) for g, w in zip(grads, whole[2]))
    agent.model.zero_grad()


def test_chunks_never_project_more_than_chunk_size_positions(piece_agent, device):
    """The output head sees at most `chunk_size` positions at once (forward and recomputation)."""
    agent = piece_agent
    batch = agent.generate(PROMPTS, 4, max_new_tokens=3, generator=torch.Generator(device=device).manual_seed(5))
    widths = []
    hook = agent.model.get_output_embeddings().register_forward_hook(lambda m, i, o: widths.append(i[0].shape[:-1]))
    try:
        logp = agent.completion_logps(batch, chunk_size=5)
        logp.sum().backward()
    finally:
        hook.remove()
        agent.model.zero_grad()
    assert widths and all(w.numel() <= 5 for w in widths)
    assert sum(w.numel() for w in widths) == 2 * int(batch.completion_mask.sum())  # forward + recomputation


# --------------------------------------------------------------------------- runs


def test_choice_run_has_no_invalid_answers(tmp_path, device):
    result = train_llm(LLMConfig(**{
        **preset("test").to_dict(), "log_dir": str(tmp_path), "answer_format": "choice", "max_new_tokens": 3,
        "logp_chunk_size": 3, "update_epochs": 2, "device": device}))
    assert result["history"]["llm/invalid_frac"] == [0.0, 0.0]
    assert result["eval"]["eval/invalid_frac_greedy"] == 0.0 and result["eval"]["eval/invalid_frac_sampled"] == 0.0
    assert 1.0 < result["eval"]["eval/completion_len_sampled"] <= 3.0

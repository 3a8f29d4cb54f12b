# Two entry points for a fresh machine (see README):
#   make train  set up .venv and run a short GRPO training (TensorBoard logs in runs/quick-<time>)
#   make test   set up .venv, fetch the real model of the LLM tests (make model) and run the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export SDL_VIDEODRIVER ?= dummy
export PYGAME_HIDE_SUPPORT_PROMPT := 1
# the real model of tests/test_llm_real.py (SmolLM2-135M-Instruct, ~650 MB); CI keeps it in a cache folder
MODEL_DIR ?= models/smollm2-135m-instruct
export MARL_GRPO_SMOLLM2 := $(abspath $(MODEL_DIR))

.PHONY: setup train demo model test test-image bench docs clean

setup: $(STAMP)

# torch is pinned (constraints.txt) so pip takes the local CPU build instead of CUDA wheels.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt torch==2.13.0
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev,video,llm,trl]"
	# MPE2 (the PettingZoo adapter's tests): its pygame-ce would overwrite pygame's files, so without its dependencies
	$(BIN)/pip install --quiet -c constraints.txt --no-deps "mpe2>=1.1"
	touch $(STAMP)

train: $(STAMP)
	$(BIN)/marl-grpo train --preset quick --name quick-$$(date +%Y%m%d-%H%M%S)

demo: $(STAMP)
	$(BIN)/marl-grpo demo --out runs/demo/match.gif

# downloads and converts once; a complete folder is kept, so a second run only checks it
model: $(STAMP)
	$(BIN)/marl-grpo fetch-model smollm2-135m-instruct --out $(MODEL_DIR)

test: $(STAMP) model
	$(BIN)/python -m pytest -q -n 2

# The GPU machine's image on the CPU: Python 3.12 with its torch 2.11 and transformers 5.17
# (scripts/gpu_image.txt; torch from the registry is its CUDA build, ~5 GB installed), our package and
# what the image lacks from .whl/ (scripts/gpu_wheels.sh), then scripts/gpu_check.sh's steps on the CPU.
PYTHON312 ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python) python3.12)
STAMP312 := .venv312/.installed-stamp
# a subset (the whole suite runs in `make test`, on torch 2.13): the policy, env, learners and LLM on
# torch 2.11; the steps after the tests run the CLI end to end. IMAGE_TESTS="-n 2 tests/" for all of it.
IMAGE_TESTS ?= -n 2 tests/test_policy.py tests/test_vector.py tests/test_grpo.py tests/test_ppo.py tests/test_llm.py

$(STAMP312): scripts/gpu_image.txt
	$(PYTHON312) -m venv .venv312
	.venv312/bin/pip install --quiet -r scripts/gpu_image.txt
	touch $(STAMP312)

test-image: $(STAMP) $(STAMP312) model
	PY=$(BIN)/python bash scripts/gpu_wheels.sh
	GPU_CHECK_DEVICE=cpu GPU_CHECK_PYTEST="$(IMAGE_TESTS)" PY=.venv312/bin/python bash scripts/gpu_check.sh

bench: $(STAMP)
	$(BIN)/pip install --quiet -c constraints.txt -e ".[bench]"
	$(BIN)/marl-grpo bench env

# the documentation site (mkdocs.yml, docs/) into site/; --strict fails on a broken link, anchor or API reference
docs: $(STAMP)
	$(BIN)/pip install --quiet -c constraints.txt -e ".[docs]"
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) runs build site *.egg-info

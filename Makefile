# Two entry points for a fresh machine (see README):
#   make train  set up .venv and run a short GRPO training (TensorBoard logs in runs/quick-<time>)
#   make test   set up .venv and run the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export SDL_VIDEODRIVER ?= dummy
export PYGAME_HIDE_SUPPORT_PROMPT := 1

.PHONY: setup train demo test bench clean

setup: $(STAMP)

# torch is pinned (constraints.txt) so pip takes the local CPU build instead of CUDA wheels.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt torch==2.13.0
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev,video,llm,trl]"
	touch $(STAMP)

train: $(STAMP)
	$(BIN)/marl-grpo train --preset quick --name quick-$$(date +%Y%m%d-%H%M%S)

demo: $(STAMP)
	$(BIN)/marl-grpo demo --out runs/demo/match.gif

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2

bench: $(STAMP)
	$(BIN)/pip install --quiet -c constraints.txt -e ".[bench]"
	# mpe2 requires pygame-ce, which would overwrite pygame's files: take it without its dependencies
	$(BIN)/pip install --quiet -c constraints.txt --no-deps "mpe2>=1.0"
	$(BIN)/marl-grpo bench env

clean:
	rm -rf $(VENV) runs build *.egg-info

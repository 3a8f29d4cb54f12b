"""MkDocs hook: lets mkdocstrings read `marl_grpo.envs` and `marl_grpo.agents` from source.

The installed package maps `marl_grpo.envs` to the top-level folder `envs/` (setuptools
`package-dir`), and `marl_grpo.agents` to `agents/`. griffe, which mkdocstrings uses to read the
source without importing it, looks for a submodule inside its parent's folder, so it finds
`marl_grpo.losses` but not `marl_grpo.envs`. Before the build, this hook lays out the installed
tree as symbolic links under `build/docs-api/marl_grpo/` (git-ignored), and `mkdocs.yml` points
mkdocstrings there.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from mkdocs.plugins import event_priority

# the same mapping as [tool.setuptools] package-dir in pyproject.toml
PACKAGE_DIRS = {"envs": "envs", "agents": "agents", "assets": "assets"}
SHIM = Path("build/docs-api")


# before mkdocstrings reads its `paths` (a hook's events run after the plugins' by default)
@event_priority(100)
def on_config(config):
    root = Path(config.config_file_path).resolve().parent
    shim = root / SHIM / "marl_grpo"
    if shim.exists() or shim.is_symlink():
        shutil.rmtree(shim)
    shim.mkdir(parents=True)
    for entry in (root / "marl_grpo").iterdir():
        if entry.name != "__pycache__":
            (shim / entry.name).symlink_to(entry)
    for name, folder in PACKAGE_DIRS.items():
        (shim / name).symlink_to(root / folder)
    return config

#!/usr/bin/env bash
# Fill `.whl/` (git-ignored) with what the GPU machine's image lacks, before any device time is spent:
# our own wheel, and every runtime dependency of it, of its `llm` extra and of the test extras (`dev`,
# `trl`) that the image does not hold, with their own missing dependencies: CPython 3.12 wheels for
# manylinux x86-64, one version of each. Also, when `marl-grpo fetch-model smollm2-135m-instruct` has
# written models/smollm2-135m-instruct/ (or $MARL_GRPO_SMOLLM2), its config and tokenizer files (not the weights) go to
# .whl/smollm2-135m-instruct-config/ for gpu_check.sh's SmolLM2 step.
#
#     bash scripts/gpu_wheels.sh          # then name `.whl` in the device call's carry; see gpu_check.sh
#
# The image's packages are listed below (IMAGE, from the device's KINDS.md): those are never carried,
# so the GPU runs on its own torch 2.11, transformers 5.17, numpy, ... Versions: the one installed in
# PY's environment (default: the project's .venv, what `make test` checks) when it has a CPython 3.12
# wheel, else the newest that pip finds.
# Prints the size of `.whl/` and of the working tree that travels with it; fails above 64 MiB together.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
WHL=.whl
LIMIT_MIB=64

rm -rf "$WHL"
mkdir -p "$WHL"
echo "our wheel:"
"$PY" -m pip wheel -q --no-deps -w "$WHL" . 2>&1 | grep -v "^WARNING: Location" || true
ls "$WHL"/marl_grpo-*.whl

# The image's Python packages (KINDS.md, "Python packages already there"), names normalised.
IMAGE="absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build
certifi charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core
cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock
flatbuffers flax fonttools formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx
huggingface-hub humanize hypothesis idna imageio iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin
jaxlib jaxtyping jinja2 joblib kiwisolver lazy-loader lightning lightning-utilities linear-operator lineax
llvmlite lxml markdown markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack
multidict multipledispatch mypy-extensions nanobind narwhals networkx ninja numba numba-cuda numpy numpyro
nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime nvidia-cudnn-cu13 nvidia-cufft
nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13 nvidia-ml-py
nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir onnxruntime onnxscript
opencv-python-headless optax opt-einsum opt-einsum-fx optimistix orbax-checkpoint packaging pandas pathspec
patsy peft pillow pip pluggy portalocker prometheus-client propcache protobuf psutil pyarrow pybind11
py-cpuinfo pygments pyparsing pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock
pytest-timeout pytest-xdist python-dateutil pytorch-lightning pyyaml regex requests rich sacrebleu safetensors
scikit-build-core scikit-image scikit-learn scipy seaborn sentencepiece sentence-transformers setuptools
shellingham simplejson six sortedcontainers statsmodels sympy tabulate tensorboard tensorboard-data-server
tensorstore threadpoolctl tifffile tiktoken timm tokenizers toolz torch torchaudio torchdiffeq torch-geometric
torchmetrics torchvision tqdm transformers treescope triton typer typing-extensions typing-inspect urllib3
uvloop wadler-lindig werkzeug wheel wrapt xarray xxhash yarl zipp"

# pip matches each manylinux tag exactly: name every glibc the image (Ubuntu 24.04, glibc 2.39) runs
PLATFORMS="--platform manylinux1_x86_64 --platform manylinux2010_x86_64 --platform manylinux2014_x86_64"
for n in $(seq 5 39); do PLATFORMS="$PLATFORMS --platform manylinux_2_${n}_x86_64"; done

echo "the dependencies the image lacks:"
IMAGE="$IMAGE" PLATFORMS="$PLATFORMS" WHL="$WHL" "$PY" - <<'PY'
import glob, os, subprocess, sys, zipfile
from importlib import metadata
try:
    from packaging.markers import default_environment
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
except ImportError:  # a bare interpreter: pip's own copy
    from pip._vendor.packaging.markers import default_environment
    from pip._vendor.packaging.requirements import Requirement
    from pip._vendor.packaging.utils import canonicalize_name

EXTRAS = ("llm", "dev", "trl")  # the LLM mode, and what the test suite imports
image = {canonicalize_name(n) for n in os.environ["IMAGE"].split()}
whl_dir = os.environ["WHL"]
# the markers of the image: CPython 3.12 on Linux x86-64
target = default_environment() | {"python_version": "3.12", "python_full_version": "3.12.3",
                                  "implementation_name": "cpython", "platform_python_implementation": "CPython",
                                  "sys_platform": "linux", "platform_system": "Linux", "os_name": "posix",
                                  "platform_machine": "x86_64"}


def requires(wheel: str, extras: tuple[str, ...]) -> list[Requirement]:
    with zipfile.ZipFile(wheel) as z:
        meta = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    reqs = [Requirement(line.split(":", 1)[1].strip()) for line in meta.splitlines()
            if line.startswith("Requires-Dist:")]
    return [r for r in reqs if r.marker is None
            or any(r.marker.evaluate(target | {"extra": e}) for e in ("", *extras))]


def wheel_of(name: str) -> str:
    found = [w for w in glob.glob(os.path.join(whl_dir, "*.whl"))
             if canonicalize_name(os.path.basename(w).split("-")[0]) == name]
    if len(found) != 1:
        sys.exit(f"gpu_wheels: expected one wheel of {name} in {whl_dir}, found {found}")
    return found[0]


queue = [(r, ()) for r in requires(glob.glob(os.path.join(whl_dir, "marl_grpo-*.whl"))[0], EXTRAS)]
done: set[str] = set()
while queue:
    req, _ = queue.pop(0)
    name = canonicalize_name(req.name)
    if name in image or name in done:
        continue
    done.add(name)
    specs = [f"{name}{req.specifier}"]
    try:  # first the version this interpreter's environment runs (the project's .venv: what `make test` checks)
        specs.insert(0, f"{name}=={metadata.version(name)}")
    except metadata.PackageNotFoundError:
        pass
    for spec in specs:  # an installed version may have no CPython 3.12 wheel: then the newest that fits
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version",
               "3.12", "--implementation", "cp", *os.environ["PLATFORMS"].split(), "-d", whl_dir, spec]
        done_cmd = subprocess.run(cmd, stderr=subprocess.PIPE, text=True)
        if not done_cmd.returncode:
            break
    if done_cmd.returncode:  # no wheel on the index (vmas, gym ship sdists only): build one, if it is pure Python
        built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", whl_dir, specs[-1]],
                               stderr=subprocess.PIPE, text=True)
        pure = built.returncode == 0 and glob.glob(os.path.join(whl_dir, f"{name.replace('-', '_')}-*-none-any.whl"))
        if not pure:
            sys.exit(f"gpu_wheels: pip download {spec} failed, and no pure-Python wheel could be built:\n" + "\n".join(
                line for line in (done_cmd.stderr + built.stderr).splitlines()
                if not line.startswith("WARNING: Location")))
    wheel = wheel_of(name)
    print(f"  {os.path.basename(wheel)}  ({os.path.getsize(wheel) / 2**20:.1f} MiB; for {req})")
    queue += [(r, ()) for r in requires(wheel, tuple(req.extras))]
PY

MODEL=${MARL_GRPO_SMOLLM2:-models/smollm2-135m-instruct}  # the Makefile's MODEL_DIR
if [ -d "$MODEL" ]; then
    mkdir -p "$WHL/smollm2-135m-instruct-config"
    # config and tokenizer only: the weights (~540 MB) cannot travel; gpu_check.sh builds random ones
    find "$MODEL" -maxdepth 1 -type f ! -name '*.safetensors' ! -name '*.bin' ! -name '*.gguf' ! -name '*.pt' \
        -exec cp {} "$WHL/smollm2-135m-instruct-config/" \;
    echo "SmolLM2 config and tokenizer: $(ls "$WHL/smollm2-135m-instruct-config" | tr '\n' ' ')"
else
    echo "no $MODEL (marl-grpo fetch-model smollm2-135m-instruct): gpu_check.sh will skip its SmolLM2 step"
fi

whl_bytes=$(du -scb "$WHL" | tail -1 | cut -f1)
tree_bytes=$(git ls-files -z --cached --others --exclude-standard | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
echo "size: .whl/ $(mib "$whl_bytes") ($(ls "$WHL"/*.whl | wc -l) wheels) + working tree $(mib "$tree_bytes") = $(mib $((whl_bytes + tree_bytes))) of the ${LIMIT_MIB} MiB that travel"
if [ $((whl_bytes + tree_bytes)) -gt $((LIMIT_MIB * 1048576)) ]; then
    echo "gpu_wheels: over the ${LIMIT_MIB} MiB limit of the device call" >&2
    exit 1
fi

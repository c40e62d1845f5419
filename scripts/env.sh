# Sourced by scripts/demo.sh and scripts/test.sh: make (once) and activate .venv.
# $1 = "dev" also installs the test oracles (torch CPU wheel first, then the dev extra).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
. .venv/bin/activate
stamp=".venv/.jaxdiff-installed-${1:-core}"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  python -m pip install -q --upgrade pip
  if [ "${1:-core}" = "dev" ]; then
    # torch first, pinned: the CPU wheel on disk; an open range would pull a CUDA build.
    python -m pip install -q torch==2.13.0
    python -m pip install -q -e ".[dev]"
    # torchcfm is the flow-matching oracle; its declared torchdyn / torchdiffeq / pandas /
    # absl are not used by the classes the tests call, so it comes without them.
    python -m pip install -q --no-deps torchcfm==1.0.7
  else
    python -m pip install -q -e .
  fi
  touch "$stamp"
fi

#!/usr/bin/env bash
# Builds a Python environment like one of Colab's runtime versions: its Python (MINOR, such as 3.13) where this
# machine has one, else FALLBACK_PYTHON, then `pip install PIP_ARGS...` (its package versions). PyPI's torch is a CUDA
# build: about 4 GB of wheels downloaded and 5.5-8 GB installed. The wheels are not kept in pip's cache, and the
# build stops at once with what to do when the disk holding ENV_DIR has less than MIN_FREE_GB (default 13) free.
# Usage: [MIN_FREE_GB=N] tools/colab_env.sh ENV_DIR MINOR FALLBACK_PYTHON PIP_ARGS...
set -euo pipefail
env_dir=$1 minor=$2 python=$3
shift 3
for candidate in "python$minor" "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$minor".*/bin/python"$minor" /usr/bin/python"$minor"; do
  if "$candidate" -c "import sys; assert sys.version_info[:2] == tuple(map(int, '$minor'.split('.')))" >/dev/null 2>&1; then
    python=$candidate
    break
  fi
done
rm -rf "$env_dir"
parent=$(dirname "$env_dir")
mkdir -p "$parent"
free_gb=$(df --output=avail -B1G "$parent" | tail -1 | tr -d ' ')
if (( free_gb < ${MIN_FREE_GB:-13} )); then
  echo "colab_env.sh: building $env_dir needs about ${MIN_FREE_GB:-13} GB free on the disk holding $parent, which has $free_gb GB: free some space (pip cache purge, old runs/) and run make again." >&2
  exit 1
fi
"$python" -m venv "$env_dir"
"$env_dir/bin/python" -m pip install -q --no-cache-dir "$@"
echo "colab_env.sh: $("$env_dir/bin/python" --version) with $* in $env_dir"

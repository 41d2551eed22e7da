#!/usr/bin/env bash
# Builds a Python environment like one of Colab's runtime versions: its Python (MINOR, such as 3.13) where this
# machine has one, else FALLBACK_PYTHON, then `pip install PIP_ARGS...` (its package versions).
# Usage: tools/colab_env.sh ENV_DIR MINOR FALLBACK_PYTHON PIP_ARGS...
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
"$python" -m venv "$env_dir"
"$env_dir/bin/python" -m pip install -q "$@"
echo "colab_env.sh: $("$env_dir/bin/python" --version) with $* in $env_dir"

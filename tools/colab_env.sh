#!/usr/bin/env bash
# Builds the Colab journey's Python environment (tests/colab_sim.py): Colab's Python, 3.13, where this machine has
# one, else FALLBACK_PYTHON, with the package versions of Colab's runtime listed in VERSIONS.
# Usage: tools/colab_env.sh ENV_DIR FALLBACK_PYTHON VERSIONS
set -euo pipefail
env_dir=$1 fallback=$2 versions=$3
python=$fallback
for candidate in python3.13 "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.13*/bin/python3.13 /usr/bin/python3.13; do
  if "$candidate" -c "import sys; assert sys.version_info[:2] == (3, 13)" >/dev/null 2>&1; then
    python=$candidate
    break
  fi
done
rm -rf "$env_dir"
"$python" -m venv "$env_dir"
"$env_dir/bin/python" -m pip install -q -r "$versions"
echo "colab_env.sh: $("$env_dir/bin/python" --version) with Colab's packages in $env_dir"

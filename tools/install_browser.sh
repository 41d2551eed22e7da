#!/usr/bin/env bash
# Installs what tests/test_browser.py needs beyond the test extras (which bring Voilà and Playwright):
# Debian's Chromium, through apt as root. For local machines and CI only; Colab users never need it.
# Idempotent and quiet: apt is skipped when /usr/bin/chromium exists.
# Usage: tools/install_browser.sh [PYTHON]   (default .venv/bin/python)
set -euo pipefail

PYTHON="${1:-.venv/bin/python}"
if [ ! -x /usr/bin/chromium ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "install_browser.sh: /usr/bin/chromium is missing and installing it needs root (apt-get)" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # Playwright drives the browser over its own pipe, so chromium-driver (chromedriver) is not needed.
    apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
fi

"$PYTHON" - <<'PY'
import playwright
import voila

print(f"install_browser.sh: chromium at /usr/bin/chromium, voila {voila.__version__}, playwright ready")
PY

#!/usr/bin/env bash
# The study page's browser test drives Debian's chromium through chromedriver (a browser download
# from anywhere else fails on these machines). Installs both with apt-get when missing; idempotent.
set -euo pipefail
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
    exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
    apt=(apt-get)
elif command -v sudo >/dev/null; then
    apt=(sudo apt-get)
else
    echo "tools/ensure_browser.sh: chromium and chromium-driver are needed by tests/test_study_page_browser.py;" \
         "install them as root: apt-get install chromium chromium-driver" >&2
    exit 1
fi
echo "tools/ensure_browser.sh: installing chromium and chromium-driver (Debian packages)" >&2
"${apt[@]}" update -qq
DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y -qq chromium chromium-driver >/dev/null

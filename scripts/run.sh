#!/usr/bin/env bash
# Install the project into .venv (created when missing) and start the bot: `paperbot run`.
# Configuration comes from the environment or ./.env (see .env.example). Extra arguments replace `run`.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e .
if [ "$#" -eq 0 ]; then set -- run; fi
exec .venv/bin/paperbot "$@"

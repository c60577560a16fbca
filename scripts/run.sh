#!/usr/bin/env bash
# Install the project into .venv (created when missing; reinstalled only when pyproject.toml changed)
# and start the bot: `paperbot run`.
# Configuration comes from the environment or ./.env (see .env.example). Extra arguments replace `run`.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="" source scripts/_venv.sh
if [ "$#" -eq 0 ]; then set -- run; fi
exec .venv/bin/paperbot "$@"

#!/usr/bin/env bash
# Install the project with its test extras into .venv (created when missing; reinstalled only when
# pyproject.toml changed) and run the test suite. Extra arguments go to pytest. Offline except for
# the package installs.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="test" source scripts/_venv.sh
exec .venv/bin/python -m pytest "$@"

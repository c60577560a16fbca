# Sourced by run.sh and test.sh: make .venv hold the project with the extras in $EXTRAS.
#
# pip runs only when .venv is missing or pyproject.toml changed since the last install (a stamp
# in .venv holds the file's hash per extras set), so a second start prints only the bot's output.
PYTHON="${PYTHON:-python3}"
stamp=".venv/.installed${EXTRAS:+-$EXTRAS}"
want="$("$PYTHON" -c 'import hashlib,sys; print(hashlib.sha256(open("pyproject.toml","rb").read()).hexdigest())')"
if [ ! -x .venv/bin/python ] || [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    # pip is quiet; one line says why the start takes a minute (nothing on the next start).
    echo "Installing paperbot${EXTRAS:+[$EXTRAS]} into .venv (first start, or pyproject.toml changed)..." >&2
    [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".${EXTRAS:+[$EXTRAS]}"
    echo "$want" > "$stamp"
fi

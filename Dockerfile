# syntax=docker/dockerfile:1
# paperbot: `docker build -t paperbot .` then `docker run --env-file .env -v paperbot-data:/data paperbot`
# (or `docker compose up`, see compose.yaml). The default command is `paperbot run`; any other
# paperbot command replaces it: `docker run --rm --no-healthcheck ... paperbot push`.

# --- build: install the project and its dependencies into a venv, as the README does (`pip install .`)
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/paperbot
ENV PATH=/opt/paperbot/bin:$PATH
WORKDIR /src
# The dependencies change less often than the code; pyproject.toml alone cannot be installed
# without the package, so both come in one layer (a small one).
COPY pyproject.toml README.md ./
COPY bot ./bot
RUN pip install .

# --- runtime: the venv only, no build tools, a non-root user, data on a volume
FROM python:3.11-slim
ENV PATH=/opt/paperbot/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PAPERBOT_DB=/data/paperbot.db \
    PAPERBOT_CACHE_DIR=/data/cache \
    PAPERBOT_METRICS_LISTEN=0.0.0.0:9464
RUN groupadd --system --gid 10001 paperbot \
    && useradd --system --uid 10001 --gid paperbot --home-dir /data --no-create-home \
       --shell /usr/sbin/nologin paperbot \
    && mkdir -p /data/cache \
    && chown -R paperbot:paperbot /data
COPY --from=build /opt/paperbot /opt/paperbot
USER paperbot
# Relative paths from a copied .env (data/paperbot.db) land in the volume too.
WORKDIR /data
VOLUME ["/data"]
# 8443: Telegram webhook (TELEGRAM_WEBHOOK_LISTEN), 9464: /metrics and /healthz (PAPERBOT_METRICS_LISTEN)
EXPOSE 8443 9464
# No curl in the slim image: a few lines of Python ask /healthz (database answers, loops alive).
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["python", "-m", "bot.healthcheck"]
ENTRYPOINT ["paperbot"]
CMD ["run"]

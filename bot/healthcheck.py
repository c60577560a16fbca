"""`python -m bot.healthcheck`: exit 0 when this process's /healthz answers 200, else 1.

For container HEALTHCHECKs (the slim image has no curl). It asks PAPERBOT_METRICS_LISTEN on this
host: a wildcard listen address (0.0.0.0, ::) is reached over loopback. With the variable unset
there is nothing to ask, and it says so and exits 0.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request

from bot.config import ConfigError, load_settings

TIMEOUT = 4.0  # seconds; below the Dockerfile's HEALTHCHECK --timeout


def healthz_url(host: str, port: int) -> str:
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    return f"http://[{host}]:{port}/healthz" if ":" in host else f"http://{host}:{port}/healthz"


def main() -> int:
    try:
        address = load_settings().metrics_address
    except ConfigError as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1
    if address is None:
        print("PAPERBOT_METRICS_LISTEN is unset: no /healthz to check")
        return 0
    url = healthz_url(*address)
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as resp:  # noqa: S310 - our own loopback URL
            print(f"healthy: {url} answered {resp.status}")
            return 0
    except urllib.error.HTTPError as exc:
        print(f"unhealthy: {url} answered {exc.code}: {exc.read().decode(errors='replace')[:300]}", file=sys.stderr)
    except OSError as exc:
        print(f"unhealthy: {url}: {exc}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())

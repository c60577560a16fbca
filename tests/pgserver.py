"""A throwaway PostgreSQL cluster for the tests: initdb in a temp dir, trust auth, a free loopback port.

PostgreSQL refuses to run as root, and CI runs as root: then the server runs as the `postgres`
system user (which the distribution's package creates) through `runuser`.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

INSTALL_HINT = (
    "PostgreSQL server binaries not found (looked in /usr/lib/postgresql/*/bin and PATH): "
    "install them with `apt-get install postgresql-15` (or `postgresql`) to run the PostgreSQL tests"
)


def find_bin_dir() -> Path | None:
    """The newest /usr/lib/postgresql/<N>/bin with initdb and pg_ctl, else the PATH's."""
    found = sorted(
        (Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/pg_ctl")),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    for bin_dir in reversed(found):
        if (bin_dir / "initdb").exists():
            return bin_dir
    pg_ctl = shutil.which("pg_ctl")
    return Path(pg_ctl).parent if pg_ctl and (Path(pg_ctl).parent / "initdb").exists() else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PgCluster:
    bin_dir: Path
    root: Path
    port: int
    user: str | None  # the system user the server runs as (None: ourselves)
    databases: int = 0

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = list(args)
        if self.user is not None:
            if shutil.which("runuser") or Path("/usr/sbin/runuser").exists():
                cmd = [shutil.which("runuser") or "/usr/sbin/runuser", "-u", self.user, "--", *cmd]
            else:  # util-linux without runuser: setpriv does the same
                cmd = ["setpriv", f"--reuid={self.user}", f"--regid={self.user}", "--init-groups", *cmd]
        # In the cluster's directory: the server's user may not enter the caller's.
        return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=60, cwd=self.root)

    @classmethod
    def start(cls) -> PgCluster:
        """Raises RuntimeError with the reason when no cluster can be started."""
        bin_dir = find_bin_dir()
        if bin_dir is None:
            raise RuntimeError(INSTALL_HINT)
        user = None
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                raise RuntimeError(
                    "running as root and there is no `postgres` system user for the test server "
                    "(`apt-get install postgresql-15` creates it)"
                ) from None
            user = "postgres"
        # Not under pytest's tmp dir: it is private to root, and the server's user must enter it.
        root = Path(tempfile.mkdtemp(prefix="paperbot-pg-"))
        os.chmod(root, 0o755)
        if user is not None:
            shutil.chown(root, user)
        cluster = cls(bin_dir, root, _free_port(), user)
        try:
            cluster._run(
                str(bin_dir / "initdb"), "-D", str(root / "data"), "-A", "trust", "-U", "postgres",
                "-E", "UTF8", "--no-sync", "--no-instructions",
            )
            options = (
                f"-p {cluster.port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
            )
            cluster._run(
                str(bin_dir / "pg_ctl"), "-D", str(root / "data"), "-o", options, "-l", str(root / "log"),
                "-w", "-t", "30", "start",
            )
        except subprocess.CalledProcessError as exc:
            log = (root / "log").read_text(errors="replace")[-2000:] if (root / "log").exists() else ""
            shutil.rmtree(root, ignore_errors=True)
            raise RuntimeError(f"could not start PostgreSQL: {exc.stderr.strip()} {log}") from None
        return cluster

    def url(self, database: str = "postgres", password: str | None = None) -> str:
        auth = "postgres" + (f":{password}" if password else "")
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{database}"

    def new_database(self, icu_locale: str | None = None) -> str:
        """A fresh, empty database (with `icu_locale`, e.g. 'en-US', as its default collation);
        returns its URL."""
        self.databases += 1
        name = f"test_{self.databases}"
        sql = f"CREATE DATABASE {name}"
        if icu_locale:
            sql += f" TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE '{icu_locale}'"
        self._run(
            str(self.bin_dir / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
            "-d", "postgres", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql,
        )
        return self.url(name)

    def stop(self) -> None:
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.root / "data"), "-m", "immediate", "stop", check=False)
        shutil.rmtree(self.root, ignore_errors=True)

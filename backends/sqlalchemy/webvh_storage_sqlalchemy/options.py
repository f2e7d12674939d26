"""The SQL backend's declared configuration: its URL variables and options.

Imported at plugin discovery (without SQLAlchemy) so `storage-core backends --json`
can list them; the dialects read the parsed values with `settings.option(name)`.
"""

from __future__ import annotations

from storage_core.config import DEFAULT_DATABASE_URL, database_url_from_env
from storage_core.options import BackendOptions, Option

SYNCHRONOUS_LEVELS = ("OFF", "NORMAL", "FULL", "EXTRA")
DEFAULT_BUSY_TIMEOUT_MS = 30_000
DEFAULT_WAL_AUTOCHECKPOINT = 1000  # pages, SQLite's own default

SQL_OPTIONS = BackendOptions(
    url_env="DATABASE_URL",
    url_default=DEFAULT_DATABASE_URL,
    url_help="DATABASE_URL, else a PostgreSQL URL built from POSTGRES_*, else the default",
    url_from_env=database_url_from_env,
    options=(
        Option("pool_size", int, 10, "STORAGE_POOL_SIZE", help="connections kept in the pool"),
        Option(
            "max_overflow", int, 20, "STORAGE_MAX_OVERFLOW", help="connections beyond pool_size"
        ),
        Option("pool_timeout", float, 30.0, "STORAGE_POOL_TIMEOUT", help="seconds to wait for one"),
        Option(
            "connect_timeout",
            float,
            10.0,
            "STORAGE_CONNECT_TIMEOUT",
            help="seconds to wait for the PostgreSQL server",
        ),
        Option(
            "echo",
            str,
            "false",
            "STORAGE_SQL_ECHO",
            help="log SQL through SQLAlchemy's logger: true, false or debug",
        ),
        Option(
            "sqlite_synchronous",
            str,
            "FULL",
            "STORAGE_SQLITE_SYNCHRONOUS",
            choices=SYNCHRONOUS_LEVELS,
            help="SQLite PRAGMA synchronous",
        ),
        Option(
            "sqlite_busy_timeout_ms",
            int,
            DEFAULT_BUSY_TIMEOUT_MS,
            "STORAGE_SQLITE_BUSY_TIMEOUT_MS",
            help="how long SQLite waits for a lock",
        ),
        Option(
            "sqlite_wal_autocheckpoint",
            int,
            DEFAULT_WAL_AUTOCHECKPOINT,
            "STORAGE_SQLITE_WAL_AUTOCHECKPOINT",
            help="WAL pages between automatic checkpoints (0: never)",
        ),
        Option(
            "prepared_statements",
            bool,
            True,
            "STORAGE_PREPARED_STATEMENTS",
            help="async face on PostgreSQL: keep named prepared statements per connection; "
            "false behind PgBouncer in transaction pooling (before 1.21's "
            "max_prepared_statements)",
        ),
        # read replicas (used by the PostgreSQL read-replica support)
        Option(
            "read_urls",
            tuple,
            (),
            "DATABASE_READ_URLS",
            help="read-replica URLs, comma separated (passwords masked)",
        ),
        Option(
            "replica_max_lag",
            float,
            5.0,
            "STORAGE_REPLICA_MAX_LAG",
            help="seconds a replica may lag behind before reads go to the primary",
        ),
        Option(
            "replica_check_interval",
            float,
            1.0,
            "STORAGE_REPLICA_CHECK_INTERVAL",
            help="seconds between checks of a replica's lag",
        ),
        # the parts of a PostgreSQL URL, read when DATABASE_URL is unset
        Option("postgres_user", env="POSTGRES_USER", env_only=True),
        Option("postgres_password", env="POSTGRES_PASSWORD", env_only=True, secret=True),
        Option("postgres_server_name", env="POSTGRES_SERVER_NAME", env_only=True),
        Option("postgres_server_port", env="POSTGRES_SERVER_PORT", env_only=True),
        Option("postgres_db", env="POSTGRES_DB", env_only=True),
    ),
)

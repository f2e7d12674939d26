"""Migrate a did:webvh server's Askar store into the SQL store: see docs/migration.md.

python tools/migrate_askar.py --askar sqlite://app.db --to postgresql+psycopg2://...
(the same command as `storage-core migrate-askar`; needs the project installed: `uv sync`)
"""

from __future__ import annotations

import sys

from webvh_storage_migrate.cli import main

if __name__ == "__main__":
    sys.exit(main())

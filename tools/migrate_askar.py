"""Migrate a did:webvh server's Askar store into the SQL store: see docs/migration.md.

python tools/migrate_askar.py --askar sqlite://app.db --to postgresql+psycopg2://...
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from webvh_storage_migrate.cli import main

if __name__ == "__main__":
    sys.exit(main())

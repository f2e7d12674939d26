"""Provision the configured store: `python tools/init_db.py [--recreate --yes]`.

The same as `storage-core init-db`; kept as a script for deployments that call it.
"""

import sys

from storage_core.cli import main

if __name__ == "__main__":
    sys.exit(main(["init-db", *sys.argv[1:]]))

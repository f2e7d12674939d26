"""Copy a did:webvh server's Askar store into a webvh-storage backend (and back).

Read-only on the source. Entry points: `cli.main` (also `storage-core migrate-askar` and
`tools/migrate_askar.py`). Layout and decisions: docs/migration.md.
"""

"""The SQLAlchemy backend of webvh-storage (SQLite, PostgreSQL), a plugin like any other."""

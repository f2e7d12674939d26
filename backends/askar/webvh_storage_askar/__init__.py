"""The Askar backend of webvh-storage (aries-askar on SQLite or PostgreSQL), a plugin."""

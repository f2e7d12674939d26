"""An in-memory storage backend for webvh-storage."""

"""Tests behind optional capabilities: they skip, naming the capability, when it is absent.

A backend without SQL sessions must still refuse SQL access with
UnsupportedOperationError rather than failing in some other way.
"""

from __future__ import annotations

from typing import Any

import pytest

from storage_core.errors import UnsupportedOperationError
from storage_core.interface import Capability
from storage_core.kinds import KINDS
from storage_core.manager import StorageManager, open_storage
from storage_core.testing.capabilities import requires_capability, skip_if_capability
from storage_core.testing.samples import present, sample_record


class TestCapabilities:
    @requires_capability(Capability.SQL_SESSIONS)
    def test_sql_engine_and_sessions_reach_the_tables(
        self, storage_manager: StorageManager
    ) -> None:
        import sqlalchemy as sa

        storage_manager.create_record(sample_record("log_entry", "visible"))
        inspector = sa.inspect(storage_manager.engine)
        for spec in KINDS.values():
            assert inspector.has_table(spec.table), spec.table
        with storage_manager.get_session() as session:
            assert session.execute(sa.text("SELECT COUNT(*) FROM log_entries")).scalar() == 1
        with storage_manager.SessionLocal() as session:
            assert session.execute(sa.text("SELECT 1")).scalar() == 1

    def test_sql_access_without_the_capability_is_unsupported(
        self, storage_manager: StorageManager
    ) -> None:
        skip_if_capability(storage_manager, Capability.SQL_SESSIONS)
        with pytest.raises(UnsupportedOperationError, match=storage_manager.backend_name):
            _ = storage_manager.engine
        with pytest.raises(UnsupportedOperationError):
            _ = storage_manager.SessionLocal
        with pytest.raises(UnsupportedOperationError):
            storage_manager.get_session()
        # The refusal leaves the store usable.
        assert storage_manager.create_record(sample_record("task", "t")).task_id == "t"

    @requires_capability(Capability.PERSISTENT)
    def test_data_survives_close_and_reopen(
        self, storage_manager: StorageManager, storage_backend_config: dict[str, Any]
    ) -> None:
        written = storage_manager.create_record(sample_record("log_entry", "durable"))
        storage_manager.create_or_update_policy("p", {"witness": True})
        storage_manager.close()
        config = storage_backend_config
        reopened = open_storage(config["backend"], config.get("url"), **config.get("options", {}))
        try:
            reopened.init_db(recreate=False)
            assert reopened.get_record("log_entry", "durable") == written
            assert present(reopened.get_policy("p")).witness is True
        finally:
            reopened.close()

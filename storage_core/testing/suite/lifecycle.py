"""Provisioning, health, info and closing: what tools and the CLI rely on."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from storage_core.errors import BackendUnavailableError
from storage_core.kinds import KINDS
from storage_core.manager import StorageManager
from storage_core.testing.capabilities import KNOWN_CAPABILITIES
from storage_core.testing.samples import sample_record


class TestLifecycle:
    def test_health_check_is_true_on_an_open_store(self, storage_manager: StorageManager) -> None:
        assert storage_manager.health_check() is True

    def test_backend_reports_its_registered_name_and_known_capabilities(
        self, storage_manager: StorageManager, storage_backend_config: dict[str, Any]
    ) -> None:
        assert storage_manager.backend_name == storage_backend_config["backend"]
        assert storage_manager.capabilities <= KNOWN_CAPABILITIES

    def test_info_counts_rows_of_every_kind(self, storage_manager: StorageManager) -> None:
        storage_manager.create_record(sample_record("task", "t1"))
        storage_manager.create_record(sample_record("task", "t2"))
        storage_manager.create_record(sample_record("policy", "p"))
        info = storage_manager.info()
        assert info["backend"] == storage_manager.backend_name
        expected = {name: 0 for name in KINDS} | {"task": 2, "policy": 1}
        assert info["rows"] == expected

    def test_provision_without_recreate_keeps_data(self, storage_manager: StorageManager) -> None:
        storage_manager.create_record(sample_record("log_entry", "kept"))
        storage_manager.init_db()
        storage_manager.init_db(recreate=False)
        assert storage_manager.get_record("log_entry", "kept") is not None

    def test_provision_with_recreate_drops_every_kind(
        self, storage_manager: StorageManager
    ) -> None:
        for kind in KINDS:
            storage_manager.create_record(sample_record(kind, "doomed"))
        storage_manager.init_db(recreate=True)
        assert {kind: storage_manager.count_records(kind) for kind in KINDS} == dict.fromkeys(
            KINDS, 0
        )
        storage_manager.create_record(sample_record("log_entry", "after"))
        assert storage_manager.count_log_entries() == 1

    def test_async_provision_works_from_an_event_loop(
        self, storage_manager: StorageManager
    ) -> None:
        async def main() -> None:
            await storage_manager.provision(recreate=True)
            # init_db must not deadlock or fail inside a running loop either.
            storage_manager.init_db()

        storage_manager.create_record(sample_record("task", "t"))
        asyncio.run(main())
        assert storage_manager.count_tasks() == 0

    def test_close_releases_the_store_and_is_idempotent(
        self, storage_manager: StorageManager
    ) -> None:
        """After close() the store is really closed: it reports unhealthy and every call
        raises BackendUnavailableError (rather than quietly reopening connections). A
        second close() is harmless."""
        storage_manager.create_record(sample_record("task", "t"))
        storage_manager.close()
        storage_manager.close()
        assert storage_manager.health_check() is False
        calls: list[Callable[[], object]] = [
            lambda: storage_manager.get_record("task", "t"),
            lambda: storage_manager.create_record(sample_record("task", "u")),
            lambda: storage_manager.list_records("task"),
        ]
        for call in calls:
            with pytest.raises(BackendUnavailableError):
                call()

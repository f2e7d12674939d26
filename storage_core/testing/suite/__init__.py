"""The conformance suite as base test classes, shipped in the wheel.

Import them into any test module of a backend's project and pytest runs them against the
`storage_manager` fixture from `storage_core.testing.plugin`::

    pytest_plugins = ["storage_core.testing.plugin"]   # in conftest.py
    from storage_core.testing.suite import *            # in test_conformance.py

Subclass a class to add backend-specific tests, or to mark one (e.g. xfail) while a
known bug is fixed. Tests needing an optional capability skip with its name.
"""

from storage_core.testing.suite.archive import (
    TestArchive,
    TestArchiveAbsent,
    TestArchivedEntryDigest,
    TestAsyncArchive,
    TestAsyncArchiveAbsent,
)
from storage_core.testing.suite.async_api import (
    TestAsyncConcurrency,
    TestAsyncCrud,
    TestAsyncErrors,
    TestAsyncQueries,
    TestAsyncStream,
)
from storage_core.testing.suite.bulk import TestBulkUpsert, TestStream
from storage_core.testing.suite.capabilities import TestCapabilities
from storage_core.testing.suite.concurrency import TestConcurrency
from storage_core.testing.suite.crud import TestCrud
from storage_core.testing.suite.declared import TestDeclaredKind
from storage_core.testing.suite.errors import (
    TestMissingAndDuplicate,
    TestOptimisticConcurrency,
    TestValidationErrors,
)
from storage_core.testing.suite.indexes import TestAtomicity, TestIndexedFieldChanges
from storage_core.testing.suite.json import TestJsonRoundTrip
from storage_core.testing.suite.lifecycle import TestLifecycle
from storage_core.testing.suite.named import TestNamedApi
from storage_core.testing.suite.ordering import TestAsyncOrderBy, TestOrderBy
from storage_core.testing.suite.queries import TestOrdering, TestQueries
from storage_core.testing.suite.stateful import TestStateful
from storage_core.testing.suite.timestamps import TestRecordVersion, TestTimestamps
from storage_core.testing.suite.transactions import (
    TestAsyncTransactions,
    TestNoTransactions,
    TestTransactions,
)

__all__ = [
    "TestArchive",
    "TestArchiveAbsent",
    "TestArchivedEntryDigest",
    "TestAsyncArchive",
    "TestAsyncArchiveAbsent",
    "TestAsyncConcurrency",
    "TestAsyncCrud",
    "TestAsyncErrors",
    "TestAsyncOrderBy",
    "TestAsyncQueries",
    "TestAsyncStream",
    "TestAsyncTransactions",
    "TestAtomicity",
    "TestBulkUpsert",
    "TestCapabilities",
    "TestConcurrency",
    "TestCrud",
    "TestDeclaredKind",
    "TestIndexedFieldChanges",
    "TestJsonRoundTrip",
    "TestLifecycle",
    "TestMissingAndDuplicate",
    "TestNamedApi",
    "TestNoTransactions",
    "TestOptimisticConcurrency",
    "TestOrderBy",
    "TestOrdering",
    "TestQueries",
    "TestRecordVersion",
    "TestStateful",
    "TestStream",
    "TestTimestamps",
    "TestTransactions",
    "TestValidationErrors",
]

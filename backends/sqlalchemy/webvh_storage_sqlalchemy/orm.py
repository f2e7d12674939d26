"""The ORM models under their stable public names, for code that uses SQLAlchemy sessions
directly, as the original manager's users do::

    from webvh_storage_sqlalchemy.orm import LogEntry

    with storage.get_session() as session:
        entries = session.query(LogEntry).filter(LogEntry.namespace == "people").all()

These names are the supported API; the `...models.*Row` names are kept as aliases of the
same classes. The column names are those of the tables in the Alembic revisions
(`resource.metadata` is `Resource.metadata_`, as `metadata` is reserved). Write through
`StorageManager` where you can: it validates input; a row added through a session is not
validated (its `record_version` starts at 1 and its `seq` is assigned by the database).
"""

from webvh_storage_sqlalchemy.models import AskarArchiveRow as AskarArchive
from webvh_storage_sqlalchemy.models import Base
from webvh_storage_sqlalchemy.models import LogEntryRow as LogEntry
from webvh_storage_sqlalchemy.models import PolicyRow as Policy
from webvh_storage_sqlalchemy.models import RegistryRow as Registry
from webvh_storage_sqlalchemy.models import ResourceRow as Resource
from webvh_storage_sqlalchemy.models import TaskRow as Task
from webvh_storage_sqlalchemy.models import TestLogEntryRow as TestLogEntry
from webvh_storage_sqlalchemy.models import TestResourceRow as TestResource
from webvh_storage_sqlalchemy.models import WhoisPresentationRow as WhoisPresentation
from webvh_storage_sqlalchemy.models import WitnessFileRow as WitnessFile

__all__ = [
    "AskarArchive",
    "Base",
    "LogEntry",
    "Policy",
    "Registry",
    "Resource",
    "Task",
    "TestLogEntry",
    "TestResource",
    "WhoisPresentation",
    "WitnessFile",
]

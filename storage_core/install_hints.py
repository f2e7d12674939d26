"""Which pip extra installs a missing optional piece, so an operator reads the one command
to run instead of `ModuleNotFoundError: No module named 'psycopg2'`.

The drivers and plugin commands below ship as extras of the `webvh-storage` distribution;
the table is the single place that knows which extra brings which module or command.
"""

from __future__ import annotations

DISTRIBUTION = "webvh-storage"
#: top-level module -> the extra that installs it
EXTRA_FOR_MODULE = {
    "psycopg2": "postgres",
    "asyncpg": "postgres",
    "aries_askar": "askar",
    "fastapi": "fastapi",
}
#: `storage-core` subcommand added by a plugin -> the extra that installs the plugin
EXTRA_FOR_COMMAND = {"migrate-askar": "askar"}


def pip_install(extra: str) -> str:
    """The command that installs `extra`, quoted for a POSIX shell."""
    return f"pip install '{DISTRIBUTION}[{extra}]'"


def missing_module_hint(module: str | None) -> str | None:
    """ "X is not installed: pip install ..." for a known optional module, else None."""
    top = (module or "").partition(".")[0]
    extra = EXTRA_FOR_MODULE.get(top)
    if extra is None:
        return None
    return f"the {top} module is not installed; install it with: {pip_install(extra)}"


def missing_command_hint(command: str) -> str | None:
    """For a known plugin command that is not installed: how to install it, else None."""
    extra = EXTRA_FOR_COMMAND.get(command)
    if extra is None:
        return None
    return f"the {command!r} command is not installed; install it with: {pip_install(extra)}"

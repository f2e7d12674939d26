"""The worked example, run the way its author runs it: its own tests, from its folder.

`uv sync` installs examples/memory_backend from its folder (a path dependency), so its
entry point is real; its tests only enable `storage_core.testing.plugin` and name the
backend, and the whole conformance suite must pass.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from importlib.metadata import distribution
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "memory_backend"


def test_example_is_installed_as_a_distribution_with_its_entry_point():
    dist = distribution("webvh-storage-memory")
    eps = [ep for ep in dist.entry_points if ep.group == "storage_core.backends"]
    assert [(ep.name, ep.value) for ep in eps] == [("memory", "webvh_storage_memory.plugin")]


def test_example_passes_the_conformance_suite_from_its_own_folder():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STORAGE_", "PYTEST_"))}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=EXAMPLE,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    summary = run.stdout.strip().splitlines()[-1]
    passed = int(re.search(r"(\d+) passed", summary).group(1))
    assert passed >= 60, summary
    assert "failed" not in summary and "error" not in summary, summary

"""`storage-core backends [--check] [--json]`: what is installed, and what is broken.

The listing shows every registered backend with its distribution, capabilities and
declared options, every plugin that failed to load and every backend name two plugins
claim. `--check` goes further: it imports each backend's factory and builds one instance
from the environment's settings (opening nothing: no store is provisioned), so a wrong
dotted path, a class missing an abstract method or an import error inside the backend
module shows here rather than on the first request. Each problem is one line naming the
distribution, the entry point and the fault; the other backends are unaffected.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from storage_core.config import Settings, mask_text
from storage_core.plugins import BackendInfo, BackendRegistry, conflict_message

#: `backends --check` exit status when any plugin or backend is broken.
EXIT_BROKEN = 1


@dataclass(frozen=True)
class CheckResult:
    name: str
    problem: str | None  # None: imported and instantiated

    @property
    def ok(self) -> bool:
        return self.problem is None


def check_backend(registry: BackendRegistry, info: BackendInfo, env: dict[str, str]) -> CheckResult:
    """Import `info`'s factory and build (then close) one instance from `env`."""
    settings = Settings.from_env(env, backend=info.name)
    try:
        settings = info.options.resolve(settings)
        backend = registry.build(info.name, settings)
        backend.close()
    except Exception as exc:
        text = mask_text(str(exc), settings.secrets)
        prefix = "" if info.name in text and info.distribution in text else f"{info.origin}: "
        return CheckResult(info.name, f"{prefix}{type(exc).__name__}: {text}")
    return CheckResult(info.name, None)


def listing(registry: BackendRegistry, checks: dict[str, CheckResult] | None) -> dict[str, Any]:
    """Everything `backends --json` prints."""
    rows: list[dict[str, Any]] = []
    for name, info in sorted(registry.backends.items()):
        installed = info.dependencies_installed
        caps = info.capabilities() if installed else None
        row: dict[str, Any] = {
            "name": name,
            "distribution": info.distribution,
            "version": info.version,
            "entry_point": info.entry_point,
            "dependencies_installed": installed,
            "capabilities": sorted(caps) if caps is not None else None,
            "install_hint": None if installed else info.install_hint,
            **info.options.describe(),
        }
        if checks is not None:
            row["problem"] = checks[name].problem
        rows.append(row)
    return {
        "backends": rows,
        "failed": {
            ep: {
                "distribution": fault.distribution,
                "entry_point": fault.entry_point,
                "module": fault.target,
                "problem": fault.problem,
            }
            for ep, fault in registry.failed.items()
        },
        "conflicts": {
            name: [
                {"distribution": b.distribution, "entry_point": b.entry_point} for b in claimants
            ]
            for name, claimants in registry.conflicts.items()
        },
    }


def problems(registry: BackendRegistry, checks: dict[str, CheckResult] | None) -> list[str]:
    """One line per fault: failed plugins, conflicting names, and failed checks."""
    lines = [f"failed plugin {ep}: {fault}" for ep, fault in registry.failed.items()]
    lines += [f"conflict: {conflict_message(n, c)}" for n, c in sorted(registry.conflicts.items())]
    for result in (checks or {}).values():
        if not result.ok:
            lines.append(f"broken backend {result.name}: {result.problem}")
    return lines


def report(
    registry: BackendRegistry, *, check: bool, as_json: bool, env: dict[str, str]
) -> tuple[str, int]:
    """The text `backends` prints and its exit status (EXIT_BROKEN if --check found a fault)."""
    checks = (
        {name: check_backend(registry, info, env) for name, info in registry.backends.items()}
        if check
        else None
    )
    faults = problems(registry, checks)
    status = EXIT_BROKEN if check and faults else 0
    if as_json:
        return json.dumps(listing(registry, checks), indent=2, default=str), status
    out = [f"{'backend':12} {'provided by':28} {'deps':5} capabilities"]
    for row in listing(registry, checks)["backends"]:
        provider = f"{row['distribution']} {row['version']}"
        deps = "yes" if row["dependencies_installed"] else "no"
        shown = ", ".join(row["capabilities"] or []) or (
            "-" if row["dependencies_installed"] else f"({row['install_hint']})"
        )
        if check:
            shown += "  [ok]" if row["problem"] is None else "  [BROKEN]"
        out.append(f"{row['name']:12} {provider:28} {deps:5} {shown}")
    out += faults
    return "\n".join(out), status

"""Bulk loading of FHIR files for ``hearth load``: JSON resources, Bundles, NDJSON, FHIR XML
(``.xml``, read by ``mappings/fhir_xml.py``) and FHIR NPM packages (an implementation guide's
``.tgz``: the StructureDefinitions, ValueSets and CodeSystems among its ``package/*.json``; the
rest of a package, examples included, is counted as skipped).

Transaction and batch Bundles go through the transaction processor; every other resource is
stored with update-as-create when it has an id (so loading twice changes nothing) and create
otherwise.

Audited like the REST API (docs/security.md): every write gets an AuditEvent in its own
transaction (create/update/transaction, the resources written), with the operator — their OS
login and host — and the ``hearth load`` command as agents; the run ends with one Import
AuditEvent holding the files and the counts.
"""

from __future__ import annotations

import tarfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from tqdm import tqdm

from fhir_server.auth.audit_events import load_event
from fhir_server.rest.context import Context
from fhir_server.rest.errors import status_of
from fhir_server.rest.interactions.search import search_bundle
from fhir_server.runtime.operator_audit import agents_of, audited
from mappings import fhir_xml
from resources import audit
from resources.errors import FhirError
from resources.storage import transaction as tx


@dataclass
class Summary:
    counts: Counter = field(default_factory=Counter)
    failed: list[tuple[str, str]] = field(default_factory=list)

    def report(self) -> str:
        lines = [
            "loaded: "
            + ", ".join(f"{k} {v}" for k, v in sorted(self.counts.items()))
            + f", failed {len(self.failed)}"
        ]
        lines += [f"  FAILED {where}: {why}" for where, why in self.failed[:50]]
        if len(self.failed) > 50:
            lines.append(f"  ... and {len(self.failed) - 50} more")
        return "\n".join(lines)


# What ``hearth load`` takes from an IG package: its conformance resources for validation.
PACKAGE_TYPES = frozenset({"StructureDefinition", "ValueSet", "CodeSystem"})
MAX_PACKAGE_MEMBER = 64 * 1024 * 1024


def _is_package(path: Path) -> bool:
    return path.name.endswith((".tgz", ".tar.gz"))


def _files(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out += sorted(
                x
                for x in p.rglob("*")
                if x.suffix in (".json", ".ndjson", ".xml") or _is_package(x)
            )
        else:
            out.append(p)
    return out


class _Skipped:
    """A package file that is not a conformance resource Hearth loads."""


class _Unreadable:
    def __init__(self, why: str) -> None:
        self.why = why


def _items(path: Path) -> Iterator[tuple[str, object]]:
    """(where, parsed JSON or _Unreadable) for a .json file, each line of an .ndjson file, a
    FHIR XML .xml file (docs/fhir-xml.md), or each ``package/*.json`` of a FHIR package."""
    if _is_package(path):
        yield from _package_items(path)
        return
    try:
        raw = path.read_bytes()
    except OSError as exc:
        yield str(path), _Unreadable(f"cannot read: {exc}")
        return
    if path.suffix == ".xml":
        try:
            yield str(path), fhir_xml.from_xml(raw)
        except fhir_xml.XmlError as exc:
            yield str(path), _Unreadable(f"not FHIR XML: {exc}")
        return
    lines = raw.splitlines() if path.suffix == ".ndjson" else [raw]
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{n}" if path.suffix == ".ndjson" else str(path)
        try:
            yield where, orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            yield where, _Unreadable(f"not JSON: {exc}")


def _package_items(path: Path) -> Iterator[tuple[str, object]]:
    """The StructureDefinitions, ValueSets and CodeSystems of a FHIR NPM package (a gzipped tar
    whose files are under ``package/``; FHIR packages spec), read without extracting anything to
    disk; its other files as _Skipped."""
    try:
        archive = tarfile.open(path, "r:gz")
    except (OSError, tarfile.TarError) as exc:
        yield str(path), _Unreadable(f"not a FHIR package (gzipped tar): {exc}")
        return
    with archive:
        try:
            members = archive.getmembers()
        except (OSError, tarfile.TarError, EOFError) as exc:
            yield str(path), _Unreadable(f"not a FHIR package (gzipped tar): {exc}")
            return
        for member in members:
            name = member.name
            where = f"{path}:{name}"
            top = name.split("/", 1)
            if not member.isfile() or not name.endswith(".json") or len(top) < 2:
                continue
            if top[0] == "package" and top[1] in ("package.json", ".index.json"):
                continue  # the package's manifest and index
            if top[0] != "package" or "/" in top[1]:
                yield where, _Skipped()  # examples, other and openapi folders
                continue
            if member.size > MAX_PACKAGE_MEMBER:
                yield where, _Unreadable(f"larger than {MAX_PACKAGE_MEMBER} bytes")
                continue
            fh = archive.extractfile(member)
            if fh is None:
                continue
            try:
                item = orjson.loads(fh.read())
            except (orjson.JSONDecodeError, OSError, tarfile.TarError, EOFError) as exc:
                yield where, _Unreadable(f"not JSON: {exc}")
                continue
            if isinstance(item, dict) and item.get("resourceType") in PACKAGE_TYPES:
                yield where, item
            else:
                yield where, _Skipped()


def _store(ctx: Context, resource: dict) -> str:
    if resource.get("id"):
        res_type, res_id = resource["resourceType"], resource["id"]
        return ctx.repo.run(lambda u: u.update(res_type, res_id, resource)).status
    return ctx.repo.run(lambda u: u.create(resource)).status


def load_paths(ctx: Context, paths: list[Path], *, progress: bool = True) -> Summary:
    summary = Summary()
    files = _files(paths)
    agents = agents_of("hearth load")
    ctx = audited(ctx, agents)
    for path in tqdm(files, disable=not progress, unit="file"):
        for where, item in _items(path):
            _load_one(ctx, where, item, summary)
    counts = dict(summary.counts)
    event = load_event(
        base=ctx.base,
        agents=agents,
        files=[str(f) for f in files],
        counts=counts,
        failed=len(summary.failed),
    )
    audit.append_alone(ctx.repo.engine, event)
    return summary


def _load_one(ctx: Context, where: str, item: object, summary: Summary) -> None:
    if isinstance(item, _Unreadable):
        summary.failed.append((where, item.why))
        return
    if isinstance(item, _Skipped):
        summary.counts["skipped"] += 1
        return
    if not isinstance(item, dict) or not isinstance(item.get("resourceType"), str):
        summary.failed.append((where, "not a FHIR resource"))
        return
    try:
        if item["resourceType"] == "Bundle" and item.get("type") in ("transaction", "batch"):
            response = tx.process(
                ctx.repo,
                item,
                base=ctx.base,
                search=lambda unit, t, q, base: search_bundle(ctx, unit, t, q),
                status_of=status_of,
                return_pref="minimal",
            )
            for n, entry in enumerate(response["entry"]):
                status = entry["response"]["status"]
                if status.startswith(("200", "201", "204")):
                    summary.counts["created" if status.startswith("201") else "ok"] += 1
                else:
                    diag = entry["response"].get("outcome", {}).get("issue", [{}])[0]
                    summary.failed.append((f"{where} entry {n}", diag.get("diagnostics", status)))
            return
        summary.counts[_store(ctx, item)] += 1
    except FhirError as exc:
        summary.failed.append((where, exc.diagnostics))

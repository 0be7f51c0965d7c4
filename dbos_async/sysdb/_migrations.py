"""Schema files: numbered migrations plus the current schema, per backend and component.

``sql/{backend}/{component}/NNNN_name.sql`` are applied in order to bring an existing
database up to date; ``schema.sql`` creates the latest schema at once on a fresh database.
A test proves that a database built by the migrations equals one built from the schema.
Components: ``system`` (workflow status, steps) and ``app`` (transaction outputs).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

__all__ = ["Migration", "SchemaFiles", "load_schema_files"]

_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


@dataclass(frozen=True)
class SchemaFiles:
    migrations: tuple[Migration, ...]
    schema: str

    @property
    def latest(self) -> int:
        return self.migrations[-1].version if self.migrations else 0


def load_schema_files(backend: str, component: str) -> SchemaFiles:
    folder = resources.files(__package__).joinpath("sql", backend, component)
    migrations = []
    schema = ""
    for entry in folder.iterdir():
        if entry.name == "schema.sql":
            schema = entry.read_text(encoding="utf-8")
            continue
        match = _NAME.match(entry.name)
        if match:
            migrations.append(
                Migration(int(match.group(1)), entry.name, entry.read_text(encoding="utf-8"))
            )
    migrations.sort(key=lambda m: m.version)
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise RuntimeError(f"migrations of {backend}/{component} are not numbered 1..N: {versions}")
    return SchemaFiles(tuple(migrations), schema)

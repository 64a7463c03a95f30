"""Spreadsheet import/export for units, people and the three lists (being written)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from services.common.errors import FailedPrecondition


@dataclass
class RowError:
    row: int
    column: str
    reason: str


@dataclass
class ImportResult:
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[RowError] = field(default_factory=list)


@dataclass
class SheetFile:
    filename: str
    content_type: str
    content: bytes
    rows: int


def import_sheet(entity: str, fmt: str, content: bytes, dry_run: bool, ctx: Any) -> ImportResult:
    raise FailedPrecondition("spreadsheet import is not available yet")


def export_sheet(entity: str, fmt: str, filters: dict[str, str], protector: Any) -> SheetFile:
    raise FailedPrecondition("spreadsheet export is not available yet")

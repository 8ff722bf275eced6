"""CSV and XLSX for every report. A report answers JSON by default; `format=csv|xlsx` (or an
Accept header of text/csv or the XLSX media type, when `format` is absent) turns the same
response model into a file:

- CSV: the report's main table (aging: customers, or the invoices of a drill-down, or the
  groups; trends: the periods; ...), one row per entry, nested objects flattened to dotted
  column names (`buckets.1-30`). A report without a table is written as `field,value` rows.
- XLSX (openpyxl, write-only mode): a `summary` sheet with the scalar fields as field/value
  rows, and one sheet per table. Decimal strings (amounts, ratios) become numeric cells so a
  spreadsheet adds them up; everything else stays text (invoice numbers keep leading zeros).

The money in CSV stays the exact decimal string of the JSON. Text that a spreadsheet would
take for a formula (a customer name starting with =, +, -, @, tab or CR that is not a number)
is written as text: prefixed with ' in CSV (OWASP's advice for CSV injection), typed as a
string cell in XLSX."""
from __future__ import annotations

import csv
import io
import re
from decimal import Decimal
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from pydantic import BaseModel

from shared.problems import ValidationFailed

CSV_TYPE = "text/csv"
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
FORMATS = ("json", "csv", "xlsx")
# For the OpenAPI document: every report also answers these with format=csv|xlsx.
EXPORT_RESPONSES = {200: {"content": {CSV_TYPE: {"schema": {"type": "string"}},
                                      XLSX_TYPE: {"schema": {"type": "string", "format": "binary"}}}}}
_DECIMAL = re.compile(r"^-?\d+\.\d+$")
_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _formula_like(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(_FORMULA_START) and not _NUMBER.match(value)


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    return "'" + value if _formula_like(value) else value


def wanted_format(request: Request) -> str:
    requested = request.query_params.get("format")
    if requested is not None:
        if requested not in FORMATS:
            raise ValidationFailed(f"format must be one of {', '.join(FORMATS)}", field="format")
        return requested
    accept = request.headers.get("accept", "")
    if XLSX_TYPE in accept:
        return "xlsx"
    if CSV_TYPE in accept:
        return "csv"
    return "json"


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    if isinstance(value, list):
        return {prefix[:-1]: ";".join(str(v) for v in value)}
    return {prefix[:-1]: value}


def split(model: BaseModel) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    """(scalar fields flattened, tables: list-of-object fields with their rows flattened)."""
    data = model.model_dump(mode="json", by_alias=True)
    summary: dict[str, Any] = {}
    tables: dict[str, list[dict[str, Any]]] = {}
    for key, value in data.items():
        if isinstance(value, list) and (not value or isinstance(value[0], dict)):
            tables[key] = [_flatten(row) for row in value]
        else:
            summary.update(_flatten(value, f"{key}."))
    return summary, tables


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    return list(columns)


def to_csv(model: BaseModel, table: str | None) -> str:
    summary, tables = split(model)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    rows = tables.get(table) if table else None
    if rows is None:
        writer.writerow(["field", "value"])
        writer.writerows([k, _csv_value(v)] for k, v in summary.items())
    else:
        columns = _columns(rows)
        writer.writerow(columns)
        writer.writerows([[_csv_value(row.get(c)) for c in columns] for row in rows])
    return out.getvalue()


def _cell(sheet: Any, value: Any) -> Any:
    if isinstance(value, str) and _DECIMAL.match(value):
        return Decimal(value)
    if isinstance(value, str) and value.startswith("="):
        cell = WriteOnlyCell(sheet, value=value)
        cell.data_type = "s"  # openpyxl would otherwise store it as a formula
        return cell
    return value


def to_xlsx(model: BaseModel) -> bytes:
    summary, tables = split(model)
    book = Workbook(write_only=True)
    sheet = book.create_sheet("summary")
    sheet.append(["field", "value"])
    for k, v in summary.items():
        sheet.append([k, _cell(sheet, v)])
    for name, rows in tables.items():
        sheet = book.create_sheet(name[:31])
        columns = _columns(rows)
        sheet.append(columns)
        for row in rows:
            sheet.append([_cell(sheet, row.get(c)) for c in columns])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def respond(request: Request, model: BaseModel, name: str, table: str | None = None) -> BaseModel | Response:
    """The model as JSON, or as the CSV / XLSX file the request asked for (see module doc)."""
    fmt = wanted_format(request)
    if fmt == "csv":
        return Response(to_csv(model, table), media_type=f"{CSV_TYPE}; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'})
    if fmt == "xlsx":
        return Response(to_xlsx(model), media_type=XLSX_TYPE,
                        headers={"Content-Disposition": f'attachment; filename="{name}.xlsx"'})
    return model

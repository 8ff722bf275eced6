"""Tables as Excel workbooks (openpyxl): one sheet, a header row, money as exact decimals with a
two-decimal number format, dates as dates."""
from __future__ import annotations

import io
from datetime import date
from decimal import Decimal
from typing import Any, Sequence

from openpyxl import Workbook
from openpyxl.utils import get_column_letter

MONEY_FORMAT = "#,##0.00"


def workbook(title: str, columns: Sequence[tuple[str, str, str]], rows: Sequence[dict[str, Any]]) -> bytes:
    """columns: (key, header, kind) with kind 'text', 'money', 'decimal' (a ratio, as given), 'int' or 'date'."""
    wb = Workbook()
    ws = wb.active
    ws.title = title[:31]
    ws.append([header for _, header, _ in columns])
    for row in rows:
        values = []
        for key, _, kind in columns:
            value = row.get(key)
            if value in (None, ""):
                values.append(None)
            elif kind in ("money", "decimal"):
                values.append(Decimal(str(value)))
            elif kind == "int":
                values.append(int(value))
            elif kind == "date":
                values.append(date.fromisoformat(str(value)[:10]))
            elif isinstance(value, (list, tuple)):
                values.append(", ".join(str(v) for v in value))
            else:
                values.append(str(value))
        ws.append(values)
    for i, (_, header, kind) in enumerate(columns, start=1):
        letter = get_column_letter(i)
        ws.column_dimensions[letter].width = max(12, len(header) + 2)
        if kind in ("money", "date"):
            for cell in ws[letter][1:]:
                cell.number_format = MONEY_FORMAT if kind == "money" else "yyyy-mm-dd"
    ws.freeze_panes = "A2"
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()

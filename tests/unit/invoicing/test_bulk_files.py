"""Reading invoice import files into batch items, pure."""
from __future__ import annotations

import io

import pytest
from openpyxl import Workbook

from shared.problems import Problem
from services.invoicing.application.bulk import items_from_rows, rows_from_file

CSV = ("invoice_number,customer_id,issue_date,description,quantity,unit_price,due_date\n"
       "A-1,C1,2024-03-01,Widgets,2,10.00,\n"
       "A-1,C1,2024-03-01,Freight,1,5.00,\n"
       "A-2,C2,2024-03-02,Service,1,99.99,2024-04-30\n")


def test_rows_of_one_invoice_number_make_one_invoice():
    grouped = items_from_rows(rows_from_file(CSV.encode(), "csv"))
    assert [rows for rows, _ in grouped] == [[2, 3], [4]]
    first, second = (item for _, item in grouped)
    assert (first["invoice_id"], len(first["lines"]), "due_date" in first) == ("C1:A-1", 2, False)
    assert (second["due_date"], second["lines"][0]["unit_price"]) == ("2024-04-30", "99.99")


def test_xlsx_reads_like_csv():
    wb = Workbook()
    ws = wb.active
    ws.append(["invoice_number", "customer_id", "issue_date", "description", "quantity", "unit_price"])
    ws.append(["A-1", "C1", "2024-03-01", "Widgets", 2, "10.00"])
    buf = io.BytesIO()
    wb.save(buf)
    (rows, item), = items_from_rows(rows_from_file(buf.getvalue(), "xlsx"))
    assert rows == [2] and item["lines"] == [{"description": "Widgets", "quantity": "2", "unit_price": "10.00"}]


def test_missing_columns_and_bad_workbooks_are_refused():
    with pytest.raises(Problem) as info:
        rows_from_file(b"invoice_number,customer_id\nA,B\n", "csv")
    assert info.value.status == 422 and "issue_date" in info.value.detail
    with pytest.raises(Problem):
        rows_from_file(b"not a zip", "xlsx")

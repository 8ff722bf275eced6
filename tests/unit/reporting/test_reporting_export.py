"""CSV and XLSX export of a report model: tables flattened, money exact in CSV and numeric in
XLSX, and text that a spreadsheet would run as a formula kept as text."""
from __future__ import annotations

import io
from decimal import Decimal

from openpyxl import load_workbook
from pydantic import BaseModel

from services.reporting.api.export import to_csv, to_xlsx


class Row(BaseModel):
    customer_id: str
    name: str
    buckets: dict[str, str]
    total: str


class Report(BaseModel):
    as_of: str
    total: str
    rows: list[Row]


REPORT = Report(as_of="2024-03-31", total="-12.50", rows=[
    Row(customer_id="0042", name="=HYPERLINK(\"http://x\")", buckets={"current": "1.00", "1-30": "-13.50"},
        total="-12.50"),
    Row(customer_id="C2", name="-Acme", buckets={"current": "0.00", "1-30": "0.00"}, total="0.00")])


def test_csv_writes_the_main_table_flattened_with_formulas_neutralised():
    assert to_csv(REPORT, "rows").splitlines() == [
        "customer_id,name,buckets.current,buckets.1-30,total",
        "0042,\"'=HYPERLINK(\"\"http://x\"\")\",1.00,-13.50,-12.50",
        "C2,'-Acme,0.00,0.00,0.00"]
    assert to_csv(REPORT, None).splitlines() == ["field,value", "as_of,2024-03-31", "total,-12.50"]


def test_xlsx_has_a_summary_and_a_sheet_per_table_with_numbers_and_text_kept_apart():
    book = load_workbook(io.BytesIO(to_xlsx(REPORT)))
    assert book.sheetnames == ["summary", "rows"]
    assert list(book["summary"].iter_rows(values_only=True)) == [("field", "value"), ("as_of", "2024-03-31"),
                                                                  ("total", Decimal("-12.5"))]
    rows = list(book["rows"].iter_rows(values_only=True))
    assert rows[1][0] == "0042" and rows[1][1] == "=HYPERLINK(\"http://x\")"
    assert book["rows"]["B2"].data_type == "s" and rows[1][3] == Decimal("-13.5")

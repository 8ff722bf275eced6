"""The corpus of real bank files (tests/fixtures/bank-files, sources in its README) imported
through the HTTP API on a fresh PostgreSQL database each, checked against the figures in
manifest.json: statements, entry records, entries not booked, credit and debit totals and each
statement's opening and closing balance. Those figures come from the files' own controls
(balances, control totals, TxsSummry, BPR02) and a count of their entry records, never from
Ledgerline's parsers. Invalid files must be refused with 422, naming where and why, posting nothing."""
from __future__ import annotations

import json
import uuid
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path

import asyncpg
import httpx
import pytest

from services.cash_application.main import definition
from services.cash_application.settings import CashApplicationSettings
from shared.service import build_app
from tests.support.infra import asyncpg_dsn, fresh_database, idem, sqlalchemy_url

CORPUS = Path(__file__).resolve().parents[2] / "fixtures" / "bank-files"
MANIFEST = json.loads((CORPUS / "manifest.json").read_text())["files"]


@asynccontextmanager
async def _app(database: str):
    settings = CashApplicationSettings(database_url=sqlalchemy_url(database))
    service = definition(settings)
    service.settings.role = "api"
    if not service.settings.api_keys:
        service.settings.allow_open = True
    app = build_app(service)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            yield client


@pytest.fixture(scope="module")
async def migrated_template():
    """One migrated database; each file gets a fresh copy of it (CREATE DATABASE ... TEMPLATE)."""
    async with fresh_database("corpus") as template:
        async with _app(template):
            pass
        yield template


@asynccontextmanager
async def _fresh_copy(template: str):
    name = f"ll_corpus_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(asyncpg_dsn("postgres"))
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    finally:
        await admin.close()
    try:
        async with _app(name) as client:
            yield client
    finally:
        admin = await asyncpg.connect(asyncpg_dsn("postgres"))
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


def test_the_corpus_has_sixty_files_in_five_formats_with_sources():
    assert len(MANIFEST) >= 60
    assert {f["format"] for f in MANIFEST if f["valid"]} == {"bai2", "mt940", "camt.053", "camt.054", "edi820"}
    listed = {f["file"] for f in MANIFEST}
    on_disk = {str(p.relative_to(CORPUS)) for p in CORPUS.glob("*/*")}
    assert listed == on_disk
    readme = (CORPUS / "README.md").read_text()
    for f in MANIFEST:
        assert f["source"]["licence"] in ("MIT", "BSD-3-Clause", "Apache-2.0")
        assert len(f["source"]["commit"]) == 40 and f["file"] in readme


@pytest.mark.parametrize("entry", [f for f in MANIFEST if f["valid"]], ids=lambda f: f["file"])
async def test_a_valid_file_imports_with_the_figures_of_its_controls(entry, migrated_template):
    content = (CORPUS / entry["file"]).read_bytes()
    expected = entry["expected"]
    async with _fresh_copy(migrated_template) as client:
        response = await client.post("/v1/bank-files", params={"format": entry["format"]}, content=content,
                                     headers=idem())
        assert response.status_code == 201, response.text
        result = response.json()
        statements = result["statements"]
        assert len(statements) == expected["statements"]
        assert sum(s["entry_records"] for s in statements) == expected["entry_records"]
        assert sum(s["entries_not_booked"] for s in statements) == expected["entries_not_booked"]
        assert sum(Decimal(s["total_credits"]) for s in statements) == Decimal(expected["total_credits"])
        assert sum(Decimal(s["total_debits"]) for s in statements) == Decimal(expected["total_debits"])
        if "balances" in expected:
            assert [[Decimal(s["opening_balance"]), Decimal(s["closing_balance"])] for s in statements] == [
                [Decimal(o), Decimal(c)] for o, c in expected["balances"]]
        # Every line read is on the books: a receipt, a return, or another line; none dropped.
        lines = sum(s["entries"] for s in statements)
        assert result["receipts"] + result["returns"] + result["returns_unmatched"] + result["other_lines"] == lines
        assert result["lines_already_imported"] == 0 and result["duplicate_statements"] == []
        listed = await client.get(f"/v1/bank-files/{result['import_id']}")
        assert listed.status_code == 200 and listed.json()["statements"] == statements


@pytest.mark.parametrize("entry", [f for f in MANIFEST if not f["valid"]], ids=lambda f: f["file"])
async def test_an_invalid_file_is_refused_naming_where_and_why(entry, migrated_template):
    content = (CORPUS / entry["file"]).read_bytes()
    async with _fresh_copy(migrated_template) as client:
        response = await client.post("/v1/bank-files", params={"format": entry["format"]}, content=content,
                                     headers=idem())
        assert response.status_code == 422, response.text
        problem = response.json()
        assert response.headers["content-type"].startswith("application/problem+json")
        error = problem["errors"][0]
        assert error["field"] == entry["expected"]["field"]
        assert entry["expected"]["reason_contains"] in error["reason"]
        assert "Exception" not in error["reason"] and "object at 0x" not in error["reason"]
        listed = await client.get("/v1/bank-files")
        assert listed.json()["data"] == []

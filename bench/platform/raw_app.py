"""The raw ceiling of the write path: a minimal FastAPI + asyncpg service that validates the same
invoice body (pydantic), computes its total in Decimal and inserts one row per invoice, nothing
else (no event store, idempotency, outbox, tracing or auth). Run by the benchmark as its own
process under uvicorn, loaded by the same generator as the invoicing service.

    python -m bench.platform.raw_app --port PORT --dsn postgresql://...
"""
from __future__ import annotations

import argparse
import json
from contextlib import asynccontextmanager
from datetime import date
from decimal import Decimal

import asyncpg
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

SCHEMA = """CREATE TABLE IF NOT EXISTS raw_invoices (
    invoice_id text PRIMARY KEY, invoice_number text NOT NULL UNIQUE, customer_id text NOT NULL, currency char(3) NOT NULL,
    total_amount numeric(20, 4) NOT NULL, issue_date date NOT NULL, lines jsonb NOT NULL)"""
COLUMNS = ("invoice_id", "invoice_number", "customer_id", "currency", "total_amount", "issue_date", "lines")


class Line(BaseModel):
    description: str = Field(min_length=1, max_length=500)
    quantity: Decimal
    unit_price: Decimal


class Invoice(BaseModel):
    invoice_id: str = Field(min_length=1, max_length=64)
    invoice_number: str = Field(min_length=1, max_length=64)
    customer_id: str = Field(min_length=1, max_length=64)
    currency: str = Field(min_length=3, max_length=3)
    issue_date: date
    lines: list[Line] = Field(min_length=1, max_length=1000)

    def row(self) -> tuple:
        total = sum((line.quantity * line.unit_price for line in self.lines), Decimal(0)).quantize(Decimal("0.01"))
        lines = json.dumps([line.model_dump(mode="json") for line in self.lines])
        return self.invoice_id, self.invoice_number, self.customer_id, self.currency, total, self.issue_date, lines


class Batch(BaseModel):
    invoices: list[Invoice] = Field(min_length=1, max_length=5000)


def make_app(dsn: str, pool_size: int = 10) -> FastAPI:
    state: dict = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state["pool"] = await asyncpg.create_pool(dsn, min_size=pool_size, max_size=pool_size)
        async with state["pool"].acquire() as conn:
            await conn.execute(SCHEMA)
        yield
        await state["pool"].close()

    app = FastAPI(lifespan=lifespan)

    @app.post("/raw/invoices", status_code=201)
    async def issue(body: Invoice, request: Request):
        row = body.row()
        async with state["pool"].acquire() as conn:
            await conn.execute("INSERT INTO raw_invoices VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb)", *row)
        return JSONResponse({"invoice_id": row[0], "total_amount": str(row[4]), "currency": row[3]}, status_code=201)

    @app.post("/raw/invoice-batches", status_code=201)
    async def issue_batch(body: Batch):
        rows = [invoice.row() for invoice in body.invoices]
        async with state["pool"].acquire() as conn, conn.transaction():
            await conn.copy_records_to_table("raw_invoices", records=rows, columns=COLUMNS)
        return {"issued": len(rows)}

    @app.get("/readyz")
    async def ready():
        return {"status": "ok"}

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dsn", required=True)
    args = parser.parse_args()
    import uvicorn

    uvicorn.run(make_app(args.dsn), host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()

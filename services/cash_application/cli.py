"""cash_application's own CLI commands (python -m services.cash_application <command>)."""
from __future__ import annotations

import argparse
import json
import sys
import uuid
from pathlib import Path

from shared.problems import Problem
from services.cash_application.adapters.bank_files import FORMATS


def _import_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", type=Path, help="the bank or remittance file")
    parser.add_argument("--format", required=True, choices=FORMATS, help="the file's format")
    parser.add_argument("--profile", help="CSV column-mapping profile (settings csv_profiles)")


async def _import(runtime, args: argparse.Namespace) -> int:
    """Import a file as the API does: all or nothing (a large file chunk by chunk, resumable), the same
    file twice posts once."""
    from services.cash_application.application import chunked_imports, imports

    cmd = imports.ImportFile(content=args.path.read_bytes(), file_format=args.format, file_name=args.path.name,
                             csv_profile=args.profile)
    meta = {"correlation_id": str(uuid.uuid4()), "actor": "cli"}
    try:
        parsed = await imports.parse(cmd, runtime.settings)
        if chunked_imports.needs_chunks(parsed, runtime.settings):
            # committed chunk by chunk; run again after a crash, it resumes
            result = await chunked_imports.import_file_in_chunks(runtime.engine, cmd, parsed, runtime.settings, meta)
        else:
            async with runtime.engine.begin() as conn:
                result = await imports.import_file(conn, cmd, parsed, runtime.settings, meta)
    except Problem as exc:
        print(json.dumps(exc.body()), file=sys.stderr)
        return 2
    summary = {k: v for k, v in result.items() if k != "payments"}
    print(json.dumps(summary, indent=2, default=str))
    return 0


COMMANDS = {"import-file": ("import a bank or remittance file (BAI2, camt.053/054, MT940, CSV, EDI 820)",
                            _import_args, _import)}

"""A local SMTP sink for `make run`: accepts every message on 127.0.0.1:8025 (the collections
service's default SMTP port), prints a line per message and keeps it as an .eml file, so the
dunning emails of a local run can be read. Not for production.

    python scripts/mail_sink.py [--port 8025] [--dir .local/run/mail]"""
from __future__ import annotations

import argparse
import signal
import threading
from email import message_from_bytes, policy
from pathlib import Path

from aiosmtpd.controller import Controller


class _Sink:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.count = 0

    async def handle_DATA(self, server, session, envelope) -> str:
        self.count += 1
        content = envelope.original_content or envelope.content
        message = message_from_bytes(content, policy=policy.default)
        (self.folder / f"{self.count:05d}.eml").write_bytes(content)
        print(f"[mail] to {', '.join(envelope.rcpt_tos)}: {message['Subject']}", flush=True)
        return "250 Message accepted for delivery"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8025)
    parser.add_argument("--dir", type=Path, default=Path(".local/run/mail"))
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    controller = Controller(_Sink(args.dir), hostname=args.host, port=args.port)
    controller.start()
    print(f"[mail] SMTP sink on {args.host}:{args.port}, messages in {args.dir}", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    controller.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The compose stack's SMTP sink: accepts every message, prints one line per message and keeps
it as an .eml file, so a dunning run's email can be read (`docker compose logs smtp-sink`).
Standard library only (it runs in the service image, which has no aiosmtpd). Not for production.

    python smtp_sink.py [--port 2525] [--dir /tmp/mail]"""
from __future__ import annotations

import argparse
import asyncio
from email import message_from_bytes, policy
from pathlib import Path


class Sink:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.count = 0

    async def session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        def reply(line: str) -> None:
            writer.write(line.encode() + b"\r\n")

        reply("220 ledgerline-smtp-sink ESMTP")
        recipients: list[str] = []
        try:
            while line := await reader.readline():
                verb = line.decode(errors="replace").strip().split(" ", 1)[0].upper()
                if verb in ("EHLO", "HELO"):
                    reply("250-ledgerline-smtp-sink" if verb == "EHLO" else "250 ledgerline-smtp-sink")
                    if verb == "EHLO":
                        reply("250 8BITMIME")
                elif verb == "MAIL":
                    recipients = []
                    reply("250 OK")
                elif verb == "RCPT":
                    recipients.append(line.decode(errors="replace").split(":", 1)[-1].strip().strip("<>"))
                    reply("250 OK")
                elif verb == "DATA":
                    reply("354 End data with <CR><LF>.<CR><LF>")
                    await writer.drain()
                    lines = []
                    while (data := await reader.readline()) not in (b".\r\n", b".\n", b""):
                        lines.append(data[1:] if data.startswith(b"..") else data)
                    self.store(b"".join(lines), recipients)
                    reply("250 Message accepted for delivery")
                elif verb == "QUIT":
                    reply("221 Bye")
                    await writer.drain()
                    break
                else:  # RSET, NOOP and anything else
                    reply("250 OK")
                await writer.drain()
        finally:
            writer.close()

    def store(self, content: bytes, recipients: list[str]) -> None:
        self.count += 1
        (self.folder / f"{self.count:05d}.eml").write_bytes(content)
        message = message_from_bytes(content, policy=policy.default)
        print(f"[mail] to {', '.join(recipients)}: {message['Subject']}", flush=True)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=2525)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/mail"))
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    server = await asyncio.start_server(Sink(args.dir).session, args.host, args.port)
    print(f"[mail] SMTP sink on {args.host}:{args.port}, messages in {args.dir}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())

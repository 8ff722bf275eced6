"""ISO 20022 camt.053 (statement) and camt.054 (debit/credit notification) with lxml.

No maintained Python package reads camt across versions, and the structure the matcher needs is
small, so it is read here with lxml's namespace wildcard ({*}tag): the same code reads 001.02
through 001.08 (and later) whatever the namespace. What moved between versions is handled where
it moved: the entry status is text up to 001.06 and Sts/Cd from 001.07; the debtor's name is
Dbtr/Nm up to 001.06 and Dbtr/Pty/Nm from 001.07. A statement's balances are checked: opening
(OPBD, or PRCD) + credits - debits = closing (CLBD), and so is its TxsSummry when it has one
(number and sum of credit and of debit entries).

Both ValDt and BookgDt are optional in the schema. An entry with neither takes the
notification's (or statement's) CreDtTm, else the message's GrpHdr/CreDtTm, and the line says
so (value_date_source), so the receipt shows where its date came from. Entries that are not
booked (INFO, PDNG) post nothing but are counted, so every Ntry is accounted for."""
from __future__ import annotations

import re
from datetime import date
from decimal import Decimal

from lxml import etree

from services.cash_application.adapters.bank_files.amounts import file_amount
from services.cash_application.domain.receipts import (
    BankLine, BankStatement, FileRejected, ParsedFile, RemittanceItem)

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False, remove_comments=True)


def _text(el, path: str) -> str | None:
    found = el.find(_ns(path))
    if found is None or found.text is None:
        return None
    return found.text.strip() or None


def _ns(path: str) -> str:
    return "/".join(part if part in (".", "..") else "{*}" + part for part in path.split("/"))


def _path_of(el) -> str:
    names = []
    node = el
    while node is not None and isinstance(node.tag, str):
        name = etree.QName(node).localname
        parent = node.getparent()
        if parent is not None:
            siblings = [c for c in parent if isinstance(c.tag, str) and etree.QName(c).localname == name]
            if len(siblings) > 1:
                name += f"[{siblings.index(node) + 1}]"
        names.append(name)
        node = parent
    return "/".join(reversed(names)) + f" (line {el.sourceline})"


def _amount(el, path: str, currency: str | None = None) -> tuple[Decimal, str]:
    node = el.find(_ns(path))
    if node is None or not (node.text or "").strip():
        raise FileRejected(_path_of(el), f"{path} is missing")
    ccy = (node.get("Ccy") or currency or "").upper()
    if not ccy:
        raise FileRejected(_path_of(node), "amount without a currency (no Ccy attribute, no account currency)")
    value = file_amount(node.text.strip(), ccy, _path_of(node))
    if value < 0:
        raise FileRejected(_path_of(node), "amounts are unsigned in camt; CdtDbtInd gives the direction")
    return value, ccy


def _date(el, *paths: str) -> date | None:
    for path in paths:
        value = _text(el, path)
        if value:
            try:
                return date.fromisoformat(value[:10])
            except ValueError as exc:
                raise FileRejected(_path_of(el.find(_ns(path))), f"{value!r} is not a date") from exc
    return None


_NTRY = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?Ntry[\s>/]")


def count_entry_records(content: bytes) -> int:
    """The guard's independent count: Ntry elements in the raw document."""
    return len(_NTRY.findall(content))


def parse(content: bytes) -> ParsedFile:
    try:
        root = etree.fromstring(content, _PARSER)
    except etree.XMLSyntaxError as exc:
        raise FileRejected(f"line {exc.lineno}", f"not well-formed XML: {exc.msg}") from exc
    namespace = etree.QName(root).namespace or ""
    if "camt.053" in namespace or root.find("{*}BkToCstmrStmt") is not None:
        kind, containers = "camt.053", root.findall("{*}BkToCstmrStmt/{*}Stmt")
    elif "camt.054" in namespace or root.find("{*}BkToCstmrDbtCdtNtfctn") is not None:
        kind, containers = "camt.054", root.findall("{*}BkToCstmrDbtCdtNtfctn/{*}Ntfctn")
    else:
        raise FileRejected(_path_of(root), f"not a camt.053 or camt.054 document (namespace {namespace or 'none'})")
    if not containers:
        raise FileRejected(_path_of(root), "holds no Stmt or Ntfctn")
    message_created = _date(root, f"{'BkToCstmrStmt' if kind == 'camt.053' else 'BkToCstmrDbtCdtNtfctn'}/GrpHdr/CreDtTm")
    return ParsedFile(kind, tuple(_statement(kind, c, message_created) for c in containers),
                      entry_records=count_entry_records(content))


def _statement(kind: str, stmt, message_created: date | None) -> BankStatement:
    statement_id = _text(stmt, "Id")
    if not statement_id:
        raise FileRejected(_path_of(stmt), "Id is missing")
    account = _text(stmt, "Acct/Id/IBAN") or _text(stmt, "Acct/Id/Othr/Id")
    currency = _text(stmt, "Acct/Ccy")
    sequence = _text(stmt, "ElctrncSeqNb") or _text(stmt, "LglSeqNb")
    created = _date(stmt, "CreDtTm")
    balances: dict[str, tuple[Decimal, date | None, object]] = {}
    for bal in stmt.findall("{*}Bal"):
        code = _text(bal, "Tp/CdOrPrtry/Cd") or _text(bal, "Tp/CdOrPrtry/Prtry")
        amount, ccy = _amount(bal, "Amt")
        currency = currency or ccy
        if ccy != currency.upper():
            raise FileRejected(_path_of(bal), f"balance in {ccy}, the account in {currency.upper()}")
        sign = -1 if _text(bal, "CdtDbtInd") == "DBIT" else 1
        balances[code or ""] = (sign * amount, _date(bal, "Dt/Dt", "Dt/DtTm"), bal)
    lines: list[BankLine] = []
    net = Decimal(0)
    entries = not_booked = 0
    credits = [0, Decimal(0)]
    debits = [0, Decimal(0)]
    fallback = (created, "the notification's creation date (Ntfctn/CreDtTm)" if kind == "camt.054"
                else "the statement's creation date (Stmt/CreDtTm)") if created else (
        (message_created, "the message's creation date (GrpHdr/CreDtTm)") if message_created else None)
    for entry in stmt.findall("{*}Ntry"):
        entries += 1
        amount_node = entry.find("{*}Amt")
        if not currency and amount_node is not None and amount_node.get("Ccy"):
            currency = amount_node.get("Ccy").upper()
        entry_lines, signed, booked = _entry(entry, currency, fallback)
        if not booked:
            not_booked += 1
            continue
        if entry_lines:
            currency = currency or entry_lines[0][1]
        lines.extend(line for line, _ in entry_lines)
        net += signed
        tally = credits if signed >= 0 and _text(entry, "CdtDbtInd") == "CRDT" else debits
        tally[0] += 1
        tally[1] += abs(signed)
    if not currency:
        raise FileRejected(_path_of(stmt), "no currency: neither Acct/Ccy nor any Amt/@Ccy")
    opening = balances.get("OPBD") or balances.get("PRCD")
    closing = balances.get("CLBD")
    statement_date = (closing[1] if closing else None) or created or message_created
    if kind == "camt.053":
        if opening is None or closing is None:
            raise FileRejected(_path_of(stmt), "a camt.053 statement needs an opening (OPBD or PRCD) and a closing"
                                               " (CLBD) balance")
        if opening[0] + net != closing[0]:
            raise FileRejected(_path_of(closing[2]), f"closing balance {closing[0]} is not the opening balance"
                                                     f" {opening[0]} plus the entries ({net:+})")
    _check_summary(stmt, credits, debits, currency)
    if statement_date is None:
        dates = [line.value_date for line in lines]
        statement_date = max(dates) if dates else None
    if statement_date is None:
        raise FileRejected(_path_of(stmt), "no date: neither CreDtTm, a CLBD date nor any entry date")
    return BankStatement(file_format=kind, account=account,
                         statement_id=f"{statement_id}/{sequence}" if sequence else statement_id,
                         statement_date=statement_date, currency=currency.upper(), lines=tuple(lines),
                         opening_balance=opening[0] if opening else None,
                         closing_balance=closing[0] if closing else None,
                         entry_records=entries, entries_not_booked=not_booked)


def _check_summary(stmt, credits: list, debits: list, currency: str | None) -> None:
    """TxsSummry, when the bank sends one, is its own control: entries and sums per direction."""
    summary = stmt.find("{*}TxsSummry")
    if summary is None or not currency:
        return
    for name, (count, total) in (("TtlCdtNtries", credits), ("TtlDbtNtries", debits)):
        node = summary.find("{*}" + name)
        if node is None:
            continue
        stated = _text(node, "NbOfNtries")
        if stated is not None and stated.isdigit() and int(stated) != count:
            raise FileRejected(_path_of(node), f"{name} says {stated} entries, the statement has {count} booked")
        stated_sum = _text(node, "Sum")
        if stated_sum is not None and file_amount(stated_sum, currency, _path_of(node)) != total:
            raise FileRejected(_path_of(node), f"{name} sums to {stated_sum}, the booked entries to {total}")


def _entry(entry, currency: str | None, fallback) -> tuple[list[tuple[BankLine, str]], Decimal, bool]:
    amount, ccy = _amount(entry, "Amt", currency)
    if currency and ccy != currency.upper():
        raise FileRejected(_path_of(entry.find("{*}Amt")), f"entry in {ccy}, the account in {currency}")
    indicator = _text(entry, "CdtDbtInd")
    if indicator not in ("CRDT", "DBIT"):
        raise FileRejected(_path_of(entry), f"CdtDbtInd must be CRDT or DBIT, got {indicator!r}")
    status = _text(entry, "Sts/Cd") or _text(entry, "Sts")
    signed = amount if indicator == "CRDT" else -amount
    if status and status.upper() not in ("BOOK",):
        return [], Decimal(0), False  # pending/information entries are not on the balance and post nothing
    reversal = (_text(entry, "RvslInd") or "").lower() == "true"
    value_date = _date(entry, "ValDt/Dt", "ValDt/DtTm", "BookgDt/Dt", "BookgDt/DtTm")
    date_source = None
    if value_date is None:
        if fallback is None:
            raise FileRejected(_path_of(entry), "neither ValDt nor BookgDt, and no CreDtTm to date it by")
        value_date, date_source = fallback
    details = entry.findall("{*}NtryDtls/{*}TxDtls")
    # Batch booking: one entry, several transactions, each with its own amount and remittance.
    split = len(details) > 1 and all(d.find(_ns("AmtDtls/TxAmt/Amt")) is not None or d.find("{*}Amt") is not None
                                     for d in details)
    parts = []
    if split:
        total = Decimal(0)
        for d in details:
            part, _ = _amount(d, "Amt" if d.find("{*}Amt") is not None else "AmtDtls/TxAmt/Amt", ccy)
            parts.append((d, part))
            total += part
        if total != amount:
            raise FileRejected(_path_of(entry), f"its transactions total {total}, the entry {amount}")
    else:
        parts.append((details[0] if details else None, amount))
    entry_ref = _text(entry, "AcctSvcrRef") or _text(entry, "NtryRef")
    lines = []
    for i, (tx, part_amount) in enumerate(parts):
        position = _path_of(tx if tx is not None and split else entry)
        return_code = None
        if reversal or (tx is not None and tx.find("{*}RtrInf") is not None):
            return_code = (tx is not None and (_text(tx, "RtrInf/Rsn/Cd") or _text(tx, "RtrInf/Rsn/Prtry"))) or "RVSL"
        items: list[RemittanceItem] = []
        texts: list[str] = []
        payer_name = payer_account = bank_reference = hint = None
        if tx is not None:
            payer_name = (_text(tx, "RltdPties/Dbtr/Pty/Nm") or _text(tx, "RltdPties/Dbtr/Nm")
                          or _text(tx, "RltdPties/UltmtDbtr/Pty/Nm") or _text(tx, "RltdPties/UltmtDbtr/Nm"))
            payer_account = _text(tx, "RltdPties/DbtrAcct/Id/IBAN") or _text(tx, "RltdPties/DbtrAcct/Id/Othr/Id")
            bank_reference = (_text(tx, "Refs/AcctSvcrRef") or _text(tx, "Refs/EndToEndId")
                              or _text(tx, "Refs/TxId"))
            hint = _text(tx, "RltdPties/Dbtr/Pty/Id/OrgId/Othr/Id") or _text(tx, "RltdPties/Dbtr/Id/OrgId/Othr/Id")
            texts = [u.text.strip() for u in tx.findall(_ns("RmtInf/Ustrd")) if u.text and u.text.strip()]
            for strd in tx.findall(_ns("RmtInf/Strd")):
                items.extend(_structured(strd, ccy))
            if return_code is not None and bank_reference is None:
                bank_reference = _text(tx, "RtrInf/OrgnlBkTxId")
        lines.append((BankLine(
            position=position, amount=part_amount, direction="credit" if indicator == "CRDT" else "debit",
            value_date=value_date, bank_reference=bank_reference or (f"{entry_ref}/{i + 1}" if split and entry_ref else entry_ref),
            payer_name=payer_name, payer_account=payer_account, customer_hint=hint, text=" ".join(texts),
            remittance=tuple(items), method=_method(entry), return_code=return_code,
            returned_reference=(bank_reference or entry_ref) if return_code else None,
            value_date_source=date_source), ccy))
    return lines, signed, True


def _structured(strd, currency: str) -> list[RemittanceItem]:
    """Strd: referred document numbers (invoices) with their amounts and adjustment reasons, or a
    creditor reference (RF) that names the invoice."""
    numbers = [n.text.strip() for n in strd.findall(_ns("RfrdDocInf/Nb")) if n.text and n.text.strip()]
    reference = _text(strd, "CdtrRefInf/Ref")
    amounts = strd.find("{*}RfrdDocAmt")
    paid = invoice = adjustment = None
    reason = None
    if amounts is not None:
        if amounts.find("{*}RmtdAmt") is not None:
            paid, _ = _amount(amounts, "RmtdAmt", currency)
        if amounts.find("{*}DuePyblAmt") is not None:
            invoice, _ = _amount(amounts, "DuePyblAmt", currency)
        adj = amounts.find("{*}AdjstmntAmtAndRsn")
        if adj is not None:
            adjustment, _ = _amount(adj, "Amt", currency)
            if _text(adj, "CdtDbtInd") == "CRDT":
                adjustment = -adjustment
            reason = _text(adj, "Rsn")
    refs = numbers or ([reference] if reference else [])
    if len(refs) > 1:  # several documents, one amount block: the amounts cannot be told apart
        return [RemittanceItem(reference=r) for r in refs]
    return [RemittanceItem(reference=r, paid_amount=paid, invoice_amount=invoice, adjustment_amount=adjustment,
                           reason_code=reason) for r in refs]


def _method(entry) -> str:
    family = (_text(entry, "BkTxCd/Domn/Fmly/Cd") or "") + "/" + (_text(entry, "BkTxCd/Domn/Fmly/SubFmlyCd") or "")
    if family.startswith("RCDT"):
        return "wire"
    if family.startswith("RDDT"):
        return "ach"
    if family.startswith("RCHQ") or family.startswith("LBOX"):
        return "check"
    return "other"

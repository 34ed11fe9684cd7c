"""Write src/srl_rlvr/tasks/data/extraction.jsonl: the built-in extraction task's documents.

Documents are rendered from handwritten pools (vendors, customers, line items, phrasings) so the same
invoice facts appear as emails, OCR-ish invoices, order confirmations and terse AP notes, with the
date and amount formats of the vendor's locale. Numeric slash dates are only used when the day is
above 12, so every text has one correct reading. `evidence` records the surface string of each field
(what the solver quotes). Deterministic: re-running rewrites the same file.

    python scripts/make_extraction_data.py [--rows 250] [--seed 0]
"""

from __future__ import annotations

import argparse
import datetime
import json
import random
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "src" / "srl_rlvr" / "tasks" / "data" / "extraction.jsonl"

# Handwritten pools. Tables read best one row of data a line, so the formatter leaves them alone.
# fmt: off
# vendor, locale; the locale picks currency, tax, date and number formats
VENDORS = [
    ("Acme Corp", "us"), ("Brightline Studio LLC", "us"), ("Pinecrest Analytics Inc.", "us"),
    ("Harbor & Finch Supply Co.", "us"), ("Redwood Office Systems", "us"), ("Summit Cloud Services", "us"),
    ("Lakeside Print Works", "us"), ("Blue Mesa Coffee Roasters", "us"), ("Northgate Logistics", "us"),
    ("Thornbury Consulting Ltd", "uk"), ("Whitcombe & Sons", "uk"), ("Greyfriars Stationery Ltd", "uk"),
    ("Kestrel IT Services", "uk"), ("Mossgate Catering Ltd", "uk"), ("Aldwych Legal LLP", "uk"),
    ("Müller Feinmechanik GmbH", "de"), ("Nordlicht Software GmbH", "de"), ("Atelier Rousseau SARL", "fr"),
    ("Café Lumière", "fr"), ("Van der Berg Logistiek B.V.", "nl"), ("Studio Bianchi S.r.l.", "it"),
    ("Ibérica Suministros S.L.", "es"), ("Saarinen Design Oy", "fi"), ("Tanaka Seiki K.K.", "jp"),
    ("Sakura Print Co., Ltd.", "jp"), ("Hoshino Electronics", "jp"), ("Alpenblick Treuhand AG", "ch"),
    ("Maple Ridge Outfitters", "ca"), ("Coral Coast Freight Pty Ltd", "au"), ("Fjällström Konsult AB", "se"),
]
EURO = {"currency": "EUR", "amounts": ["eu_suffix", "eu_code"], "dates": ["dot", "long_dm", "iso", "slash_dmy"]}
LOCALES = {
    "us": {"currency": "USD", "tax": 0.0725, "amounts": ["dollar", "code_us", "us_dollar"],
           "dates": ["long_md", "abbr_md", "slash_mdy", "iso", "ordinal_md"]},
    "uk": {"currency": "GBP", "tax": 0.20, "amounts": ["pound", "code_us"],
           "dates": ["long_dm", "abbr_dm", "slash_dmy", "ordinal_dm", "dash_abbr"]},
    "de": {**EURO, "tax": 0.19}, "fr": {**EURO, "tax": 0.20}, "it": {**EURO, "tax": 0.22},
    "es": {**EURO, "tax": 0.21}, "fi": {**EURO, "tax": 0.24},
    "nl": {"currency": "EUR", "tax": 0.21, "amounts": ["euro_prefix", "eu_code"], "dates": ["long_dm", "iso", "dash_abbr"]},
    "jp": {"currency": "JPY", "tax": 0.10, "amounts": ["yen", "code_jp", "en"], "dates": ["ymd_slash", "iso", "long_md"]},
    "ch": {"currency": "CHF", "tax": 0.081, "amounts": ["chf"], "dates": ["dot", "long_dm"]},
    "ca": {"currency": "CAD", "tax": 0.13, "amounts": ["ca_dollar", "code_us"], "dates": ["long_md", "iso", "abbr_md"]},
    "au": {"currency": "AUD", "tax": 0.10, "amounts": ["au_dollar", "code_us"], "dates": ["long_dm", "slash_dmy", "abbr_dm"]},
    "se": {"currency": "SEK", "tax": 0.25, "amounts": ["sek"], "dates": ["iso", "long_dm"]},
}
CUSTOMERS = [  # contact names stay ASCII so they double as e-mail addresses
    ("Dana Whitfield", "Orion Health Ltd"), ("Sam Okafor", "Kite & Key Bakery"), ("Priya Raman", "Lindqvist Architects"),
    ("Tom Berger", "Pemberton School"), ("Lena Vogt", "Vogt & Partner"), ("Marco Conti", "Conti Ristorante"),
    ("Aiko Mori", "Mori Dental Clinic"), ("Jordan Lee", "Fieldstone Realty"), ("Chloe Martin", "Martin Immobilier"),
    ("Erik Holm", "Holm Marine"), ("Grace Adeyemi", "Westbrook Library"), ("Ben Carter", "Carter Motors"),
]
ITEMS = [  # name, unit price range in the locale's main unit (x150 for yen)
    ("Consulting hours", 40, 180), ("A4 copier paper, box of 5 reams", 10, 45), ("Website maintenance (monthly)", 200, 900),
    ("Espresso beans 1 kg", 18, 32), ("Freight, 2 pallets", 250, 1200), ("Laptop stand", 25, 80),
    ("Catering, team lunch for 12", 150, 480), ("Annual software licence", 300, 2400), ("Brochure print run (500)", 120, 650),
    ("On-site repair call-out", 90, 260), ("Legal review of lease", 400, 1800), ("Toner cartridge, black", 40, 120),
]
ADDRESSES = {
    "us": "1450 Market St, Suite 300, Denver CO 80202", "uk": "12 Mill Lane, Bristol BS1 4QA",
    "de": "Industriestr. 4, 70565 Stuttgart", "fr": "18 rue des Tanneurs, 69002 Lyon",
    "nl": "Havenweg 21, 3011 AB Rotterdam", "it": "Via Tortona 27, 20144 Milano",
    "es": "Calle Mayor 9, 28013 Madrid", "fi": "Mannerheimintie 40, 00100 Helsinki",
    "jp": "2-14-1 Shiba, Minato-ku, Tokyo 105-0014", "ch": "Bahnhofstrasse 7, 8001 Zürich",
    "ca": "220 Water St, Vancouver BC V6B 1B6", "au": "5 Wharf Rd, Cairns QLD 4870",
    "se": "Storgatan 3, 903 26 Umeå",
}
FOOTERS = [
    "Goods remain the property of the seller until paid in full. Late payments accrue interest at 8% p.a.",
    "Thank you for your business! Questions about this invoice? Reply to this address within 14 days.",
    "Please quote the invoice number with your payment. Bank charges are the payer's responsibility.",
]
PAID_NOTES = ["Paid in full - thank you.", "Payment received with thanks.", "This invoice has been settled by card.",
              "No payment due: settled on order."]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]
# fmt: on


def render_date(d: datetime.date, style: str) -> str:
    month, abbr = MONTHS[d.month - 1], MONTHS[d.month - 1][:3]
    suffix = "th" if 10 <= d.day % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(d.day % 10, "th")
    return {
        "iso": d.isoformat(),
        "long_dm": f"{d.day} {month} {d.year}",
        "long_md": f"{month} {d.day}, {d.year}",
        "abbr_dm": f"{d.day} {abbr} {d.year}",
        "abbr_md": f"{abbr} {d.day}, {d.year}",
        "dash_abbr": f"{d.day:02d}-{abbr.upper()}-{d.year}",
        "dot": f"{d.day:02d}.{d.month:02d}.{d.year}",
        "slash_dmy": f"{d.day:02d}/{d.month:02d}/{d.year}",
        "slash_mdy": f"{d.month:02d}/{d.day:02d}/{d.year}",
        "ordinal_dm": f"{d.day}{suffix} {month} {d.year}",
        "ordinal_md": f"{month} {d.day}{suffix}, {d.year}",
        "ymd_slash": f"{d.year}/{d.month:02d}/{d.day:02d}",
    }[style]


def pick_date_style(rng: random.Random, styles: list[str], d: datetime.date) -> str:
    """Slash dates with day <= 12 read two ways; fall back to the locale's first style then."""
    style = rng.choice(styles)
    return styles[0] if style.startswith("slash") and d.day <= 12 else style


def render_amount(x: float, style: str) -> tuple[str, str]:
    """(amount text, currency surface) in the locale's notation."""
    us = f"{x:,.2f}"
    eu = us.replace(",", "_").replace(".", ",").replace("_", ".")
    whole = f"{round(x):,}"
    return {
        "dollar": (f"${us}", "$"),
        "code_us": (f"{{code}} {us}", "{code}"),
        "us_dollar": (f"US${us}", "US$"),
        "pound": (f"£{us}", "£"),
        "eu_suffix": (f"{eu} €", "€"),
        "eu_code": (f"EUR {eu}", "EUR"),
        "euro_prefix": (f"€{us}", "€"),
        "yen": (f"¥{whole}", "¥"),
        "code_jp": (f"JPY {whole}", "JPY"),
        "en": (f"{whole}円", "円"),
        "chf": (f"CHF {us.replace(',', chr(39))}", "CHF"),
        "ca_dollar": (f"CA${us}", "CA$"),
        "au_dollar": (f"A${us}", "A$"),
        "sek": (f"{eu.replace('.', ' ')} kr", "kr"),
    }[style]


def ocr(rng: random.Random, label: str) -> str:
    """OCR slips on labels only, never on values, so the gold stays recoverable from the text."""
    if rng.random() < 0.35:
        label = label.replace("I", "l", 1) if "I" in label else label.replace("o", "0", 1)
    return label.upper() if rng.random() < 0.5 else label


def make_facts(rng: random.Random, index: int) -> dict:
    vendor, loc = rng.choice(VENDORS)
    locale = LOCALES[loc]
    date = datetime.date(2022, 1, 1) + datetime.timedelta(days=rng.randint(0, 1300))
    jpy = locale["currency"] == "JPY"
    items = []
    for name, lo, hi in rng.sample(ITEMS, rng.randint(1, 4)):
        qty, unit = rng.randint(1, 6), rng.uniform(lo, hi) * (150 if jpy else 1)
        unit = round(unit) if jpy else round(unit, 2)
        items.append((name, qty, unit))
    subtotal = sum(q * u for _, q, u in items)
    tax = round(subtotal * locale["tax"]) if jpy else round(subtotal * locale["tax"], 2)
    total = round(subtotal + tax, 0 if jpy else 2)
    terms = rng.choice([14, 15, 30, 30, 45, 60])
    due = date + datetime.timedelta(days=terms) if rng.random() < 0.68 else None
    number = rng.choice(
        [
            f"INV-{date.year}-{index:04d}",
            f"{rng.randint(10000, 99999):06d}",
            f"A-{rng.randint(1000, 99999):05d}",
            f"{date.year}/{rng.randint(1, 999):03d}",
            f"RE{date.year % 100}-{rng.randint(100, 9999)}",
            f"SI{rng.randint(10000, 99999)}",
        ]
    )
    amount_style = rng.choice(locale["amounts"])
    code = locale["currency"]
    money = {
        key: render_amount(x, amount_style)[0].replace("{code}", code)
        for key, x in (("total", total), ("subtotal", subtotal), ("tax", tax))
    }
    currency_surface = render_amount(total, amount_style)[1].replace("{code}", code)
    items_text = [(n, q, render_amount(u, amount_style)[0].replace("{code}", code)) for n, q, u in items]
    contact, customer = rng.choice(CUSTOMERS)
    return {
        "vendor": vendor,
        "loc": loc,
        "date": date,
        "due": due,
        "terms": terms,
        "number": number,
        "total": total,
        "currency": code,
        "money": money,
        "currency_surface": currency_surface,
        "items": items_text,
        "tax_rate": locale["tax"],
        "contact": contact,
        "customer": customer,
        "date_text": render_date(date, pick_date_style(rng, locale["dates"], date)),
        "due_text": render_date(due, pick_date_style(rng, locale["dates"], due)) if due else None,
    }


def email(rng: random.Random, f: dict) -> str:
    first = f["contact"].split()[0]
    slug = f["vendor"].split()[0].lower().strip(",.")
    sent = f["date"] + datetime.timedelta(days=rng.randint(0, 3))
    due = (
        rng.choice(
            [
                f" Payment is due by {f['due_text']}.",
                f" Please settle it on or before {f['due_text']}.",
                f" Due date: {f['due_text']} (net {f['terms']}).",
            ]
        )
        if f["due"]
        else rng.choice(
            ["", " No action needed, this one is already paid.", " It was charged to the card on file."]
        )
    )
    body = rng.choice(
        [
            f"Hi {first},\n\nPlease find attached invoice {f['number']} dated {f['date_text']} for the work this month. "
            f"The total comes to {f['money']['total']} including tax.{due}\n\nBest regards,\nAccounts team\n{f['vendor']}",
            f"hey {first} - quick one: {f['vendor']} invoice {f['number']} ({f['date_text']}) for "
            f"{f['money']['total']} is in your inbox.{due} thanks!",
            f"Dear {f['contact']},\n\nThank you for your business. Our invoice no. {f['number']}, issued on "
            f"{f['date_text']}, totals {f['money']['total']} (subtotal {f['money']['subtotal']} plus "
            f"tax {f['money']['tax']}).{due}\n\nKind regards,\n{f['vendor']}\nBilling department",
        ]
    )
    if rng.random() < 0.3:
        body += (
            f"\n\n> On {render_date(sent - datetime.timedelta(days=1), 'abbr_dm')}, {f['contact']} wrote:\n"
            "> Could you resend the invoice? The PDF attachment would not open on my side.\n> Thanks"
        )
    header = f"From: billing@{slug}.example\nTo: {first.lower()}@customer.example\n"
    header += f"Date: {render_date(sent, 'abbr_dm')}\nSubject: Invoice {f['number']}\n\n"
    if rng.random() < 0.25:
        header = f"---------- Forwarded message ---------\n{header}"
        return f"FYI, forwarding for the books.\n\n{header}{body}"
    return header + body


def invoice(rng: random.Random, f: dict) -> str:
    sep = rng.choice(["  ", " | ", "   ", "\t"])
    lines = [
        f["vendor"].upper() if rng.random() < 0.3 else f["vendor"],
        ADDRESSES[f["loc"]],
        f"{ocr(rng, 'Invoice')} {ocr(rng, 'No.')}: {f['number']}{sep}{ocr(rng, 'Date')}: {f['date_text']}",
        f"{ocr(rng, 'Bill to')}: {f['customer']}, attn. {f['contact']}",
        "",
        sep.join([ocr(rng, "Description"), ocr(rng, "Qty"), ocr(rng, "Unit price")]),
    ]
    lines += [sep.join([name, str(qty), unit]) for name, qty, unit in f["items"]]
    lines += [
        f"{ocr(rng, 'Subtotal')}{sep}{f['money']['subtotal']}",
        f"{ocr(rng, 'Tax')} {f['tax_rate'] * 100:g}%{sep}{f['money']['tax']}",
        f"{ocr(rng, rng.choice(['Total', 'Total due', 'Amount due', 'Grand total']))}{sep}{f['money']['total']}",
    ]
    if f["due"]:
        lines.append(f"{ocr(rng, rng.choice(['Due date', 'Payment due', 'Pay by']))}: {f['due_text']}")
    elif rng.random() < 0.6:
        lines.append(rng.choice(PAID_NOTES))
    if rng.random() < 0.4:
        lines.append(rng.choice(FOOTERS))
    if rng.random() < 0.5:
        lines.append(
            f"IBAN DE{rng.randint(10, 99)} 5001 0517 {rng.randint(1000, 9999)} 0000 00 - ref {f['number']}"
        )
    return "\n".join(lines)


def order(rng: random.Random, f: dict) -> str:
    first = f["contact"].split()[0]
    placed = f["date"] - datetime.timedelta(days=rng.randint(1, 5))
    items = "\n".join(f"  {qty} x {name} @ {unit}" for name, qty, unit in f["items"])
    pay = (
        f"Payment terms: net {f['terms']}, due {f['due_text']}."
        if f["due"]
        else rng.choice(
            ["Your card ending 4242 has been charged.", "Paid via PayPal.", "Nothing left to pay."]
        )
    )
    address = f"\n{ADDRESSES[f['loc']]}" if rng.random() < 0.5 else ""
    return (
        f"{rng.choice(['Thanks for your order', 'Order confirmed', 'Your order is on its way'])}, {first}!\n\n"
        f"Order number: ORD-{rng.randint(100000, 999999)} (placed {render_date(placed, 'abbr_md')})\n{items}\n"
        f"Order total: {f['money']['total']}\n\nInvoice {f['number']} was issued on {f['date_text']} and is "
        f"attached as a PDF. {pay}\n\n{f['vendor']} - customer service{address}"
    )


def note(rng: random.Random, f: dict) -> str:
    due = (
        f"pay by {f['due_text']}"
        if f["due"]
        else rng.choice(["already paid", "no due date given", "prepaid"])
    )
    return rng.choice(
        [
            f"AP note: rcvd inv {f['number']} from {f['vendor']}, dated {f['date_text']}, amt {f['money']['total']}, {due}.",
            f"{f['vendor']} / invoice {f['number']} / {f['date_text']} / total {f['money']['total']} / {due}",
            f"Logged {f['vendor']} invoice {f['number']} of {f['date_text']} for {f['money']['total']} "
            f"(ordered by {f['contact']}) - {due}. Approve?",
        ]
    )


RENDERERS = {"email": email, "invoice": invoice, "order": order, "note": note}
WEIGHTS = {"email": 32, "invoice": 28, "order": 22, "note": 18}


def make_row(rng: random.Random, index: int) -> dict:
    f = make_facts(rng, index)
    kind = rng.choices(list(WEIGHTS), weights=list(WEIGHTS.values()))[0]
    text = RENDERERS[kind](rng, f)
    gold = {
        "vendor": f["vendor"],
        "invoice_number": f["number"],
        "date": f["date"].isoformat(),
        "total": f["total"],
        "currency": f["currency"],
        "due_date": f["due"].isoformat() if f["due"] else None,
    }
    evidence = {
        "vendor": f["vendor"],
        "invoice_number": f["number"],
        "date": f["date_text"],
        "total": f["money"]["total"],
        "currency": f["currency_surface"],
    }
    if f["due"]:
        evidence["due_date"] = f["due_text"]
    for key, surface in evidence.items():  # quote the text's own casing (OCR headers are upper case)
        at = text.lower().find(surface.lower())
        assert at >= 0, f"row {index}: {key} evidence {surface!r} not in text"
        evidence[key] = text[at : at + len(surface)]
    return {"id": f"x{index:04d}", "kind": kind, "text": text, "gold": gold, "evidence": evidence}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=250)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(f"extraction-data-{args.seed}")
    rows = [make_row(rng, i) for i in range(1, args.rows + 1)]
    OUT.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


if __name__ == "__main__":
    main()

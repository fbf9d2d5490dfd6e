"""The report as one self-contained HTML page: inline CSS, inline SVG charts, no scripts to run.

Nothing is fetched from anywhere (no CDN, no fonts), so the file can be mailed or archived and
still opens the same. The figures are embedded verbatim as JSON in
`<script type="application/json" id="report-data">`, which a script (or a test) reads back.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import date, timedelta
from html import escape

from ga4sync.ga4.windows import WINDOW_ORDER
from ga4sync.ops.report import LAG_BUCKETS, ReportData

PALETTE = ("#1a73e8", "#e8710a", "#188038", "#d93025", "#9334e6", "#12b5cb", "#f9ab00", "#5f6368")
CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem;color:#202124}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem}
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #dadce0;padding:.25rem .6rem;
text-align:left;font-size:.9rem}th{background:#f1f3f4}td.n{text-align:right}
.legend span{display:inline-block;margin-right:1rem;font-size:.85rem}
.legend i{display:inline-block;width:.8rem;height:.8rem;margin-right:.3rem;vertical-align:middle}
.muted{color:#5f6368;font-size:.85rem}
"""


def render_report(data: ReportData) -> str:
    """The whole page for `data`."""
    payload = json.dumps(data.to_json(), sort_keys=True)
    # `</script>` inside the element would end it early: escape `<`, `>`, `&` as JSON \u
    # escapes, which decode to the same strings.
    payload = payload.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    title = f"ga4sync report {data.period_from} to {data.period_to}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="muted">Generated {escape(data.generated_at)}. Days are UTC; sent events '
        "count on the day GA4 accepted them, skips and failures on the day they were "
        "captured.</p>",
        _totals(data),
        _money(data),
        f"<h2>Events sent per {bucket_name(len(data.days))}</h2>",
        _events_chart(data),
        _events_table(data),
        "<h2>Freshness (CRM change &rarr; GA4 sent)</h2>",
        _freshness(data),
        "<h2>GA4 windows of sent events</h2>",
        _windows(data),
        "<h2>Skipped, by reason</h2>",
        _skips(data),
        "<h2>Failures</h2>",
        _failures(data),
        "<h2>What the reasons and statuses mean</h2>",
        _glossary(),
        f'<script type="application/json" id="report-data">{payload}</script>',
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _totals(data: ReportData) -> str:
    cells = "".join(
        f"<tr><th>{escape(k)}</th><td class=n>{v}</td></tr>" for k, v in data.totals.items()
    )
    return f"<table>{cells}</table>"


def _money(data: ReportData) -> str:
    if not data.value_totals:
        return '<p class="muted">The events sent in this period carried no value.</p>'
    rows = "".join(
        f"<tr><td>{escape(currency)}</td><td class=n>{total:,.2f}</td></tr>"
        for currency, total in data.value_totals.items()
    )
    return (
        "<h2>Value sent to GA4</h2>"
        '<p class="muted">Sum of the <code>value</code> of the events GA4 accepted in this '
        "period, per currency.</p>"
        f"<table><tr><th>currency</th><th>total value</th></tr>{rows}</table>"
    )


GLOSSARY: tuple[tuple[str, str], ...] = (
    ("sent", "GA4 accepted the event."),
    (
        "no_rule",
        "The deal or lead moved between stages that no rule in the mapping file turns into a "
        "GA4 event. Nothing is wrong; add a rule if this move matters to marketing.",
    ),
    (
        "once_per_record",
        "The same conversion was already sent for this deal or lead (for example it was won, "
        "reopened and won again), and the rule says to count it only once.",
    ),
    (
        "no_client_id",
        "The CRM record has no Google Analytics client id, so GA4 could not tie it to a "
        "website visit. Usually the web form did not save the `_ga` cookie into the CRM.",
    ),
    (
        "bad_client_id",
        "The client-id field holds something that is not a GA client id (an email, a name). "
        "Check what the web form writes into that field.",
    ),
    (
        "too_old",
        "The stage change happened more than 72 hours before it could be sent; GA4 refuses "
        "events backdated further. They can be sent dated 72 hours ago on request.",
    ),
    ("pending", "Captured and waiting for the next send."),
    ("retry", "GA4 could not be reached or asked us to wait; it is sent again automatically."),
    (
        "unknown",
        "The request went out but no answer came back, so GA4 may or may not have the event. "
        "A person checks GA4 and then resends or discards it; it is never resent on its own, "
        "to avoid counting a conversion twice.",
    ),
    ("dead", "Sending failed too many times; a person decides whether to resend it."),
    (
        "invalid",
        "The event breaks a GA4 or mapping rule (for example a value that is not a number), "
        "or the CRM record could not be read. The reason names the field to fix.",
    ),
    ("discarded", "A person decided this event must never be sent."),
)
"""Each skip reason and outbox status in words a marketing manager reads."""


def _glossary() -> str:
    rows = "".join(
        f"<tr><th>{escape(term)}</th><td>{escape(words)}</td></tr>" for term, words in GLOSSARY
    )
    return f'<table class="glossary">{rows}</table>'


def _series(data: ReportData) -> list[str]:
    """One stacked series per connector/event pair, biggest first."""
    totals: Counter[str] = Counter()
    for d in data.events_per_day:
        totals[f"{d.connector} / {d.event}"] += d.count
    return [name for name, _ in totals.most_common()]


CHART_WIDTH = 880
"""The widest a chart gets, in pixels: it fits a laptop browser window and an A4 page
printed in landscape, whatever the period."""
DAILY_UP_TO = 62
"""Periods up to about two months get a bar per day; longer ones a bar per week, and past
two years a bar per month, so bars stay wide enough to read and hover."""
WEEKLY_UP_TO = 730


def bucket_of(day: str, days_in_period: int) -> str:
    """The first day of the bar `day` counts in: itself, its ISO week's Monday, or its month."""
    if days_in_period <= DAILY_UP_TO:
        return day
    d = date.fromisoformat(day)
    if days_in_period <= WEEKLY_UP_TO:
        return (d - timedelta(days=d.weekday())).isoformat()
    return d.replace(day=1).isoformat()


def bucket_name(days_in_period: int) -> str:
    if days_in_period <= DAILY_UP_TO:
        return "day"
    return "week" if days_in_period <= WEEKLY_UP_TO else "month"


def _events_chart(data: ReportData) -> str:
    series = _series(data)
    if not series:
        return '<p class="muted">No events were sent in this period.</p>'
    n_days = len(data.days)
    unit = bucket_name(n_days)
    buckets = list(dict.fromkeys(bucket_of(day, n_days) for day in data.days))
    grid: Counter[tuple[str, str]] = Counter()
    for d in data.events_per_day:
        grid[(bucket_of(d.day, n_days), f"{d.connector} / {d.event}")] += d.count
    per_bucket = [sum(grid[(b, s)] for s in series) for b in buckets]
    top = max(max(per_bucket), 1)
    pad, height = 56, 240
    width = min(CHART_WIDTH, max(320, 40 * len(buckets) + pad + 10))
    bar = (width - pad - 10) / len(buckets)
    base = height - 24
    plot = base - 16
    shapes = [
        f'<line x1="{pad}" y1="{base}" x2="{width - 5}" y2="{base}" stroke="#5f6368"/>',
        f'<line x1="{pad}" y1="{base - plot}" x2="{pad}" y2="{base}" stroke="#5f6368"/>',
        f'<text x="{pad - 4}" y="{base - plot + 4}" font-size="10" text-anchor="end">{top}</text>',
        f'<text x="{pad - 4}" y="{base}" font-size="10" text-anchor="end">0</text>',
        f'<text x="12" y="{base - plot / 2:.0f}" font-size="10" text-anchor="middle" '
        f'transform="rotate(-90 12 {base - plot / 2:.0f})">events sent per {unit}</text>',
    ]
    label_every = max(1, -(-len(buckets) // 12))
    for i, bucket in enumerate(buckets):
        x = pad + i * bar + 1
        y = float(base)
        for k, name in enumerate(series):
            count = grid[(bucket, name)]
            if not count:
                continue
            h = plot * count / top
            y -= h
            shapes.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(bar - 2, 1):.1f}" height="{h:.1f}" '
                f'fill="{PALETTE[k % len(PALETTE)]}"><title>{unit} of {escape(bucket)} '
                f"{escape(name)}: {count}</title></rect>"
            )
        if i % label_every == 0:
            label = bucket[:7] if unit == "month" else bucket[5:]
            shapes.append(
                f'<text x="{x + bar / 2:.1f}" y="{height - 8}" font-size="9" '
                f'text-anchor="middle">{escape(label)}</text>'
            )
    legend = "".join(
        f'<span><i style="background:{PALETTE[k % len(PALETTE)]}"></i>{escape(name)}</span>'
        for k, name in enumerate(series)
    )
    note = (
        f'<p class="muted">One bar per {unit}'
        + ("" if unit == "day" else f" (labelled with its first day), over {n_days} days")
        + ".</p>"
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'role="img" aria-label="events sent per {unit}">{"".join(shapes)}</svg>'
        f'<div class="legend">{legend}</div>{note}'
    )


def _events_table(data: ReportData) -> str:
    rows = "".join(
        f"<tr><td>{escape(d.day)}</td><td>{escape(d.connector)}</td><td>{escape(d.event)}</td>"
        f"<td class=n>{d.count}</td></tr>"
        for d in data.events_per_day
    )
    return (
        f"<table><tr><th>day</th><th>connector</th><th>event</th><th>sent</th></tr>{rows}</table>"
    )


def _hbars(items: list[tuple[str, int]], label: str) -> str:
    """A horizontal bar chart: one labelled bar per item."""
    if not items:
        return ""
    top = max(max(n for _, n in items), 1)
    row, left, width = 22, 170, 560
    shapes = []
    for i, (name, n) in enumerate(items):
        y = i * row + 4
        w = (width - left - 60) * n / top
        shapes.append(
            f'<text x="{left - 6}" y="{y + 13}" font-size="11" text-anchor="end">'
            f"{escape(name[:28])}</text>"
            f'<rect x="{left}" y="{y}" width="{max(w, 1 if n else 0):.1f}" height="{row - 6}" '
            f'fill="{PALETTE[i % len(PALETTE)]}"><title>{escape(name)}: {n}</title></rect>'
            f'<text x="{left + w + 4:.1f}" y="{y + 13}" font-size="11">{n}</text>'
        )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{len(items) * row + 8}"'
        f' role="img" aria-label="{escape(label)}">{"".join(shapes)}</svg>'
    )


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 90:
        return f"{value:.0f} s"
    if value < 5400:
        return f"{value / 60:.1f} min"
    return f"{value / 3600:.1f} h"


def _freshness(data: ReportData) -> str:
    f = data.freshness
    if not f.events:
        return '<p class="muted">No events were sent in this period.</p>'
    rows = [("all connectors", f), *data.freshness_by_connector.items()]
    table = "".join(
        f"<tr><td>{escape(name)}</td><td class=n>{fig.events}</td><td class=n>"
        f"{_seconds(fig.p50_s)}</td><td class=n>{_seconds(fig.p90_s)}</td><td class=n>"
        f"{_seconds(fig.p99_s)}</td><td class=n>{_seconds(fig.max_s)}</td></tr>"
        for name, fig in rows
    )
    chart = _hbars([(label, f.histogram.get(label, 0)) for label, _ in LAG_BUCKETS], "freshness")
    return (
        "<table><tr><th></th><th>sent</th><th>p50</th><th>p90</th><th>p99</th><th>max</th></tr>"
        f"{table}</table>{chart}"
    )


def _windows(data: ReportData) -> str:
    if not data.windows:
        return '<p class="muted">No events were sent in this period.</p>'
    totals = Counter[str]()
    for counts in data.windows.values():
        totals.update(counts)
    chart = _hbars([(w.value, totals[w.value]) for w in WINDOW_ORDER], "GA4 windows")
    head = "".join(f"<th>{w.value}</th>" for w in WINDOW_ORDER)
    rows = "".join(
        f"<tr><td>{escape(name)}</td>"
        + "".join(f"<td class=n>{counts.get(w.value, 0)}</td>" for w in WINDOW_ORDER)
        + f"<td class=n>{data.session_joinable.get(name, 0)}</td></tr>"
        for name, counts in data.windows.items()
    )
    return (
        '<p class="muted">within_24h: can join the web session when a session id was sent; '
        "within_72h: backdated by GA4; too_old: sent clamped to now-72h on request.</p>"
        f"{chart}<table><tr><th>connector</th>{head}<th>joinable to session</th></tr>{rows}"
        "</table>"
    )


def _skips(data: ReportData) -> str:
    if not data.skips:
        return '<p class="muted">Nothing was skipped.</p>'
    totals = Counter[str]()
    for r in data.skips:
        totals[r.reason] += r.count
    rows = "".join(
        f"<tr><td>{escape(r.connector)}</td><td>{escape(r.reason)}</td>"
        f"<td class=n>{r.count}</td></tr>"
        for r in data.skips
    )
    return (
        _hbars(totals.most_common(), "skips by reason")
        + f"<table><tr><th>connector</th><th>reason</th><th>rows</th></tr>{rows}</table>"
    )


def _failures(data: ReportData) -> str:
    if not data.failures and not data.failed_attempts:
        return '<p class="muted">No failures.</p>'
    rows = "".join(
        f"<tr><td>{escape(f.connector)}</td><td>{escape(f.status)}</td><td class=n>{f.count}"
        f"</td><td>{escape(f.example)}</td></tr>"
        for f in data.failures
    )
    attempts = "".join(
        f"<tr><td>{escape(a.day)}</td><td>{escape(a.outcome)}</td>"
        f"<td>{a.http_status if a.http_status is not None else '-'}</td>"
        f"<td class=n>{a.count}</td></tr>"
        for a in data.failed_attempts
    )
    return (
        "<table><tr><th>connector</th><th>status now</th><th>rows</th><th>for example</th></tr>"
        f"{rows}</table><h3>Attempts that did not succeed</h3>"
        "<table><tr><th>day</th><th>outcome</th><th>HTTP</th><th>attempts</th></tr>"
        f"{attempts}</table>"
    )

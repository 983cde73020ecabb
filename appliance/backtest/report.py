"""The backtest report: ``results`` (the ``--json`` object), report.json and a self-contained report.html.

A pure function of the ``BacktestRecord`` (numbers in ``metrics.py``, with their units and
formulas; plots in ``plots.py``). Deterministic: equal records give byte-identical files; the
wall time of the run (``seconds``, ``msgs_per_s``) is in the JSON's results only, never in the
HTML, so two runs of the same inputs give the same page and JSON that differs in those two fields.
"""
from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from . import metrics, plots
from .record import MARKOUT_HORIZONS_S, BacktestRecord

WALL_TIME_FIELDS = ("seconds", "msgs_per_s")        # the only fields two runs of one input may differ in
UNITS = {
    "money": "dollars, rounded half-even to cents (pnl_*, fees, fees_paid, rebates, turnover, max_drawdown)",
    "markouts": "dollars per share, rounded to millionths; positive = the market moved our way after the fill",
    "shares": "shares (avg_inventory time-weighted, to 1/100 share)",
    "ratios": "fractions in [0, 1] to 6 decimals (fill_ratio, maker_share, taker_share)",
    "sharpe": metrics.SHARPE_FORMULA,
    "time": "event time, ns since midnight UTC of the day (the ITCH timestamp)",
}


def _results(record: BacktestRecord, total: dict, per_symbol: dict[str, dict]) -> dict:
    seconds = round(record.seconds, 3)
    return {
        "messages": record.messages,
        "seconds": seconds,
        "msgs_per_s": round(record.messages / record.seconds) if record.seconds > 0 else None,
        "orders": total["orders"],
        "fills": total["fills"],
        "pnl_gross": total["pnl_gross"],
        "pnl_net": total["pnl_net"],
        "fees": total["fees"],
        "sharpe": total["sharpe"],
        "max_drawdown": total["max_drawdown"],
        "markouts": total["markouts"],
        "refusals": total["refusals"],
        "symbols": per_symbol,
    }


def results(record: BacktestRecord) -> dict:
    """The issue's ``results`` object (what ``appliance backtest --json`` prints under "results")."""
    total, per_symbol = metrics.all_numbers(record)
    return _results(record, total, per_symbol)


def document(record: BacktestRecord) -> dict:
    """report.json: the results, the total's every number, the run it describes and the units."""
    total, per_symbol = metrics.all_numbers(record)
    return {
        "results": _results(record, total, per_symbol),
        "total": total,
        "run": {
            "day_file": record.day_file, "strategy": record.strategy, "seed": record.seed,
            "symbols": list(record.symbols), "start_ns": record.start_ns, "end_ns": record.end_ns,
            "intents": record.intents, "warnings": list(record.warnings),
        },
        "units": UNITS,
    }


def write_report(record: BacktestRecord, directory) -> tuple[Path, Path]:
    """report.json and report.html in ``directory`` (made if missing); returns their paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    doc = document(record)
    json_path, html_path = directory / "report.json", directory / "report.html"
    json_path.write_text(json.dumps(doc, indent=2) + "\n")
    html_path.write_text(render_html(record, doc))
    return json_path, html_path


# ---------------------------------------------------------------- the page

def _clock(time_ns: int) -> str:
    seconds, ns = divmod(time_ns, 1_000_000_000)
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}.{ns // 1_000_000:03d}"


def _money(value) -> str:
    return "n/a" if value is None else (f"-${-value:,.2f}" if value < 0 else f"${value:,.2f}")


def _per_share(value) -> str:
    return "n/a" if value is None else f"{value:+.6f}"


def _share(value) -> str:
    return "n/a" if value is None else f"{value * 100:.2f}%"


def _plain(value) -> str:
    return "n/a" if value is None else (f"{value:,}" if isinstance(value, int) else f"{value:,.4g}"
                                        if isinstance(value, float) else str(value))


# (key, label, formatter) of the numbers the tables show, in order
ROWS = (
    ("orders", "orders", _plain), ("fills", "fills", _plain), ("fill_ratio", "fill ratio", _share),
    ("shares_bought", "shares bought", _plain), ("shares_sold", "shares sold", _plain),
    ("maker_share", "maker share", _share), ("taker_share", "taker share", _share),
    ("turnover", "turnover", _money), ("pnl_gross", "gross P&L", _money), ("fees_paid", "fees paid", _money),
    ("rebates", "rebates", _money), ("fees", "net fees", _money), ("pnl_net", "net P&L", _money),
    ("sharpe", "Sharpe (annualised)", _plain), ("max_drawdown", "max drawdown", _money),
    ("avg_inventory", "average inventory", _plain), ("max_inventory", "max inventory", _plain),
) + tuple((("markouts", metrics.markout_key(h)), f"markout {h} s ($/share)", _per_share)
          for h in MARKOUT_HORIZONS_S)

STYLE = """
body{font-family:sans-serif;margin:2em;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1.5em}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}
th:first-child,td:first-child{text-align:left}
thead th{background:#eee}
img{max-width:100%;display:block;margin:0.5em 0 1.5em}
.warn{color:#a00}
code{background:#f4f4f4}
"""


def _value(numbers: dict, key):
    return numbers[key[0]][key[1]] if isinstance(key, tuple) else numbers.get(key)


def _table(head: list[str], rows: list[list[str]]) -> str:
    cells = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{cells}</tr></thead><tbody>{body}</tbody></table>"


def _image(title: str, png: bytes) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<h3>{html.escape(title)}</h3><img alt="{html.escape(title)}" src="data:image/png;base64,{data}">'


def render_html(record: BacktestRecord, doc: dict) -> str:
    """The self-contained page: no external URL, the plots inline as PNG data."""
    total, per_symbol = doc["total"], doc["results"]["symbols"]
    symbols = list(per_symbol)
    numbers_head = ["", "total"] + symbols
    numbers_rows = [[label, fmt(_value(total, key))] + [fmt(_value(per_symbol[s], key)) for s in symbols]
                    for key, label, fmt in ROWS]
    numbers_rows.append(["final position (shares)", ""] + [_plain(per_symbol[s]["position"]) for s in symbols])
    reasons = sorted(set(total["refusals"]).union(*(per_symbol[s]["refusals"] for s in symbols)))
    refusal_rows = [[reason, _plain(total["refusals"].get(reason, 0))]
                    + [_plain(per_symbol[s]["refusals"].get(reason, 0)) for s in symbols] for reason in reasons]
    run = doc["run"]
    total_curve, _ = metrics.curves(record)
    info = [
        ["day file", run["day_file"]], ["strategy", run["strategy"]], ["seed", str(run["seed"])],
        ["symbols", ", ".join(run["symbols"])],
        ["event time", f"{_clock(run['start_ns'])} to {_clock(run['end_ns'])} UTC"],
        ["ITCH messages read", _plain(record.messages)], ["order intents", _plain(run["intents"])],
    ]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Backtest {html.escape(record.day_file)} {html.escape(record.strategy)}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>Backtest: {html.escape(record.strategy)} on {html.escape(record.day_file)}</h1>",
        _table(["run", ""], info),
    ]
    if run["warnings"]:
        parts.append("<h2>Warnings</h2><ul>" + "".join(f'<li class="warn">{html.escape(w)}</li>'
                                                      for w in run["warnings"]) + "</ul>")
    parts += [
        "<h2>Results</h2>", _table(numbers_head, numbers_rows),
        "<h2>Risk refusals by reason</h2>",
        _table(["reason", "total"] + symbols, refusal_rows) if reasons else "<p>none</p>",
        "<h2>Plots</h2>",
        _image("Equity curve", plots.equity_png(total_curve)),
        _image("Drawdown", plots.drawdown_png(total_curve)),
        _image("Inventory per symbol", plots.inventory_png(record, symbols)),
        _image("Fill markouts", plots.markouts_png(total, per_symbol)),
        "<h2>Definitions</h2><ul>",
        *(f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>" for k, v in UNITS.items()),
        "</ul>",
        f"<pre>{html.escape(metrics.__doc__.strip())}</pre>",
        "</body></html>",
        "",
    ]
    return "\n".join(parts)


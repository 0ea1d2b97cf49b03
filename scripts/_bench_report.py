"""Results bookkeeping and plain-text tables for scripts/bench."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from _bench_clients import median, percentile

PEERS = ("smtp-sink", "aiosmtpd", "go-badsmtp", "baseline")
WORKERS = "badsmtp-workers"  # badsmtp --workers (multi-process), when it has that option
# Whose ratios against the peers get columns; short names keep the ratio headers narrow.
OURS = ("badsmtp", WORKERS)
SHORT = {
    "badsmtp": "bs",
    WORKERS: "wk",
    "smtp-sink": "sink",
    "aiosmtpd": "aio",
    "go-badsmtp": "go",
    "baseline": "base",
}

# (key, label, unit, better)
ROWS = (
    ("persist", "1 persistent-connection throughput", "msg/s", "higher"),
    ("perconn", "2 one message per connection", "msg/s=conn/s", "higher"),
    ("churn", "3 connection churn (220, QUIT, 221)", "conn/s", "higher"),
    ("lat50", "4 transaction latency p50, same CPU", "ms", "lower"),
    ("lat99", "4 transaction latency p99, same CPU", "ms", "lower"),
    ("noop50", "4 NOOP round trip p50, same CPU", "ms", "lower"),
    ("xlat50", "4 transaction latency p50, cross CPU", "ms", "lower"),
    ("xlat99", "4 transaction latency p99, cross CPU", "ms", "lower"),
    ("xnoop50", "4 NOOP round trip p50, cross CPU", "ms", "lower"),
    ("spawn", "5 spawn to first 220", "ms", "lower"),
    ("inproc", "6 serve_in_thread()+stop()", "ms", "lower"),
    ("inproc_total", "6 BadSMTP()+serve_in_thread()+stop()", "ms", "lower"),
    ("burst_greeted", "9 burst: greeted of {burst}", "conn", "higher"),
    ("burst_greet_s", "9 burst: time to greet all", "s", "lower"),
    ("burst_rss", "9 burst: RSS per held connection", "KiB", "lower"),
    ("burst_close", "9 burst: close rate", "conn/s", "higher"),
)


@dataclass
class Results:
    values: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    failed: dict[str, dict[str, int]] = field(default_factory=dict)  # -> note number
    notes: list[str] = field(default_factory=list)

    def add(self, target: str, key: str, value: float) -> None:
        self.values.setdefault(target, {}).setdefault(key, []).append(value)

    def fail(self, target: str, keys, reason: str) -> None:
        try:
            number = self.notes.index(f"{target}: {reason}") + 1
        except ValueError:
            self.notes.append(f"{target}: {reason}")
            number = len(self.notes)
        for key in keys:
            self.failed.setdefault(target, {}).setdefault(key, number)
            self.values.get(target, {}).pop(key, None)

    def median(self, target: str, key: str) -> float | None:
        if key in self.failed.get(target, {}):
            return None
        samples = self.values.get(target, {}).get(key)
        return median(samples) if samples else None


def _num(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if math.isinf(value):
        return "not all"  # load 9: some clients were not greeted before the deadline
    if unit in ("s", "KiB"):
        return f"{value:.2f}" if unit == "s" else f"{value:.1f}"
    if unit == "ms":
        return f"{value:.3f}" if value < 1 else f"{value:.2f}" if value < 10 else f"{value:.1f}"
    return f"{value:,.0f}"


def _table(rows: list[list[str]], right_from: int = 1) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    out = []
    for n, row in enumerate(rows):
        cells = [
            c.ljust(w) if i < right_from else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths))
        ]
        out.append("  ".join(cells).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def _cell(res: Results, target: str, key: str, unit: str) -> str:
    if key in res.failed.get(target, {}):
        return f"failed[{res.failed[target][key]}]"
    return _num(res.median(target, key), unit)


def ratio(res: Results, key: str, peer: str, ours: str = "badsmtp") -> float | None:
    mine, theirs = res.median(ours, key), res.median(peer, key)
    if mine is None or not theirs or math.isinf(mine) or math.isinf(theirs):
        return None
    return mine / theirs


def _ratio(res: Results, key: str, peer: str, ours: str = "badsmtp") -> str:
    value = ratio(res, key, peer, ours)
    return "-" if value is None else f"{value:.2f}x"


def _ratio_columns(targets: list[str]) -> list[tuple[str, str]]:
    """(ours, peer) for every ratio column: each of OURS against every peer in the run."""
    columns = []
    for ours in (t for t in OURS if t in targets):
        peers = [p for p in (*PEERS, "badsmtp") if p in targets and p != ours]
        columns += [(ours, peer) for peer in peers]
    return columns


def main_table(res: Results, targets: list[str], burst: int = 0) -> str:
    header = ["load", "unit", "better", *targets]
    columns = _ratio_columns(targets)
    header += [f"{SHORT[ours]}/{SHORT[peer]}" for ours, peer in columns]
    rows = [header]
    for key, label, unit, better in ROWS:
        inproc = key.startswith("inproc")
        if (inproc and "badsmtp" not in targets) or (key.startswith("burst") and not burst):
            continue
        row = [label.format(burst=burst), unit, better]
        for target in targets:
            row.append("n/a" if inproc and target != "badsmtp" else _cell(res, target, key, unit))
        row += ["-" if inproc else _ratio(res, key, peer, ours) for ours, peer in columns]
        rows.append(row)
    names = sorted({name for column in columns for name in column}, key=list(SHORT).index)
    legend = ", ".join(f"{SHORT[name]} = {name}" for name in names)
    return _table(rows, right_from=3) + (f"\nratio columns: {legend}" if columns else "")


QUIET = "badsmtp-quiet"  # load 8: badsmtp at --log-level ERROR
INSPECT = "badsmtp-http"  # load 8: badsmtp with --http-port 0 (the inspection API)


def logging_cost(res: Results) -> float | None:
    """Load 8: how much of load 1's throughput the default level (INFO)
    costs against --log-level ERROR, in percent."""
    info, quiet = res.median("badsmtp", "persist"), res.median(QUIET, "persist")
    return (1 - info / quiet) * 100 if info is not None and quiet else None


def inspection_cost(res: Results) -> float | None:
    """Load 8: how much of load 1's throughput --http-port costs, in percent."""
    plain, http = res.median("badsmtp", "persist"), res.median(INSPECT, "persist")
    return (1 - http / plain) * 100 if http is not None and plain else None


def variants_table(res: Results) -> str:
    """Load 8 (badsmtp only): load 1 as configured and in each variant, the
    samples, and what the default level and the inspection API cost."""
    rows = [["load 1 (badsmtp only)", "unit", "median", "samples"]]
    for target, label in (
        ("badsmtp", "log level INFO (default)"),
        (QUIET, "log level ERROR"),
        (INSPECT, "--http-port 0 (INFO)"),
    ):
        if target == INSPECT and target not in res.values and target not in res.failed:
            continue  # a badsmtp without the inspection API
        samples = res.values.get(target, {}).get("persist") or []
        if "persist" in res.failed.get(target, {}):
            median_cell = f"failed[{res.failed[target]['persist']}]"
        else:
            median_cell = _num(median(samples), "msg/s") if samples else "-"
        rows.append([f"8 {label}", "msg/s", median_cell,
                     " ".join(_num(v, "msg/s") for v in samples) or "-"])  # fmt: skip
    for label, cost in (("INFO", logging_cost(res)), ("--http-port", inspection_cost(res))):
        if cost is not None or label == "INFO":
            rows.append([f"8 cost of {label}", "%", "-" if cost is None else f"{cost:.1f}", ""])
    return _table(rows, right_from=2)


def samples_block(res: Results, targets: list[str]) -> str:
    lines = []
    for target in targets:
        for key, _label, unit, _better in ROWS:
            samples = res.values.get(target, {}).get(key)
            if not samples or key in res.failed.get(target, {}):
                continue
            if key.startswith("inproc"):
                shown = (
                    f"n={len(samples)} min {_num(min(samples), unit)} "
                    f"p90 {_num(percentile(samples, 90), unit)} "
                    f"max {_num(max(samples), unit)}"
                )
            else:
                shown = " ".join(_num(v, unit) for v in samples)
            lines.append(f"  {target:<15} {key:<13} {shown}")
    return "\n".join(lines)


# Load 7: (key, label, unit, better); the plan rows are badsmtp's alone.
TLS_ROWS = (
    ("tls_implicit", "7 implicit TLS: handshake + transaction + QUIT", "trans/s", "higher"),
    ("tls_starttls", "7 STARTTLS: EHLO, STARTTLS, handshake, transaction", "trans/s", "higher"),
    ("plan_start", "7 full 309-listener plan: serve_in_thread()", "ms", "lower"),
    ("plan_stop", "7 full 309-listener plan: stop()", "ms", "lower"),
)
TLS_PEER = "aiosmtpd"


def tls_table(res: Results) -> str:
    """Load 7: badsmtp's medians with min and max of its samples, and aiosmtpd's TLS."""
    rows = [["load 7", "unit", "better", "badsmtp", "min", "max", TLS_PEER, f"badsmtp/{TLS_PEER}"]]
    for key, label, unit, better in TLS_ROWS:
        samples = res.values.get("badsmtp", {}).get(key) or []
        cells = [_cell(res, "badsmtp", key, unit), "-", "-"]
        if samples and key not in res.failed.get("badsmtp", {}):
            cells[1:] = [_num(min(samples), unit), _num(max(samples), unit)]
        if key.startswith("plan"):
            cells += ["n/a", "-"]
        else:
            cells += [_cell(res, TLS_PEER, key, unit), _ratio(res, key, TLS_PEER)]
        rows.append([label, unit, better, *cells])
    return _table(rows, right_from=3)

"""Turn benchmark results into a Markdown report, goal checks and a PNG chart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

Table = dict[str, dict[str, Any]]

OURS = "gatewayasgi"
SOCKETIO = "gatewayasgi-socketio"
"""gatewayasgi serving the same gateway to Socket.IO clients (``docs/socketio.md``)."""
SOCKETIO_PEER = "python-socketio"
SOCKETIO_GOAL_SERVERS = ("hypercorn", "uvicorn")
"""Where the Socket.IO goals apply: echo >= 3x python-socketio, fan-out p99 >= 5x lower."""


def one_line(results: dict[str, dict[str, Any]]) -> str:
    parts = []
    for scenario, result in results.items():
        if "error" in result:
            parts.append(f"{scenario}: ERROR {result['error'][:80]}")
        elif scenario == "echo":
            parts.append(f"echo {result['msgs_per_s']:,.0f}/s p99 {result['p99_ms']:.1f}ms")
        elif scenario in ("fanout", "stalled", "redis"):
            parts.append(
                f"{scenario} p50 {result['p50_ms']:.1f} p99 {result['p99_ms']:.1f}ms"
                + (f" ({result['timeouts']} timeouts)" if result.get("timeouts") else "")
            )
        elif scenario in ("memory", "10k"):
            parts.append(
                f"{scenario} {result['mib_per_1000']:.1f} MiB/1000"
                + (f" {result['connected']} conns" if scenario == "10k" else "")
            )
    return "; ".join(parts)


def _get(table: Table, scenario: str, server: str, peer: str) -> dict[str, Any] | None:
    result = table.get(f"{scenario}|{server}|{peer}")
    return None if result is None or "error" in result else result


def _cell(result: dict[str, Any] | None, key: str, fmt: str, base: float | None = None) -> str:
    if result is None or result.get(key) is None:
        return "n/a"
    text = format(result[key], fmt)
    if base:
        text += f" ({result[key] / base:.2f})"
    return text


def _fanout_cell(result: dict[str, Any] | None) -> str:
    if result is None:
        return "n/a"
    if result.get("timeouts"):
        return f"stalled ({result['timeouts']} publishes > 2 s)"
    return f"{result['p50_ms']:.1f} / {result['p99_ms']:.1f}"


def markdown(table: Table, meta: dict[str, Any], servers: list[str], peers: list[str]) -> str:
    lines = [
        "# gatewayasgi benchmarks",
        "",
        f"{meta['date']}, {meta['machine']}. Servers pinned to core 0, the picows load "
        f"generator to core 1 (pinned: {meta['pinned']}); one worker process per server. "
        f"Medians of {meta['reps']} interleaved repetitions; echo {meta['echo_duration_s']:.0f} s "
        f"per run, fan-out {meta['fanout_frames']} publishes per run. Took {meta['minutes']} min.",
        "",
        "Versions: " + ", ".join(f"{name} {value}" for name, value in meta["versions"].items()),
        "",
    ]
    header = "| server | " + " | ".join(peers) + " |"
    rule = "|---" * (len(peers) + 1) + "|"

    def section(title: str, note: str, row: Any) -> None:
        if not any(table.get(f"{title}|{server}|{peer}") for server in servers for peer in peers):
            return
        lines.extend([f"## {note}", "", header, rule])
        for server in servers:
            lines.append(f"| {server} | " + " | ".join(row(server, peer) for peer in peers) + " |")
        lines.append("")

    def echo_row(server: str, peer: str) -> str:
        base = _get(table, "echo", server, "raw")
        result = _get(table, "echo", server, peer)
        return _cell(result, "msgs_per_s", ",.0f", base["msgs_per_s"] if base else None)

    section("echo", "Echo round trips/s, 50 connections (ratio to raw)", echo_row)
    section(
        "echo",
        "Echo latency p50 / p99 ms",
        lambda s, p: (
            f"{r['p50_ms']:.2f} / {r['p99_ms']:.2f}" if (r := _get(table, "echo", s, p)) else "n/a"
        ),
    )
    section(
        "fanout",
        "Fan-out to 500 members: p50 / p99 ms until every member has the frame",
        lambda s, p: _fanout_cell(_get(table, "fanout", s, p)),
    )
    section(
        "fanout",
        "Fan-out deliveries/s",
        lambda s, p: _cell(_get(table, "fanout", s, p), "deliveries_per_s", ",.0f"),
    )
    section(
        "stalled",
        "Fan-out with one stalled member (stops reading): p50 / p99 ms for the 500 others",
        lambda s, p: _fanout_cell(_get(table, "stalled", s, p)),
    )

    def memory_row(server: str, peer: str) -> str:
        base = _get(table, "memory", server, "raw")
        result = _get(table, "memory", server, peer)
        return _cell(result, "mib_per_1000", ".1f", base["mib_per_1000"] if base else None)

    section("memory", "Memory per 1000 idle connections, MiB of RSS (ratio to raw)", memory_row)

    def big_row(server: str, peer: str) -> str:
        result = _get(table, "10k", server, peer)
        if result is None:
            error = table.get(f"10k|{server}|{peer}", {}).get("error")
            return f"failed: {error[:40]}" if error else "n/a"
        return (
            f"{result['connected']:,} in {result['connect_s']:.1f} s, "
            f"{result['answered']:,} echoed, {result['mib_per_1000']:.1f} MiB/1000"
        )

    section("10k", "10,000 concurrent connections on one process", big_row)
    redis_rows = [
        (server, peer, result)
        for key, result in table.items()
        if key.startswith("redis|")
        for _, server, peer in [key.split("|")]
    ]
    if redis_rows:
        lines.extend(
            [
                "## Fan-out to 500 members across 2 processes through Redis",
                "",
                "| server | peer | p50 / p99 ms | deliveries/s | one process, p50 / p99 ms |",
                "|---|---|---|---|---|",
            ]
        )
        for server, peer, result in sorted(redis_rows):
            single = _fanout_cell(_get(table, "fanout", server, peer))
            if "error" in result:
                lines.append(f"| {server} | {peer} | failed: {result['error'][:60]} | | {single} |")
                continue
            lines.append(
                f"| {server} | {peer} | {_fanout_cell(result)} | "
                f"{result['deliveries_per_s']:,.0f} | {single} |"
            )
        lines.append("")
    lines.extend(socketio_section(table, servers))
    lines.extend(["## Goals", "", *goals(table, servers), ""])
    return "\n".join(lines)


def goals(table: Table, servers: list[str]) -> list[str]:
    """One line per goal and server: the measured figure and whether it is met."""
    out = []
    for server in servers:
        ours = _get(table, "echo", server, OURS)
        raw = _get(table, "echo", server, "raw")
        sio = _get(table, "echo", server, "python-socketio")
        if ours and raw:
            ratio = ours["msgs_per_s"] / raw["msgs_per_s"]
            out.append(
                f"- {server}: echo {ratio:.3f}x raw (goal >= 0.95): {_verdict(ratio >= 0.95)}"
            )
        if ours and sio:
            ratio = ours["msgs_per_s"] / sio["msgs_per_s"]
            out.append(
                f"- {server}: echo {ratio:.2f}x python-socketio (goal >= 3): {_verdict(ratio >= 3)}"
            )
        ours_f = _get(table, "fanout", server, OURS)
        bests = [
            r["p99_ms"]
            for peer in ("raw", "raw-concurrent")
            if (r := _get(table, "fanout", server, peer)) and not r.get("timeouts")
        ]
        if ours_f and bests:
            best = min(bests)
            out.append(
                f"- {server}: fan-out p99 {ours_f['p99_ms']:.1f} ms vs best raw {best:.1f} ms "
                f"(goal: no worse): {_verdict(ours_f['p99_ms'] <= best)}"
            )
        ours_m = _get(table, "memory", server, OURS)
        raw_m = _get(table, "memory", server, "raw")
        if ours_m and raw_m:
            ratio = ours_m["mib_per_1000"] / raw_m["mib_per_1000"]
            out.append(
                f"- {server}: memory {ratio:.2f}x raw per idle connection (goal <= 1.2): "
                f"{_verdict(ratio <= 1.2)}"
            )
        stalled = _get(table, "stalled", server, OURS)
        if ours_f and stalled:
            ratio = stalled["p99_ms"] / ours_f["p99_ms"]
            ok = ratio <= 1.1 and not stalled.get("timeouts")
            out.append(
                f"- {server}: stalled-member fan-out p99 {ratio:.2f}x the healthy one "
                f"(goal <= 1.10): {_verdict(ok)}"
            )
    return out + socketio_goals(table, servers)


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def socketio_goals(table: Table, servers: list[str]) -> list[str]:
    """The Socket.IO goals: against python-socketio, both serving Socket.IO clients."""
    out = []
    for server in servers:
        goal = server in SOCKETIO_GOAL_SERVERS

        def line(text: str, ok: bool, server: str = server, goal: bool = goal) -> str:
            return f"- {server}: Socket.IO {text}: " + (_verdict(ok) if goal else "no goal here")

        ours = _get(table, "echo", server, SOCKETIO)
        theirs = _get(table, "echo", server, SOCKETIO_PEER)
        if ours and theirs:
            ratio = ours["msgs_per_s"] / theirs["msgs_per_s"]
            out.append(line(f"echo {ratio:.2f}x python-socketio (goal >= 3)", ratio >= 3))
        ours_f = _get(table, "fanout", server, SOCKETIO)
        theirs_f = _get(table, "fanout", server, SOCKETIO_PEER)
        if ours_f and theirs_f:
            if ours_f.get("timeouts"):
                out.append(
                    line("fan-out stalled (goal: p99 >= 5x lower than python-socketio)", False)
                )
            else:
                lower = theirs_f["p99_ms"] / ours_f["p99_ms"]
                out.append(
                    line(
                        f"fan-out p99 {ours_f['p99_ms']:.1f} ms vs python-socketio "
                        f"{theirs_f['p99_ms']:.1f} ms, {lower:.1f}x lower (goal >= 5x)",
                        lower >= 5,
                    )
                )
    return out


def socketio_section(table: Table, servers: list[str]) -> list[str]:
    """Socket.IO clients served by gatewayasgi and by python-socketio, side by side."""
    peers = [SOCKETIO_PEER, SOCKETIO, OURS]
    rows = []
    for server in servers:
        base = _get(table, "echo", server, SOCKETIO_PEER)
        base_f = _get(table, "fanout", server, SOCKETIO_PEER)
        for peer in peers:
            echo, fan = _get(table, "echo", server, peer), _get(table, "fanout", server, peer)
            stalled = _get(table, "stalled", server, peer)
            if not (echo or fan or stalled):
                continue
            lower = (
                f"{base_f['p99_ms'] / fan['p99_ms']:.1f}x"
                if fan and base_f and not fan.get("timeouts") and not base_f.get("timeouts")
                else "n/a"
            )
            ratio = f"{echo['msgs_per_s'] / base['msgs_per_s']:.2f}x" if echo and base else "n/a"
            rows.append(
                f"| {server} | {peer} | {_cell(echo, 'msgs_per_s', ',.0f')} | {ratio} | "
                f"{_fanout_cell(fan)} | {lower} | {_fanout_cell(stalled)} |"
            )
    if not any(f"| {SOCKETIO} |" in row for row in rows):
        return []
    return [
        "## Socket.IO clients: gatewayasgi vs python-socketio",
        "",
        f"`{SOCKETIO}` is the `{OURS}` gateway served to the same Socket.IO client as "
        f"`{SOCKETIO_PEER}`; `{OURS}` (native JSON) for reference.",
        "",
        "| server | peer | echo/s | echo vs python-socketio | fan-out p50 / p99 ms "
        "| p99 lower than python-socketio | stalled p50 / p99 ms |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
    ]


def chart(table: Table, servers: list[str], peers: list[str], path: Path) -> None:
    """Echo throughput ratios and fan-out p99 per server, one bar per peer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.2))
    width = 0.8 / max(len(peers), 1)
    for index, peer in enumerate(peers):
        ratios, p99s = [], []
        for server in servers:
            ours = _get(table, "echo", server, peer)
            raw = _get(table, "echo", server, "raw")
            ratios.append(ours["msgs_per_s"] / raw["msgs_per_s"] if ours and raw else 0)
            fan = _get(table, "fanout", server, peer)
            p99s.append(fan["p99_ms"] if fan and not fan.get("timeouts") else 0)
        xs = [i + index * width for i in range(len(servers))]
        left.bar(xs, ratios, width, label=peer)
        right.bar(xs, p99s, width, label=peer)
    for axis, title in (
        (left, "Echo throughput, ratio to raw ASGI (higher is better)"),
        (right, "Fan-out to 500 members, p99 ms (lower is better)"),
    ):
        axis.set_xticks([i + 0.4 - width / 2 for i in range(len(servers))], servers)
        axis.set_title(title, fontsize=10)
        axis.grid(axis="y", alpha=0.3)
    left.axhline(1.0, color="black", linewidth=0.8)
    handles, labels = left.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(peers), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))  # room below the axes for the legend
    fig.savefig(path, dpi=110)
    plt.close(fig)

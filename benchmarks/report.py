"""How ``wire.py`` prints its figures: one block per part, then one table of ratios and targets."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from counting import Counts
from harness import BARE, OURS_BARE, OURS_REF, Plan

Row = tuple[str, str, str, str, str, str]


def fmt_us(us: float) -> str:
    return f"{us / 1000:.3f} ms" if us >= 1000 else f"{us:.0f} µs"


def table(rows: list[Row]) -> str:
    head = ("figure", "ours", "baseline", "ratio", "target", "result")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(6)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(head, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)


def ratio_row(
    name: str,
    ours: float,
    base: float,
    fmt: Callable[[float], str],
    limit: float | None = None,
    absolute: tuple[str, bool] | None = None,
) -> Row:
    """A row comparing ``ours`` with ``base``.

    ``limit`` is a target for the ratio; ``absolute`` a target for ``ours`` itself, as its text
    and whether it is met. With neither, the row is for information.
    """
    r = ours / base if base else None
    target, result = "(info)", "-"
    if limit is not None and r is not None:
        target, result = f"<= {limit:.2f}x", "PASS" if r <= limit else "MISS"
    elif absolute is not None:
        target, result = absolute[0], "PASS" if absolute[1] else "MISS"
    return (name, fmt(ours), fmt(base), "-" if r is None else f"{r:.2f}x", target, result)


def print_both(results: dict[str, Any], line: Callable[[dict[str, Any]], str]) -> None:
    """One line for ours (``results["ours"]``) and one for the baseline (``results["bare"]``)."""
    for name, label in (("ours", OURS_REF), ("bare", BARE)):
        print(f"   {label:26} {line(results[name])}")


def report_timed(
    title: str,
    unit: str,
    res: dict[str, dict[str, float]],
    targets: tuple[float | None, float | None],
) -> list[Row]:
    print(f"\n{title}")
    for name, r in res.items():
        print(
            f"   {name:26} median {fmt_us(r['median_us']):>9}  p99 {fmt_us(r['p99_us']):>9}  "
            f"CPU/{unit}: client {fmt_us(r['client_cpu_us']):>9}, "
            f"server {fmt_us(r['server_cpu_us']):>9}"
        )
    o, e, b = res[OURS_BARE], res[OURS_REF], res[BARE]
    client_only, end_to_end = targets
    return [
        ratio_row(
            f"{unit}, client-only, median", o["median_us"], b["median_us"], fmt_us, client_only
        ),
        ratio_row(
            f"{unit}, end-to-end, median", e["median_us"], b["median_us"], fmt_us, end_to_end
        ),
        ratio_row(f"{unit}, client-only, p99", o["p99_us"], b["p99_us"], fmt_us),
        ratio_row(f"{unit}, client CPU", o["client_cpu_us"], b["client_cpu_us"], fmt_us),
    ]


def report_counts(unit: str, counts: dict[str, dict[str, float]]) -> list[Row]:
    ours, bare = Counts(**counts["ours"]), Counts(**counts["bare"])
    print(f"   per {unit}, client-only: ours {ours.cell()}")
    print(f"   {' ' * len(unit)}               bare {bare.cell()}")
    calls = (ours.python_calls + ours.builtin_calls, bare.python_calls + bare.builtin_calls)
    one = "{:.1f}".format
    return [
        ratio_row(f"tasks spawned per {unit}", ours.tasks, bare.tasks, one),
        ratio_row(f"cancel scopes per {unit}", ours.scopes, bare.scopes, one),
        ratio_row(f"function calls per {unit}", calls[0], calls[1], "{:,.0f}".format),
    ]


def report_scale(plan: Plan, sc: dict[str, Any]) -> list[Row]:
    k = plan.scale
    print(f"\n4. scale: {k:,} sessions open at once, opened in batches of {plan.batch}")
    print_both(
        sc,
        lambda r: (
            f"open all {r['open_all_s']:6.2f} s  close all {r['close_all_s']:6.2f} s  "
            f"client {r['client_kib_per_session']:5.1f} KiB/session "
            f"(heap {r['heap_kib_per_session']:5.1f})  "
            f"server {r['server_kib_per_session']:5.1f} KiB/session"
        ),
    )
    o, b = sc["ours"], sc["bare"]
    kib, seconds = "{:.1f} KiB".format, "{:.2f} s".format
    client, heap, server = (
        "client_kib_per_session",
        "heap_kib_per_session",
        "server_kib_per_session",
    )
    limit_s = 30.0 * k / 10_000
    return [
        ratio_row(f"client memory/session at {k:,}", o[client], b[client], kib, 1.10),
        ratio_row(f"client heap/session at {k:,}", o[heap], b[heap], kib),
        ratio_row(
            f"server memory/session at {k:,}",
            o[server],
            b[server],
            kib,
            absolute=("<= 32 KiB", o[server] <= 32),
        ),
        ratio_row(
            f"open {k:,} sessions, end-to-end",
            o["open_all_s"],
            b["open_all_s"],
            seconds,
            absolute=(f"<= {limit_s:g} s", o["open_all_s"] <= limit_s),
        ),
    ]


def report_churn(plan: Plan, ch: dict[str, Any]) -> list[Row]:
    print(
        f"\n5. churn: {plan.churn_cycles:,} open/close cycles over {plan.churn_sessions} sessions "
        f"(bare client: {plan.churn_floor_cycles:,} cycles)"
    )
    print_both(
        ch,
        lambda r: (
            f"{r['cycles_per_s']:7.0f} cycles/s   client RSS "
            f"{r['client_rss_warm_kib']:.0f} -> {r['client_rss_end_kib']:.0f} KiB "
            f"({r['client_growth']:+.1%}); server RSS {r['server_rss_warm_kib']:.0f} -> "
            f"{r['server_rss_end_kib']:.0f} KiB ({r['server_growth']:+.1%})"
        ),
    )
    o, b = ch["ours"], ch["bare"]
    growth = o["client_growth"]
    return [
        ratio_row(
            "churn cycles/s, end-to-end", o["cycles_per_s"], b["cycles_per_s"], "{:.0f}".format
        ),
        (
            "churn client RSS growth",
            f"{growth:+.1%}",
            f"{b['client_growth']:+.1%}",
            "-",
            "within 5%",
            "PASS" if abs(growth) <= 0.05 else "MISS",
        ),
    ]

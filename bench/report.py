"""Tables, checks and the plot of `make bench-server`'s sweep (docs/benchmarks.md)."""

from __future__ import annotations

import statistics
from pathlib import Path

DEFAULT = "modelship"
OFF = "modelship (batching off)"
OLD = "modelship (old policy)"


def median_point(runs: list[dict]) -> dict:
    """The median of each figure over the repeats of one point (and their spread)."""
    rps = [r["rps"] for r in runs]
    return {
        "rps": statistics.median(rps),
        "rps_min": min(rps),
        "rps_max": max(rps),
        "p50_ms": statistics.median(r["p50_ms"] for r in runs),
        "p99_ms": statistics.median(r["p99_ms"] for r in runs),
        "errors": sum(r["errors"] for r in runs),
    }


def closed_verdicts(closed: dict[str, dict[int, dict]]) -> dict[int, str]:
    """The batching issue's acceptance at each closed-loop point, as a short verdict."""
    out = {}
    for c, d in closed.get(DEFAULT, {}).items():
        off = closed.get(OFF, {}).get(c)
        old = closed.get(OLD, {}).get(c)
        if off is None:
            continue
        problems = []
        best = max(off["rps"], old["rps"] if old else 0)
        if d["rps"] < 0.95 * best:
            problems.append(f"req/s {d['rps'] / best:.0%} of best")
        if d["p99_ms"] > max(off["p99_ms"] * 1.10, off["p99_ms"] + 0.1):
            problems.append(f"p99 {d['p99_ms']:.2f} > off {off['p99_ms']:.2f}")
        if c == 64 and old and d["rps"] < old["rps"]:
            problems.append("below old policy at 64")
        out[c] = "ok" if not problems else "; ".join(problems)
    return out


def open_verdicts(opened: dict[str, dict[int, dict]]) -> dict[int, str]:
    out = {}
    for rate, d in opened.get(DEFAULT, {}).items():
        off = opened.get(OFF, {}).get(rate)
        if off is None:
            continue
        if off["rps"] < 0.97 * rate:
            out[rate] = "saturated (batching off does not keep up)"
        elif d["p99_ms"] > max(off["p99_ms"] * 1.10, off["p99_ms"] + 0.1):
            out[rate] = f"p99 {d['p99_ms']:.2f} > off {off['p99_ms']:.2f}"
        else:
            out[rate] = "ok"
    return out


def table(first: str, column: str, names: list[str], points: dict[str, dict[int, dict]],
          verdicts: dict[int, str], key=str, last: str = "acceptance") -> list[str]:
    """One Markdown row per point, one `req/s (p99 ms)` cell per server, and the verdict."""
    keys = sorted({k for d in points.values() for k in d})
    head = f"| {first} | " + " | ".join(f"{n} {column} (p99 ms)" for n in names) + f" | {last} |"
    lines = [head, "|" + "---:|" * (len(names) + 1) + "---|"]
    for k in keys:
        cells = []
        for n in names:
            p = points.get(n, {}).get(k)
            cells.append("–" if p is None else f"{p['rps']:,.0f} ({p['p99_ms']:.2f})")
        lines.append(f"| {key(k)} | " + " | ".join(cells) + f" | {verdicts.get(k, '')} |")
    return lines


def closed_table(names: list[str], closed: dict[str, dict[int, dict]]) -> list[str]:
    return table("clients", "req/s", names, closed, closed_verdicts(closed))


def open_table(names: list[str], opened: dict[str, dict[int, dict]]) -> list[str]:
    return table("offered req/s", "achieved", names, opened, open_verdicts(opened), key="{:,}".format)


def plot(path: Path, names: list[str], closed: dict[str, dict[int, dict]]) -> None:
    """req/s and p99 against closed-loop clients, one line per server (SVG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_rps, ax_p99) = plt.subplots(1, 2, figsize=(11, 4.2))
    for n in names:
        pts = sorted(closed.get(n, {}).items())
        if not pts:
            continue
        xs = [c for c, _ in pts]
        ax_rps.plot(xs, [p["rps"] for _, p in pts], marker="o", label=n)
        ax_p99.plot(xs, [p["p99_ms"] for _, p in pts], marker="o", label=n)
    for ax, title in [(ax_rps, "requests/s (median)"), (ax_p99, "p99 latency, ms (median)")]:
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("closed-loop clients")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    ax_rps.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="svg")
    plt.close(fig)


def replace_section(path: Path, heading: str, section: str) -> None:
    """Replaces the `## heading` section of a Markdown file (or appends it)."""
    text = path.read_text() if path.exists() else "# Benchmarks\n\n"
    start = text.find(heading)
    if start >= 0:
        end = text.find("\n## ", start + 1)
        text = text[:start] + section + ("\n" + text[end + 1:] if end >= 0 else "")
    else:
        text = text.rstrip() + "\n\n" + section
    path.write_text(text)

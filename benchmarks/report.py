"""Report helpers: where a number was measured, side-by-side tables with ratios, JSON and plots."""

from __future__ import annotations

import json
import os
import platform
import textwrap
from typing import Optional, Sequence

from lean.host import cpu_int8_dot_product, host_cpu_model
from lean.io import atomic_path, atomic_write_text


def host_place() -> str:
    """e.g. 'host CPU AMD EPYC (2 logical cores, int8 dot product: none, Linux x86_64)': never a phone."""
    dot_product = ", ".join(cpu_int8_dot_product()) or "none"
    return (f"host CPU {host_cpu_model()} ({os.cpu_count()} logical cores, "
            f"int8 dot product: {dot_product}, {platform.system()} {platform.machine()})")


def ratio(value: Optional[float], reference: Optional[float]) -> Optional[float]:
    if value is None or reference is None or reference == 0:
        return None
    return value / reference


def format_value(value, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        # Sub-millisecond latencies of small models keep three significant digits.
        if 0 < abs(value) < 1 and digits < 3:
            return f"{value:.3g}"
        return f"{value:.{digits}f}"
    return str(value)


# What a device latency covers (status.properties' latency_coverage, benchmarks/DEVICE_EVAL.md).
CPU_DELEGATES = ("cpu", "xnnpack")
LATENCY_COVERAGE = ("cpu", "delegate-all", "partial", "possibly-partial")


def latency_coverage(delegate: str, delegated_nodes: Optional[int] = None,
                     total_nodes: Optional[int] = None) -> str:
    """How much of a latency measured with `delegate` is the delegate's own.

    A GPU or NNAPI delegate hands the operations it cannot run back to the CPU, inside the same
    latency; unless the runtime said it took every node, such a number is not a pure delegate
    number.

    Args:
        delegate: the delegate key (cpu, xnnpack, gpu, nnapi).
        delegated_nodes, total_nodes: what the runtime reported, or None.

    Returns:
        One of LATENCY_COVERAGE.
    """
    if delegate in CPU_DELEGATES:
        return "cpu"
    if delegated_nodes is None or not total_nodes:
        return "possibly-partial"
    return "delegate-all" if delegated_nodes == total_nodes else "partial"


def describe_latency_coverage(delegate: str, coverage: str, delegated_nodes: Optional[int] = None,
                              total_nodes: Optional[int] = None) -> str:
    """One line for a report, e.g. 'gpu, possibly partial: ...'."""
    if coverage == "cpu":
        return f"{delegate}: every operation on the CPU"
    if coverage == "delegate-all":
        return f"{delegate} took all {total_nodes} nodes"
    if coverage == "partial":
        return (f"{delegate} took {delegated_nodes} of {total_nodes} nodes: PARTIAL, the other "
                f"{total_nodes - delegated_nodes} ran on the CPU inside this latency")
    return (f"{delegate}, POSSIBLY PARTIAL: the runtime did not report how many nodes the delegate "
            "took, and any it left ran on the CPU inside this latency")


def format_table(headers: Sequence[str], rows: Sequence[Sequence]) -> str:
    """Plain-text table: first column left-aligned, the others right-aligned."""
    cells = [[str(header) for header in headers]]
    cells += [[value if isinstance(value, str) else format_value(value) for value in row]
              for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for index, row in enumerate(cells):
        parts = [row[0].ljust(widths[0])] + [cell.rjust(width)
                                              for cell, width in zip(row[1:], widths[1:])]
        lines.append("  ".join(parts).rstrip())
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


def write_json(report: dict, path: Optional[str]) -> None:
    """Writes the report as JSON to `path` (atomically), or to stdout for '-'."""
    text = json.dumps(report, indent=2, sort_keys=False, default=str) + "\n"
    if path in (None, ""):
        return
    if path == "-":
        print(text, end="")
    else:
        atomic_write_text(path, text)


def latency_figure(rows: Sequence[dict], title: str, place: str):
    """Bar chart of median latency (with min..p90 range) per model and thread count, as a
    matplotlib Figure whose every text lies inside it."""
    from matplotlib.figure import Figure

    labels = [f"{row['model_name']}\n{row['threads']} thr" for row in rows]
    medians = [row.get("median_ms") or 0.0 for row in rows]
    lower = [max(0.0, (row.get("median_ms") or 0.0) - (row.get("min_ms") or 0.0)) for row in rows]
    upper = [max(0.0, (row.get("p90_ms") or 0.0) - (row.get("median_ms") or 0.0)) for row in rows]
    width = max(5.0, 1.1 * len(rows) + 2)
    figure = Figure(figsize=(width, 4.2))
    axis = figure.subplots()
    positions = range(len(rows))
    axis.bar(positions, medians, yerr=[lower, upper], capsize=4, color="#4c72b0")
    axis.set_xticks(list(positions))
    axis.set_xticklabels(labels, fontsize=8)
    axis.set_ylabel("latency per 1 s window (ms)\nmedian, bars min..p90")
    # About 11 characters per inch at 9 pt: the host line wraps instead of leaving the figure
    # (at one line it ran past both edges and over the y-axis label).
    place_lines = textwrap.fill(f"measured on {place}", width=int(11 * width))
    axis.set_title(f"{title}\n{place_lines}", fontsize=9)
    figure.tight_layout()
    boxes = [label.get_window_extent() for label in axis.get_xticklabels()]
    if any(left.overlaps(right) for left, right in zip(boxes, boxes[1:])):
        # Names too long for their bars: slanted, not printed over each other.
        for label in axis.get_xticklabels():
            label.set(rotation=25, horizontalalignment="right", rotation_mode="anchor")
        figure.tight_layout()
    return figure


def plot_latency(rows: Sequence[dict], title: str, place: str, path: str) -> None:
    """Writes `latency_figure` as a PNG."""
    figure = latency_figure(rows, title, place)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=120)

"""Parser for the text output of TensorFlow Lite / LiteRT `benchmark_model`, old and new builds."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Optional

# Newer builds prefix every line with a level (`INFO: `); older builds print bare lines.
_LEVEL_PREFIX = re.compile(r"^(INFO|WARNING|ERROR|VERBOSE|DEBUG): ?")
_RUN_STATS = re.compile(r"^count=\d+(\s+\w+=[-+0-9.eE]+)*\s*$")
_KEY_VALUE = re.compile(r"(\w+)=([-+0-9.eE]+)")
_PARAMETER = re.compile(r"^([A-Za-z#][^:\[]*?): \[(.*)\]$")
_TIMINGS = re.compile(r"Inference timings in us: (.*)$")
_TIMING_ITEM = re.compile(r"([A-Za-z][A-Za-z ()]*?): ([-+0-9.eE]+)")
_SESSION_INIT = re.compile(r"Initialized session in ([0-9.]+)\s*ms")
_MODEL_SIZE = re.compile(r"The input model file size \(MB\): ([0-9.]+)")
# Old builds: "Peak memory footprint (MB): init=.. overall=..";
# new builds: "Memory footprint delta from the start of the tool (MB): init=.. overall=..".
_MEMORY = re.compile(r"(?:Peak memory footprint|Memory footprint delta from the start of the tool) "
                     r"\(MB\): init=([0-9.]+) overall=([0-9.]+)")
_PEAK_MEMORY = re.compile(r"Overall peak memory footprint \(MB\) via periodic monitoring: ([0-9.]+)")
_VMRSS = re.compile(r"- VmRSS\s*:\s*([0-9.]+)\s*MB")
_DELEGATION = re.compile(r"Replacing (\d+) out of (\d+) node\(s\) with delegate \((\w+)\) node, "
                         r"yielding (\d+) partitions")
_SECTION = re.compile(r"^=+ (.+?) =+$")
_COLUMN = re.compile(r"\[([^\]]+)\]")
# Messages that mean the run died without an `ERROR:` line of its own.
_FATAL_HINTS = ("Segmentation fault", "Aborted", "not found", "Permission denied", "No such file",
                "CANNOT LINK EXECUTABLE", "Killed", "Illegal instruction", "can't execute",
                "was not true", "failed", "Failed", "error", "Error")


@dataclass
class RunStats:
    """One `count=... first=... min=...` line; times in milliseconds, None when not printed."""

    count: int
    first_ms: Optional[float] = None
    curr_ms: Optional[float] = None
    min_ms: Optional[float] = None
    max_ms: Optional[float] = None
    avg_ms: Optional[float] = None
    std_ms: Optional[float] = None
    p5_ms: Optional[float] = None
    median_ms: Optional[float] = None
    p95_ms: Optional[float] = None


@dataclass
class ProfileTable:
    """One table of the op-profiling output (`--enable_op_profiling=true`)."""

    context: str  # e.g. "Operator-wise Profiling Info for Regular Benchmark Runs"
    title: str  # e.g. "Run Order", "Summary by node type"
    columns: list[str]
    rows: list[dict]


@dataclass
class BenchmarkLog:
    """Everything a `benchmark_model` log says; times in ms, memory in MB, None when absent."""

    ok: bool
    error: Optional[str] = None  # the tool's own first error line, verbatim
    errors: list[str] = field(default_factory=list)
    prefixed_format: bool = False  # True for builds that print `INFO: ` prefixes
    parameters: dict = field(default_factory=dict)
    model_size_mb: Optional[float] = None
    init_ms: Optional[float] = None
    first_inference_ms: Optional[float] = None
    warmup_avg_ms: Optional[float] = None
    inference_avg_ms: Optional[float] = None
    warmup: Optional[RunStats] = None
    inference: Optional[RunStats] = None
    memory_init_mb: Optional[float] = None
    memory_overall_mb: Optional[float] = None
    peak_memory_mb: Optional[float] = None
    vmrss_mb: Optional[float] = None
    delegate: Optional[str] = None
    delegated_nodes: Optional[int] = None
    total_nodes: Optional[int] = None
    delegate_partitions: Optional[int] = None
    profile: list[ProfileTable] = field(default_factory=list)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def node_type_summary(self) -> list[dict]:
        """The regular runs' "Summary by node type" rows (empty without --profile)."""
        for table in self.profile:
            if table.title.lower() == "summary by node type" and "regular" in table.context.lower():
                return table.rows
        for table in self.profile:
            if table.title.lower() == "summary by node type":
                return table.rows
        return []


def _number(text: str) -> float | int:
    value = float(text.rstrip("%"))
    return int(value) if re.fullmatch(r"[-+]?\d+", text) else value


def parse_run_stats(line: str) -> RunStats:
    """`count=9 first=87112 curr=51629 ... p95=87112` (microseconds) -> RunStats in ms."""
    values = {key: float(value) for key, value in _KEY_VALUE.findall(line)}
    stats = RunStats(count=int(values.pop("count")))
    for key, value in values.items():
        name = f"{key}_ms"
        if hasattr(stats, name):
            setattr(stats, name, value / 1000.0)
    return stats


def _parse_profile_row(line: str, columns: list[str]) -> Optional[dict]:
    # Fields are tab-separated and right-aligned; the name (last) may itself contain spaces.
    parts = line.strip().split(None, len(columns) - 1)
    if len(parts) != len(columns):
        return None
    row = {}
    for column, text in zip(columns, parts):
        if column.lower() in ("node type", "name"):
            row[column] = text
            continue
        try:
            row[column] = _number(text)
        except ValueError:
            return None  # not a table row: the table has ended
    return row


def parse_benchmark_log(text: str) -> BenchmarkLog:
    """Parses one `benchmark_model` output (stdout and stderr together).

    Args:
        text: the tool's output; either format (with or without `INFO: ` prefixes).

    Returns:
        A BenchmarkLog; `ok` is False when the run failed, with `error` quoting the tool.
    """
    log = BenchmarkLog(ok=False)
    run_stats: list[RunStats] = []
    context = ""
    table: Optional[ProfileTable] = None
    other_lines: list[str] = []
    saw_timings = False
    for raw_line in text.splitlines():
        prefix = _LEVEL_PREFIX.match(raw_line)
        if prefix:
            log.prefixed_format = True
            if prefix.group(1) == "ERROR":
                log.errors.append(raw_line[prefix.end():].strip())
        line = raw_line[prefix.end():].rstrip() if prefix else raw_line.rstrip()
        stripped = line.strip()
        if not stripped:
            table = None
            continue
        if stripped.startswith("Operator-wise Profiling Info") or stripped.startswith("Profiling Info"):
            context = stripped.rstrip(":")
            table = None
            continue
        section = _SECTION.match(stripped)
        if section:
            table = ProfileTable(context=context, title=section.group(1), columns=[], rows=[])
            log.profile.append(table)
            continue
        if table is not None:
            if not table.columns and stripped.startswith("["):
                table.columns = _COLUMN.findall(stripped)
                continue
            row = _parse_profile_row(line, table.columns) if table.columns else None
            if row is not None:
                table.rows.append(row)
                continue
            table = None
        if _RUN_STATS.match(stripped):
            run_stats.append(parse_run_stats(stripped))
            continue
        match = _TIMINGS.search(stripped)
        if match:
            saw_timings = True
            items = dict(_TIMING_ITEM.findall(match.group(1)))
            as_ms = {key.strip(): float(value) / 1000.0 for key, value in items.items()}
            log.init_ms = as_ms.get("Init", log.init_ms)
            log.first_inference_ms = as_ms.get("First inference")
            log.warmup_avg_ms = as_ms.get("Warmup (avg)")
            log.inference_avg_ms = as_ms.get("Inference (avg)")
            continue
        for pattern, names in (
            (_SESSION_INIT, ("init_ms",)),
            (_MODEL_SIZE, ("model_size_mb",)),
            (_MEMORY, ("memory_init_mb", "memory_overall_mb")),
            (_PEAK_MEMORY, ("peak_memory_mb",)),
            (_VMRSS, ("vmrss_mb",)),
        ):
            match = pattern.search(stripped)
            if match:
                for name, value in zip(names, match.groups()):
                    # The timings line's Init (us) is more precise than the session line.
                    if getattr(log, name) is None:
                        setattr(log, name, float(value))
                break
        else:
            match = _DELEGATION.search(stripped)
            if match:
                log.delegated_nodes, log.total_nodes = int(match.group(1)), int(match.group(2))
                log.delegate, log.delegate_partitions = match.group(3), int(match.group(4))
                continue
            match = _PARAMETER.match(stripped)
            if match:
                log.parameters[match.group(1).strip()] = match.group(2)
                continue
            other_lines.append(stripped)
    # Warm-up statistics come first, then the regular runs.
    if len(run_stats) >= 2:
        log.warmup, log.inference = run_stats[0], run_stats[-1]
    elif run_stats:
        log.inference = run_stats[0]
    if log.inference is not None and log.inference_avg_ms is None:
        log.inference_avg_ms = log.inference.avg_ms
    log.ok = saw_timings and not log.errors
    if log.errors:
        log.error = log.errors[0]
    elif not log.ok:
        fatal = [line for line in other_lines if any(hint in line for hint in _FATAL_HINTS)]
        if fatal:
            log.error = fatal[0]
        else:
            log.error = "no timings in the output (the run was cut short or the log is empty)"
    return log

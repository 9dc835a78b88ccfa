"""The adb side: device discovery, device facts, core pinning, and running commands on a phone."""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Optional

from lean.errors import LeanError

# Trailing `key:value` pairs of `adb devices -l` (usb:1-1 product:x model:y device:z transport_id:3).
_DEVICE_PROPERTY = re.compile(r"^[a-z_]+:\S*$")
_GETPROP_LINE = re.compile(r"^\[([^\]]+)\]: \[(.*)\]$")
# Set by the loopback test's stand-in getprop: the "device" is this Linux host, not a phone.
STAND_IN_PROPERTY = "ro.lean.stand_in"

_STATE_ADVICE = {
    "unauthorized": (
        "is unauthorized: unlock the phone and accept the 'Allow USB debugging' prompt (tick "
        "'Always allow'), then run again; no prompt? revoke USB debugging authorizations in "
        "Developer options and reconnect the cable"
    ),
    "offline": (
        "is offline: reconnect the cable (or `adb connect` again), run `adb kill-server`, and "
        "toggle USB debugging on the phone if it stays offline"
    ),
    "no permissions": (
        "cannot be opened (no permissions): install the Android udev rules (Debian: apt-get "
        "install android-sdk-platform-tools-common), add your user to the plugdev group and "
        "reconnect, or restart the server with `adb kill-server; sudo adb start-server`"
    ),
}


@dataclass(frozen=True)
class DeviceEntry:
    """One line of `adb devices -l`."""

    serial: str
    state: str  # device, unauthorized, offline, no permissions (...), ...
    properties: dict = field(default_factory=dict)

    @property
    def usable(self) -> bool:
        return self.state == "device"

    def advice(self) -> str:
        """What the user should do about a device that cannot be used, in one line."""
        for state, advice in _STATE_ADVICE.items():
            if self.state.startswith(state):
                detail = f" (adb says: {self.state})" if state == "no permissions" else ""
                return f"device '{self.serial}' {advice}{detail}"
        return f"device '{self.serial}' is in state '{self.state}', not 'device': reboot it normally"


def parse_devices(text: str) -> list[DeviceEntry]:
    """Parses `adb devices -l`; serials may contain spaces, so the line is read from its end."""
    entries = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("List of devices") or line.startswith("*"):
            continue
        tokens = line.split()
        properties = {}
        while len(tokens) > 2 and _DEVICE_PROPERTY.match(tokens[-1]):
            key, _, value = tokens.pop().partition(":")
            properties[key] = value
        head = " ".join(tokens)
        match = re.match(r"^(.*?)\s+(no permissions\b.*)$", head)
        if match is None:
            match = re.match(r"^(.*)\s+(\S+)$", head)
        if match is None:
            continue
        entries.append(DeviceEntry(match.group(1).strip(), match.group(2).strip(), properties))
    return entries


def select_devices(entries: list[DeviceEntry], serials: list[str]) -> list[DeviceEntry]:
    """The devices to use: the requested serials, or every usable one; clear errors otherwise."""
    if serials:
        by_serial = {entry.serial: entry for entry in entries}
        chosen = []
        for serial in serials:
            if serial not in by_serial:
                known = ", ".join(repr(entry.serial) for entry in entries) or "none"
                raise LeanError(f"--serial '{serial}' is not connected (adb devices -l lists: {known})")
            if not by_serial[serial].usable:
                raise LeanError(by_serial[serial].advice())
            chosen.append(by_serial[serial])
        return chosen
    usable = [entry for entry in entries if entry.usable]
    if usable:
        return usable
    if entries:
        raise LeanError("; ".join(entry.advice() for entry in entries))
    raise LeanError("no Android device found by `adb devices -l`: connect a phone with USB "
                    "debugging enabled (Settings > Developer options), or `adb connect HOST:PORT`")


class Adb:
    """Runs adb commands for one device (or the server when serial is None)."""

    def __init__(self, adb_path: str = "adb", serial: Optional[str] = None):
        resolved = shutil.which(adb_path)
        if resolved is None:
            raise LeanError(f"adb not found ('{adb_path}'): install Android platform-tools "
                            "(Debian/Ubuntu: apt-get install adb) or pass --adb PATH")
        self.adb_path = resolved
        self.serial = serial

    def for_device(self, serial: str) -> "Adb":
        return Adb(self.adb_path, serial)

    def _command(self, args: list[str]) -> list[str]:
        return [self.adb_path] + (["-s", self.serial] if self.serial else []) + list(args)

    def run(self, args: list[str], timeout: float = 120.0) -> str:
        """Runs `adb [-s SERIAL] ARGS`; a failure raises LeanError quoting adb's own words."""
        try:
            result = subprocess.run(self._command(args), capture_output=True, text=True,
                                    timeout=timeout, errors="replace")
        except subprocess.TimeoutExpired:
            raise LeanError(f"`adb {' '.join(args[:2])}` on '{self.serial}' did not finish in "
                            f"{timeout:.0f} s: is the device still connected?") from None
        if result.returncode != 0:
            raise LeanError(f"`adb {' '.join(args[:2])}` failed on '{self.serial}': "
                            f"{_last_line(result.stderr + result.stdout)}")
        return result.stdout

    def shell(self, command: str, timeout: float = 120.0) -> tuple[int, str]:
        """Runs a shell command on the device; returns (exit status, stdout and stderr)."""
        try:
            result = subprocess.run(self._command(["shell", command]), capture_output=True,
                                    text=True, timeout=timeout, errors="replace")
        except subprocess.TimeoutExpired:
            raise LeanError(f"command on '{self.serial}' did not finish in {timeout:.0f} s: "
                            f"{command[:80]}") from None
        output = result.stdout + result.stderr
        # adb's own failures (lost device) come back as `error: ...` with exit status 1.
        if result.returncode != 0 and output.strip().startswith(("error:", "adb: error")):
            raise LeanError(f"lost contact with device '{self.serial}': {_last_line(output)}")
        return result.returncode, output

    def exec_out(self, command: str, timeout: float = 600.0) -> bytes:
        """Runs a device command and returns its stdout as raw bytes (binary-safe)."""
        try:
            result = subprocess.run(self._command(["exec-out", command]), capture_output=True,
                                    timeout=timeout)
        except subprocess.TimeoutExpired:
            raise LeanError(f"command on '{self.serial}' did not finish in {timeout:.0f} s: "
                            f"{command[:80]}") from None
        if result.returncode != 0:
            message = result.stderr.decode("utf-8", "replace")
            raise LeanError(f"lost contact with device '{self.serial}': {_last_line(message)}")
        return result.stdout

    def push(self, local: str, remote: str) -> None:
        # Gigabyte files (eval windows) take minutes: allow 2 MB/s, the slowest USB 2 links.
        timeout = 300.0 + os.path.getsize(local) / 2e6
        self.run(["push", local, remote], timeout=timeout)

    def devices(self) -> list[DeviceEntry]:
        return parse_devices(self.run(["devices", "-l"], timeout=30.0))


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


@dataclass
class Thermal:
    """Thermal state at one moment; None where the device does not report it."""

    thermal_status: Optional[int] = None
    battery_level: Optional[int] = None
    battery_temperature_c: Optional[float] = None


@dataclass
class DeviceFacts:
    """What a report must say about the place of measurement."""

    serial: str
    model: Optional[str]
    manufacturer: Optional[str]
    soc: Optional[str]
    abi: Optional[str]
    sdk: Optional[int]
    cpu_max_freq_khz: dict  # core index -> cpuinfo_max_freq
    stand_in: Optional[str]  # why this is not a phone, or None for a real phone
    thermal: Thermal = field(default_factory=Thermal)

    @property
    def place(self) -> str:
        """e.g. 'Samsung SM-G991B (SoC exynos2100)', or a STAND-IN label."""
        name = " ".join(part for part in (self.manufacturer, self.model) if part) or "unknown model"
        place = f"{name} (SoC {self.soc or 'unknown'}, {self.abi or 'unknown ABI'}, serial {self.serial})"
        if self.stand_in:
            return f"STAND-IN device, not a phone: {self.stand_in} [{place}]"
        return place

    def to_dict(self) -> dict:
        values = dataclasses.asdict(self)
        values["place"] = self.place
        return values


def parse_getprop(text: str) -> dict:
    """`[ro.product.model]: [SM-G991B]` lines -> dict."""
    props = {}
    for line in text.splitlines():
        match = _GETPROP_LINE.match(line.strip())
        if match:
            props[match.group(1)] = match.group(2)
    return props


def parse_battery(text: str) -> tuple[Optional[int], Optional[float]]:
    """`dumpsys battery` -> (level %, temperature in °C; the tool prints tenths of a degree)."""
    level = re.search(r"^\s*level: (\d+)", text, re.MULTILINE)
    temperature = re.search(r"^\s*temperature: (-?\d+)", text, re.MULTILINE)
    return (int(level.group(1)) if level else None,
            int(temperature.group(1)) / 10.0 if temperature else None)


def parse_thermal_status(text: str) -> Optional[int]:
    match = re.search(r"Thermal Status: (\d+)", text)
    return int(match.group(1)) if match else None


def parse_cpu_max_freqs(text: str) -> dict:
    """`/sys/devices/system/cpu/cpu4/cpufreq/cpuinfo_max_freq 2850000` lines -> {4: 2850000}."""
    freqs = {}
    for match in re.finditer(r"/cpu(\d+)/cpufreq/cpuinfo_max_freq\s+(\d+)", text):
        freqs[int(match.group(1))] = int(match.group(2))
    return freqs


# One round trip for all facts; each section is introduced by a marker line.
_FACTS_SCRIPT = (
    "echo @@getprop; getprop; "
    "echo @@cpufreq; for f in /sys/devices/system/cpu/cpu[0-9]*/cpufreq/cpuinfo_max_freq; do "
    "[ -r \"$f\" ] && echo \"$f $(cat \"$f\")\"; done; "
    "echo @@battery; dumpsys battery; "
    "echo @@thermal; dumpsys thermalservice; echo @@end"
)
_THERMAL_SCRIPT = ("echo @@battery; dumpsys battery; echo @@thermal; dumpsys thermalservice; "
                   "echo @@end")


def _sections(text: str) -> dict:
    sections, name = {}, None
    for line in text.splitlines():
        if line.startswith("@@"):
            name = line[2:].strip()
            sections[name] = []
        elif name:
            sections[name].append(line)
    return {key: "\n".join(lines) for key, lines in sections.items()}


def _thermal_from(sections: dict) -> Thermal:
    level, temperature = parse_battery(sections.get("battery", ""))
    return Thermal(parse_thermal_status(sections.get("thermal", "")), level, temperature)


def read_thermal(adb: Adb) -> Thermal:
    _, output = adb.shell(_THERMAL_SCRIPT, timeout=60.0)
    return _thermal_from(_sections(output))


def read_device_facts(adb: Adb) -> DeviceFacts:
    """Model, SoC, ABI, SDK, CPU max frequencies, battery and thermal state of one device."""
    _, output = adb.shell(_FACTS_SCRIPT, timeout=60.0)
    return parse_device_facts(adb.serial or "", output)


def parse_device_facts(serial: str, output: str) -> DeviceFacts:
    """The output of the facts script (getprop, cpufreq, dumpsys sections) -> DeviceFacts."""
    sections = _sections(output)
    props = parse_getprop(sections.get("getprop", ""))
    soc = props.get("ro.soc.model") or props.get("ro.board.platform") or props.get("ro.hardware")
    sdk = props.get("ro.build.version.sdk", "")
    stand_in = props.get(STAND_IN_PROPERTY) or None
    if stand_in is None and not props.get("ro.product.model"):
        stand_in = "getprop reports no ro.product.model, so this is not an Android phone"
    return DeviceFacts(
        serial=serial,
        model=props.get("ro.product.model"),
        manufacturer=props.get("ro.product.manufacturer"),
        soc=soc,
        abi=props.get("ro.product.cpu.abi"),
        sdk=int(sdk) if sdk.isdigit() else None,
        cpu_max_freq_khz=parse_cpu_max_freqs(sections.get("cpufreq", "")),
        stand_in=stand_in,
        thermal=_thermal_from(sections),
    )


def big_core_mask(cpu_max_freq_khz: dict, threads: int) -> Optional[int]:
    """Affinity mask of the fastest cores: whole clusters, from the highest cpuinfo_max_freq down,
    until there are at least `threads` cores (1 thread on a 1+3+4 SoC -> the prime core only).

    Returns None when the device reports no frequencies (then the run is not pinned).
    """
    if not cpu_max_freq_khz:
        return None
    chosen: list[int] = []
    for freq in sorted(set(cpu_max_freq_khz.values()), reverse=True):
        chosen += [core for core, core_freq in cpu_max_freq_khz.items() if core_freq == freq]
        if len(chosen) >= threads:
            break
    return sum(1 << core for core in chosen)


def resolve_core_mask(cores: str, cpu_max_freq_khz: dict, threads: int) -> Optional[int]:
    """--cores big|all|MASK (hex, e.g. f0) -> affinity mask, or None for no pinning."""
    if cores == "all":
        return None
    if cores == "big":
        return big_core_mask(cpu_max_freq_khz, threads)
    try:
        mask = int(cores, 16)
    except ValueError:
        raise LeanError(f"--cores '{cores}': expected big, all or a hex mask such as f0") from None
    if mask <= 0:
        raise LeanError(f"--cores '{cores}': the mask selects no core")
    return mask


def quote(path: str) -> str:
    return shlex.quote(path)

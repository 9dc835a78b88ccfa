"""A real adbd on loopback in a private network namespace, with this host as a STAND-IN "phone".

The adb client, the adb server and adbd all live in a network namespace of their own
(`unshare --net`, only `lo` up), so no traffic leaves the machine and no other adb server is
disturbed. Device-only tools (getprop, dumpsys, am, benchmark_model) are the stand-ins in
./standin, put first on adbd's PATH; getprop marks the device as a stand-in.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
STANDIN_DIR = HERE / "standin"
FIXTURES_DIR = HERE.parent / "fixtures" / "benchmark_model"
INSTALL_SCRIPT = HERE / "install.sh"
DEFAULT_CACHE = Path(os.environ.get("LEAN_ADB_LOOPBACK_CACHE",
                                    Path.home() / ".cache" / "lean-adb-loopback"))
# Outside adb's emulator scan range (5555-5585), so each is listed once. Two adbds on the same
# host make two "devices", for the several-devices path.
ADBD_PORTS = (6555, 6556)
SERIAL, SECOND_SERIAL = (f"127.0.0.1:{port}" for port in ADBD_PORTS)


def unavailable_reason() -> str | None:
    """Why the loopback device cannot run here, or None when it can."""
    if not sys.platform.startswith("linux"):
        return "needs Linux network namespaces"
    if os.geteuid() != 0:
        return "needs root for `unshare --net` and nsenter (CI runs as root)"
    for tool in ("unshare", "nsenter", "ip"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed"
    # Containers without CAP_SYS_ADMIN refuse new namespaces even to root.
    probe = subprocess.run(["unshare", "--net", "ip", "link", "set", "lo", "up"],
                           capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        return f"cannot create a network namespace here: {probe.stderr.strip()}"
    return None


def install(cache_dir: Path = DEFAULT_CACHE) -> Path:
    """Installs adb and unpacks adbd 34 (cached); raises RuntimeError with the reason on failure."""
    result = subprocess.run(["bash", str(INSTALL_SCRIPT), str(cache_dir)], capture_output=True,
                            text=True, timeout=600)
    if result.returncode != 0:
        raise RuntimeError(result.stderr.strip() or f"install.sh exited {result.returncode}")
    return cache_dir


class LoopbackDevice:
    """Starts the namespace, two adbds and the adb server; `run(...)` runs a command inside.

    The first adbd (SERIAL) is the one the stand-in app can "unplug" (its pid is in
    state/adbd.pid); stop_adbd/start_adbd/connect act on it.
    """

    def __init__(self, cache_dir: Path, work_dir: Path):
        self.root = cache_dir / "root"
        adbd = list(self.root.rglob("platform-tools/adbd"))
        if not adbd:
            raise RuntimeError(f"no adbd under {self.root}")
        self.adbd_path = adbd[0]
        self.work_dir = work_dir
        self.state_dir = work_dir / "state"
        self.device_tmp = work_dir / "device" / "data_local_tmp"
        self.device_eval_root = work_dir / "device" / "eval"
        self.home = work_dir / "home"
        for folder in (self.state_dir, self.device_tmp, self.device_eval_root, self.home):
            folder.mkdir(parents=True, exist_ok=True)
        self._namespace = None
        self._adbds = {}

    @property
    def env(self) -> dict:
        """Environment of host-side commands: private HOME (adb keys) and caches."""
        env = dict(os.environ)
        env.update(HOME=str(self.home), LEAN_CACHE_DIR=str(self.work_dir / "audio-cache"),
                   XDG_CACHE_HOME=str(self.work_dir / "xdg-cache"),
                   MPLCONFIGDIR=str(self.work_dir / "mpl"), ADB_VENDOR_KEYS="")
        return env

    def start(self) -> None:
        self._namespace = subprocess.Popen(
            ["unshare", "--net", "sh", "-c", "ip link set lo up && echo ready && exec sleep 3600"],
            stdout=subprocess.PIPE, text=True)
        if self._namespace.stdout.readline().strip() != "ready":
            raise RuntimeError("could not bring up lo in a new network namespace")
        for port in ADBD_PORTS:
            self.start_adbd(port)
            self.connect(f"127.0.0.1:{port}")

    def start_adbd(self, port: int = ADBD_PORTS[0]) -> None:
        library_dirs = sorted({str(path.parent) for path in self.root.rglob("*.so*")})
        env = dict(self.env)
        env.update(
            ADBD_PORT=str(port),
            LD_LIBRARY_PATH=":".join(library_dirs),
            PATH=f"{STANDIN_DIR}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            LEAN_STANDIN_DIR=str(STANDIN_DIR),
            LEAN_STANDIN_STATE=str(self.state_dir),
            LEAN_STANDIN_FIXTURES=str(FIXTURES_DIR),
            LEAN_STANDIN_EVAL_ROOT=str(self.device_eval_root),
            LEAN_STANDIN_PYTHON=sys.executable,
        )
        process = subprocess.Popen(self._enter([str(self.adbd_path)]), env=env,
                                   cwd=str(self.work_dir), stdout=subprocess.DEVNULL,
                                   stderr=open(self.work_dir / f"adbd-{port}.log", "a"))
        self._adbds[port] = process
        # The adbd inside nsenter is nsenter's child: record the real pid for the stand-ins.
        # An adbd that exits at once (its port still held) is restarted by connect().
        deadline = time.monotonic() + 60
        while process.poll() is None:
            children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
            pids = children.read_text().split() if children.exists() else []
            if pids or self._is_adbd(process.pid):
                if port == ADBD_PORTS[0]:
                    (self.state_dir / "adbd.pid").write_text(pids[0] if pids else str(process.pid))
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"adbd for port {port} did not start within 60 s")
            time.sleep(0.05)

    @staticmethod
    def _is_adbd(pid: int) -> bool:
        try:
            return Path(f"/proc/{pid}/comm").read_text().strip() == "adbd"
        except OSError:
            return False

    def connect(self, serial: str = SERIAL) -> None:
        port = int(serial.rsplit(":", 1)[1])
        # Retries until adbd listens; the limit only turns a hang into a clear failure.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            process = self._adbds.get(port)
            if process is not None and process.poll() is not None:
                # adbd exited at start (its port still held by the one just killed): again.
                self._adbds.pop(port)
                self.start_adbd(port)
            self.run(["adb", "disconnect", serial], check=False)
            result = self.run(["adb", "connect", serial], check=False)
            devices = self.run(["adb", "devices"], check=False).stdout
            if "connected" in result.stdout and f"{serial}\tdevice" in devices:
                return
            time.sleep(0.5)
        raise RuntimeError(f"adb could not connect to adbd at {serial}: {result.stdout.strip()}")

    def stop_adbd(self, port: int = ADBD_PORTS[0]) -> None:
        process = self._adbds.pop(port, None)
        if process is None:
            return
        children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
        for pid in (children.read_text().split() if children.exists() else []):
            if self._is_adbd(int(pid)):
                _kill(int(pid))
        _kill(process.pid)
        process.wait(timeout=10)

    def _enter(self, command: list[str]) -> list[str]:
        return ["nsenter", f"--net=/proc/{self._namespace.pid}/ns/net", "--"] + command

    def run(self, command: list[str], check: bool = True, timeout: float = 300,
            ) -> subprocess.CompletedProcess:
        result = subprocess.run(self._enter(command), env=self.env, capture_output=True,
                                text=True, timeout=timeout, cwd=str(self.work_dir))
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} exited {result.returncode}:\n"
                               f"{result.stdout}\n{result.stderr}")
        return result

    def popen(self, command: list[str]) -> subprocess.Popen:
        """Starts a command inside without waiting (output captured as text). Its SIGINT is at
        the default, as for a terminal's foreground job, so Ctrl-C can be sent to it: a shell
        that runs the tests in the background would pass SIGINT on ignored."""
        return subprocess.Popen(self._enter(command), env=self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, cwd=str(self.work_dir),
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))

    def stop(self) -> None:
        if self._namespace is None:
            return
        self.run(["adb", "kill-server"], check=False, timeout=30)
        job_pid = self.state_dir / "eval_job.pid"
        if job_pid.exists():
            pid = int(job_pid.read_text())
            try:  # only the stand-in job we started, never a recycled pid
                if b"eval_job.py" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    _kill(pid)
            except OSError:
                pass
        for port in list(self._adbds):
            self.stop_adbd(port)
        self._namespace.kill()
        self._namespace.wait(timeout=10)
        self._namespace = None


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass

"""Processes the benchmarks start: the sandbox (its own process, so its CPU is
never counted as the tool's) and measured children: CPU from wait4 on exactly
that child; peak RSS from the child's own VmHWM, because Linux's ru_maxrss of a
child also counts the peak of the parent it was forked from."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

API_KEY = "sk_car_sandbox"
PYTHON = sys.executable
SANDBOX_PIDS: dict[str, int] = {}  # a running sandbox's base URL -> its pid


@dataclass(frozen=True)
class SandboxSpec:
    seed: int = 7
    agents: int = 10
    calls: int = 1000
    now: str = "2026-06-01T00:00:00Z"
    rate: float | None = None
    max_in_flight: int | None = None
    latency_ms: float | None = None
    error_rate: float | None = None
    drop_rate: float | None = None

    def argv(self) -> list[str]:
        argv = [
            PYTHON,
            "-m",
            "retention",
            "sandbox",
            "--port",
            "0",
            "--seed",
            str(self.seed),
            "--agents",
            str(self.agents),
            "--calls",
            str(self.calls),
            "--now",
            self.now,
        ]
        knobs: dict[str, float | int | None] = {
            "--rate": self.rate,
            "--max-in-flight": self.max_in_flight,
            "--latency-ms": self.latency_ms,
            "--error-rate": self.error_rate,
            "--drop-rate": self.drop_rate,
        }
        for flag, value in knobs.items():
            if value is not None:
                argv += [flag, str(value)]
        return argv


def _drain(stream: IO[bytes]) -> None:
    # Keep reading so a chatty server never blocks on a full pipe.
    for _ in iter(lambda: stream.read(65536), b""):
        pass


@contextmanager
def sandbox(spec: SandboxSpec, *, start_timeout: float = 120.0) -> Iterator[str]:
    """Start `retention sandbox` in its own process; yield its base URL."""
    proc = subprocess.Popen(
        spec.argv(),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    try:
        url = _read_serving_line(proc, start_timeout)
        threading.Thread(target=_drain, args=(proc.stdout,), daemon=True).start()
        SANDBOX_PIDS[url] = proc.pid
        yield url
    finally:
        SANDBOX_PIDS.pop(url, None)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _read_serving_line(proc: subprocess.Popen[bytes], timeout: float) -> str:
    assert proc.stdout is not None
    found: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for raw in iter(proc.stdout.readline, b""):
            line = raw.decode(errors="replace").strip()
            if line.startswith("serving "):
                found.append(line.split(" ", 1)[1])
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    if not found:
        proc.kill()
        raise RuntimeError(f"sandbox did not print its URL within {timeout:.0f}s: {spec_of(proc)}")
    return found[0]


def spec_of(proc: subprocess.Popen[bytes]) -> str:
    args = proc.args
    return " ".join(args) if isinstance(args, list) else str(args)


@dataclass(frozen=True)
class Measured:
    """One measured child process: wall time, its own CPU and peak RSS."""

    argv: tuple[str, ...]
    exit_code: int
    wall_s: float
    cpu_s: float
    max_rss_mb: float
    stdout: str
    stderr: str


def measure(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    workdir: Path,
    timeout: float = 3600.0,
) -> Measured:
    """Run argv to completion; its own rusage comes from wait4 on its pid."""
    full_env = {**os.environ, **(env or {})}
    out_path, err_path = workdir / "child.out", workdir / "child.err"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(
            list(argv), stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=full_env
        )
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        peak = PeakRss(proc.pid)
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
            peak.stop()
        wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Measured(
        argv=tuple(argv),
        exit_code=proc.returncode,
        wall_s=wall,
        cpu_s=usage.ru_utime + usage.ru_stime,
        max_rss_mb=peak.mb if peak.mb is not None else _rss_mb(usage),
        stdout=out_path.read_text(errors="replace"),
        stderr=err_path.read_text(errors="replace"),
    )


class PeakRss:
    """Polls /proc/PID/status for VmHWM, the process's own high-water RSS (monotonic,
    so the last reading before it exits is its peak)."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self.mb: float | None = None
        self._path = Path(f"/proc/{pid}/status")
        self._interval = interval
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            text = self._path.read_text()
        except OSError:  # not Linux, or the process is gone
            return
        for line in text.splitlines():
            if line.startswith("VmHWM:"):
                kib = int(line.split()[1])
                self.mb = max(self.mb or 0.0, kib / 1024)

    def _poll(self) -> None:
        while not self._done.is_set():
            self._read()
            self._done.wait(self._interval)

    def stop(self) -> None:
        self._done.set()
        self._thread.join()


def _rss_mb(usage: resource.struct_rusage) -> float:
    # Linux reports ru_maxrss in KiB, macOS in bytes.
    divisor = 1024 * 1024 if sys.platform == "darwin" else 1024
    return usage.ru_maxrss / divisor


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a running process has used so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime: the stat file's 14th, 15th
    return ticks / os.sysconf("SC_CLK_TCK")


def retention_argv(*args: str) -> list[str]:
    return [PYTHON, "-m", "retention", *args]


def run_args(url: str, policy: Path, work: Path, now: str) -> list[str]:
    """What every benchmarked run is given: its policies, the sandbox, the clock, and an
    audit log of its own in `work`."""
    return [
        "--policies",
        str(policy),
        "--base-url",
        url,
        "--now",
        now,
        "--audit-log",
        str(work / "audit.jsonl"),
    ]

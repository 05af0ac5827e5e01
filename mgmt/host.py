"""CPU and memory of the box, from /proc (Linux): what the dashboard shows beside the SBC's figures."""

from __future__ import annotations

from pathlib import Path


class HostStats:
    def __init__(self, proc: Path = Path("/proc")) -> None:
        self.proc = proc
        self._last: tuple[int, int] | None = None  # (busy, total) jiffies at the previous sample

    def cpu_percent(self) -> float | None:
        """Busy share of all CPUs since the previous call (the first call: since boot)."""
        try:
            fields = (self.proc / "stat").read_text().splitlines()[0].split()[1:]
        except (OSError, IndexError):
            return None
        values = [int(v) for v in fields[:8]]
        idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
        total = sum(values)
        busy = total - idle
        prev_busy, prev_total = self._last or (0, 0)
        self._last = (busy, total)
        if total == prev_total:
            return 0.0
        return round(100.0 * (busy - prev_busy) / (total - prev_total), 1)

    def memory(self) -> dict[str, int] | None:
        try:
            info = {}
            for line in (self.proc / "meminfo").read_text().splitlines():
                name, _, rest = line.partition(":")
                info[name] = int(rest.split()[0]) * 1024
        except (OSError, ValueError, IndexError):
            return None
        total = info.get("MemTotal", 0)
        available = info.get("MemAvailable", info.get("MemFree", 0))
        return {"total_bytes": total, "available_bytes": available, "used_bytes": total - available}

    def load_average(self) -> list[float] | None:
        try:
            return [float(x) for x in (self.proc / "loadavg").read_text().split()[:3]]
        except (OSError, ValueError):
            return None

    def snapshot(self) -> dict[str, object]:
        return {"cpu_percent": self.cpu_percent(), "memory": self.memory(), "load_average": self.load_average()}

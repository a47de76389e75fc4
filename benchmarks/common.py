"""Helpers shared by the benchmark scripts (run as scripts from any dir)."""

import platform


def cpu_model():
    """The CPU's model name, to print beside every figure."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"

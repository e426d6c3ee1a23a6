"""Helpers shared by the benchmark scripts: commands, JSON output, machine description."""
import json
import platform
import subprocess
import sys


def run(cmd, **kw):
    """Run `cmd`, echoing it to stderr; return its stdout (raises on failure)."""
    print("+", " ".join(cmd), file=sys.stderr, flush=True)
    return subprocess.run(cmd, check=True, text=True, capture_output=True, **kw).stdout


def last_json(out):
    """The JSON object on the last line of a command's output."""
    return json.loads(out.strip().splitlines()[-1])


def cpu_name():
    """The CPU model name."""
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()

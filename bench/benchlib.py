"""Helpers shared by the benchmark scripts: commands, JSON output, machine description."""
import json
import os
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


def scrub_paths(text, repo, peers):
    """Machine paths as readers can follow them: repo-relative, ../shared/peers, ~/.cache."""
    home_cache = os.path.join(os.path.expanduser("~"), ".cache") + os.sep
    return (text.replace(os.path.abspath(peers), "../shared/peers")
            .replace(os.path.abspath(repo) + os.sep, "")
            .replace(home_cache, "~/.cache/"))


def scrub_files(paths, repo, peers):
    """Rewrite result files with `scrub_paths` (figures untouched)."""
    for p in paths:
        with open(p) as fh:
            text = fh.read()
        with open(p, "w") as fh:
            fh.write(scrub_paths(text, repo, peers))

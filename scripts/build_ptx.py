#!/usr/bin/env python3
"""Compile kernels/*.cu to kernels/ptx/*.ptx with NVRTC from CUDA 13.0 (PyPI wheels).

    python3 scripts/build_ptx.py           # (re)write every kernels/ptx/<name>.ptx
    python3 scripts/build_ptx.py --check   # compile in memory; exit 1 if any .ptx is stale

The GPU machines run driver 580 / CUDA 13.0, which refuses newer PTX, so NVRTC is pinned to
13.0. The wheels are installed (no deps) under target/nvrtc/<pins>/ on first use; CI runs on a
clean checkout, so this script installs them itself. Python standard library only.

Every kernels/*.cuh header is handed to NVRTC in memory under its bare name, and the program
is named by its bare file name, so the PTX carries no machine path; the output is checked to
hold none, and the same sources always give byte-identical PTX.
"""

import argparse
import ctypes
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KERNELS = ROOT / "kernels"
PTX_DIR = KERNELS / "ptx"
PINS = (("nvidia-cuda-nvrtc", "13.0.88"), ("nvidia-cuda-runtime", "13.0.96"))
TOOL_DIR = ROOT / "target" / "nvrtc" / "_".join(f"{n.split('-')[-1]}-{v}" for n, v in PINS)
COMPLETE_MARKER = ".complete"
NVRTC_VERSION = (13, 0)
# No --use_fast_math (parity with the CPU reference matters) and no -lineinfo (no paths).
OPTIONS = ["--gpu-architecture=compute_90", "--std=c++17"]
PTX_HEAD = (".version 9.0", ".target sm_90")
REBUILD_HINT = "run `python3 scripts/build_ptx.py` and commit kernels/ptx/"


def fail(msg):
    print(f"build_ptx: {msg}", file=sys.stderr)
    sys.exit(1)


def install_wheels():
    """Install the pinned wheels into TOOL_DIR unless a complete install is already there."""
    if (TOOL_DIR / COMPLETE_MARKER).is_file():
        return
    staging = TOOL_DIR.with_name(TOOL_DIR.name + f".partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    specs = [f"{n}=={v}" for n, v in PINS]
    print(f"build_ptx: installing {' '.join(specs)} into {TOOL_DIR.relative_to(ROOT)}", flush=True)
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
           "--no-deps", "--target", str(staging), *specs]
    env = dict(os.environ, PIP_ROOT_USER_ACTION="ignore")  # CI runs as root; the warning is noise
    if subprocess.run(cmd, env=env).returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        fail("pip could not install " + " ".join(specs))
    (staging / COMPLETE_MARKER).write_text("\n".join(specs) + "\n")
    shutil.rmtree(TOOL_DIR, ignore_errors=True)
    os.replace(staging, TOOL_DIR)


def find_one(pattern, what):
    hits = sorted(p for p in TOOL_DIR.glob(pattern) if ".alt." not in p.name)
    if not hits:
        fail(f"{what} ({pattern}) not found under {TOOL_DIR.relative_to(ROOT)}; delete it to reinstall")
    return hits[0]


class Nvrtc:
    """The few NVRTC entry points we need, through ctypes."""

    def __init__(self):
        lib_nvrtc = find_one("nvidia/*/lib/libnvrtc.so.*", "libnvrtc")
        builtins = find_one("nvidia/*/lib/libnvrtc-builtins.so.*", "libnvrtc-builtins")
        # NVRTC dlopens its builtins library by soname at compile time (error 7 when that fails);
        # loading it first, globally, satisfies that without touching LD_LIBRARY_PATH.
        ctypes.CDLL(str(builtins), mode=ctypes.RTLD_GLOBAL)
        self.lib = ctypes.CDLL(str(lib_nvrtc))
        self.lib.nvrtcGetErrorString.restype = ctypes.c_char_p
        self.include = find_one("nvidia/*/include/cuda_fp16.h", "cuda_fp16.h").parent
        major, minor = ctypes.c_int(), ctypes.c_int()
        self.call("nvrtcVersion", ctypes.byref(major), ctypes.byref(minor))
        self.version = (major.value, minor.value)

    def call(self, name, *args):
        rc = getattr(self.lib, name)(*args)
        if rc != 0:
            fail(f"{name}: {self.lib.nvrtcGetErrorString(rc).decode()} ({rc})")

    def compile(self, name, source, headers):
        """PTX bytes for `source` (named `name`), or None after printing the compile log."""
        prog = ctypes.c_void_p()
        names = list(headers)
        hdr_src = (ctypes.c_char_p * len(names))(*[headers[n] for n in names])
        hdr_names = (ctypes.c_char_p * len(names))(*[n.encode() for n in names])
        self.call("nvrtcCreateProgram", ctypes.byref(prog), source, name.encode(), len(names),
                  hdr_src, hdr_names)
        try:
            # The runtime include dir holds only vendor headers; its path never reaches the PTX
            # (checked below), and a relative form keeps even error logs machine-independent.
            opts = OPTIONS + ["-I" + os.path.relpath(self.include)]
            arr = (ctypes.c_char_p * len(opts))(*[o.encode() for o in opts])
            rc = self.lib.nvrtcCompileProgram(prog, len(opts), arr)
            size = ctypes.c_size_t()
            self.call("nvrtcGetProgramLogSize", prog, ctypes.byref(size))
            log = ctypes.create_string_buffer(size.value)
            self.call("nvrtcGetProgramLog", prog, log)
            if rc != 0:
                err = self.lib.nvrtcGetErrorString(rc).decode()
                print(f"build_ptx: NVRTC failed on kernels/{name}: {err}\n{log.value.decode()}",
                      file=sys.stderr)
                return None
            if log.value.strip():
                print(f"build_ptx: kernels/{name}: NVRTC warnings:\n{log.value.decode()}",
                      file=sys.stderr)
            self.call("nvrtcGetPTXSize", prog, ctypes.byref(size))
            ptx = ctypes.create_string_buffer(size.value)
            self.call("nvrtcGetPTX", prog, ptx)
            return ptx.raw.rstrip(b"\0")
        finally:
            self.call("nvrtcDestroyProgram", ctypes.byref(prog))


def validate(name, ptx):
    """A problem with this PTX as a string, or None."""
    lines = [ln.strip() for ln in ptx.decode("ascii", errors="replace").splitlines()]
    for want in PTX_HEAD:
        if want not in lines:
            return f"{name}: PTX lacks the line `{want}` (wrong NVRTC or options?)"
    for path in {str(ROOT), str(TOOL_DIR), str(Path.home()), os.getcwd()}:
        if path not in ("", "/") and path.encode() in ptx:
            return f"{name}: PTX embeds the machine path {path}"
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true",
                    help="compile in memory and exit 1 if any kernels/ptx/*.ptx is stale or missing")
    args = ap.parse_args()

    install_wheels()
    nvrtc = Nvrtc()
    pins = ", ".join(f"{n}=={v}" for n, v in PINS)
    print(f"build_ptx: NVRTC {nvrtc.version[0]}.{nvrtc.version[1]} ({pins}); {' '.join(OPTIONS)}")
    if nvrtc.version != NVRTC_VERSION:
        fail(f"NVRTC {nvrtc.version} is not the pinned {NVRTC_VERSION}")

    sources = sorted(KERNELS.glob("*.cu"))
    if not sources:
        fail("no kernels/*.cu found")
    headers = {p.name: p.read_bytes() for p in sorted(KERNELS.glob("*.cuh"))}
    problems, fresh, total = [], [], 0
    for src in sources:
        name = src.name
        out = PTX_DIR / (src.stem + ".ptx")
        rel = out.relative_to(ROOT)
        ptx = nvrtc.compile(name, src.read_bytes(), headers)
        if ptx is None:
            problems.append(f"kernels/{name} does not compile (log above)")
            continue
        bad = validate(name, ptx)
        if bad:
            problems.append(bad)
            continue
        total += len(ptx)
        old = out.read_bytes() if out.is_file() else None
        if args.check:
            if old is None:
                problems.append(f"{rel} is missing (from kernels/{name})")
            elif old != ptx:
                problems.append(f"{rel} is stale: kernels/{name} (or a kernels/*.cuh) changed")
            else:
                fresh.append(str(rel))
        elif old != ptx:
            PTX_DIR.mkdir(exist_ok=True)
            out.write_bytes(ptx)
            print(f"build_ptx: wrote {rel} ({len(ptx)} bytes)")
        else:
            print(f"build_ptx: {rel} unchanged ({len(ptx)} bytes)")
    stems = {s.stem for s in sources}
    for orphan in sorted(PTX_DIR.glob("*.ptx")):
        if orphan.stem not in stems:
            problems.append(f"{orphan.relative_to(ROOT)} has no kernels/{orphan.stem}.cu; delete it")

    if problems:
        for p in problems:
            print(f"build_ptx: {p}", file=sys.stderr)
        fail(f"{len(problems)} problem(s); {REBUILD_HINT}" if args.check else f"{len(problems)} problem(s)")
    if args.check:
        print(f"build_ptx: all {len(fresh)} PTX files fresh ({total} bytes)")


if __name__ == "__main__":
    main()

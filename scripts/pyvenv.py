"""Tiny helper shared by the fixture scripts: make sure a pinned virtual environment exists under
the repository root (/.venv-* is gitignored) and re-exec the calling script inside it.

Only the standard library is used here, so the scripts can be started with any python3 >= 3.9.
Set LORADOCK_NO_VENV=1 to run in the current interpreter as is (you provide the packages).
"""
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Versions the committed fixtures were generated with. Changing a pin may change the fixtures.
FIXTURE_PINS = [
    "torch==2.15.0",
    "transformers==5.24.0",
    "peft==0.21.2",
    "safetensors==0.8.0",
    "tokenizers==0.23.3",
    "numpy==2.4.6",
    "gguf==0.19.0",
]
# llama-cpp-python builds its vendored llama.cpp from source (CPU, -march=native): several
# minutes on 2 cores. CMAKE_BUILD_PARALLEL_LEVEL limits the build's parallelism.
LLAMACPP_PINS = [
    "llama-cpp-python==0.3.36",
    "numpy==2.4.6",
    "gguf==0.19.0",
    "safetensors==0.8.0",
]
def llamacpp_cmake_args():
    """CMAKE_ARGS for building llama-cpp-python here, or None for its default (native) build.

    On a CPU with AMX (Sapphire Rapids and later) ggml's native build compiles its AMX matrix
    path in, but AMX tiles need the kernel's permission (arch_prctl XTILEDATA), which sandboxed
    hosts here do not give: llama.cpp then dies with SIGSEGV in ggml_backend_amx_mul_mat on its
    first product (seen 2026-12-02). There the ISA is named instead of "native": AVX2/FMA/F16C
    and the AVX-512 parts this CPU has, without AMX.
    """
    try:
        flags = set(next(l for l in open("/proc/cpuinfo") if l.startswith("flags")).split())
    except (OSError, StopIteration):
        return None
    if "amx_tile" not in flags:
        return None
    args = ["-DGGML_NATIVE=OFF", "-DGGML_AVX=ON", "-DGGML_AVX2=ON", "-DGGML_FMA=ON", "-DGGML_F16C=ON",
            "-DGGML_BMI2=ON"]
    for flag, opt in [("avx512f", "AVX512"), ("avx512_vnni", "AVX512_VNNI"), ("avx512vbmi", "AVX512_VBMI"),
                      ("avx512_bf16", "AVX512_BF16")]:
        if flag in flags:
            args.append(f"-DGGML_{opt}=ON")
    args += ["-DGGML_AMX_TILE=OFF", "-DGGML_AMX_INT8=OFF", "-DGGML_AMX_BF16=OFF"]
    return " ".join(args)



def venv_path(name):
    return os.path.join(REPO, name)


def venv_python(name):
    return os.path.join(venv_path(name), "bin", "python")


def inside(name):
    return os.path.realpath(sys.prefix) == os.path.realpath(venv_path(name))


def ensure_venv(name, pins, log=lambda m: print(m, file=sys.stderr, flush=True), cmake_args=None):
    """Create REPO/name with `pins` installed (once; a stamp file records the pins and the
    CMAKE_ARGS of packages built from source)."""
    if cmake_args is None and name == ".venv-llamacpp":
        cmake_args = llamacpp_cmake_args()
    path = venv_path(name)
    py = venv_python(name)
    stamp = os.path.join(path, ".loradock-pins")
    want = "\n".join(pins + ([f"CMAKE_ARGS={cmake_args}"] if cmake_args else [])) + "\n"
    if os.path.exists(stamp) and open(stamp).read() == want and os.path.exists(py):
        return py
    if not os.path.exists(py):
        log(f"[pyvenv] creating {path}")
        subprocess.check_call([sys.executable, "-m", "venv", path])
        subprocess.check_call([py, "-m", "pip", "install", "-q", "--upgrade", "pip"])
    log(f"[pyvenv] installing into {name}: {' '.join(pins)} (may take minutes)")
    env = dict(os.environ)
    env.setdefault("CMAKE_BUILD_PARALLEL_LEVEL", "2")
    extra = []
    if cmake_args:
        # A wheel built earlier with other flags must not come back from pip's cache.
        env["CMAKE_ARGS"] = cmake_args
        extra = ["--no-cache-dir", "--force-reinstall"]
    subprocess.check_call([py, "-m", "pip", "install", *extra, *pins], env=env)
    with open(stamp, "w") as f:
        f.write(want)
    return py


def reexec_in(name, pins):
    """Re-exec the running script inside the venv (no-op when already inside it, or when
    LORADOCK_NO_VENV=1). PYTHONHASHSEED is fixed so set ordering cannot leak into outputs."""
    if os.environ.get("LORADOCK_NO_VENV") == "1":
        return
    if inside(name) and os.environ.get("PYTHONHASHSEED") == "0":
        return
    py = ensure_venv(name, pins)
    env = dict(os.environ)
    env["PYTHONHASHSEED"] = "0"
    os.execve(py, [py, os.path.abspath(sys.argv[0]), *sys.argv[1:]], env)


def two_stage_main(doc, script, stage_hf, stage_llamacpp, report, after_all=None):
    """The command line shared by the fixture scripts: `--stage hf` runs `stage_hf` in
    .venv-fixtures (transformers + PEFT), `--stage llamacpp` runs `stage_llamacpp` in
    .venv-llamacpp, and `--stage all` (the default) runs hf, then `script --stage llamacpp` in
    the other venv, then `after_all(env)` if given. `report()` ends a single-stage run."""
    import argparse
    import subprocess
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stage", choices=["all", "hf", "llamacpp"], default="all")
    a = ap.parse_args()
    if a.stage in ("all", "hf"):
        reexec_in(".venv-fixtures", FIXTURE_PINS)
        stage_hf()
        if a.stage == "all":
            py = ensure_venv(".venv-llamacpp", LLAMACPP_PINS)
            env = dict(os.environ, PYTHONHASHSEED="0")
            subprocess.check_call([py, os.path.abspath(script), "--stage", "llamacpp"], env=env)
            if after_all:
                after_all(env)
            return
    else:
        reexec_in(".venv-llamacpp", LLAMACPP_PINS)
        stage_llamacpp()
    report()

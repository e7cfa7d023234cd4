"""What this CPU is, as far as int8 accuracy and benchmark figures depend on it. Internal.

onnxruntime's x86 int8 kernels multiply uint8 activations by int8 weights. With
VNNI (``avx512_vnni``, ``avx_vnni``; every AMX CPU has it too) ``vpdpbusd`` sums
the products in 32 bits: exact. Without it (AVX2-only CPUs such as AMD Zen 1-3,
Intel before Cascade Lake / Alder Lake, and AVX-512 CPUs without VNNI such as
Skylake-SP) the kernels use ``vpmaddubsw``, which adds each *pair* of products
and saturates the sum to int16: ``255 * 127 * 2 = 64770`` is clipped to 32767.
7-bit weights (``reduce_range``: ``|w| <= 64``) keep every pair within
``255 * 64 * 2 = 32640``, so such a model is exact on every x86 CPU.
onnxruntime's Arm64 (NEON) kernels widen the 8-bit products to 16 bits and
accumulate them in 32 bits (``umull``/``smull`` + pairwise add-long, or
``udot``/``sdot``), so no saturation there: that is reasoned from the kernels,
not measured on an Arm CPU.

The flags come from ``/proc/cpuinfo`` on Linux and ``sysctl`` on macOS;
elsewhere (Windows) they are unknown (``None``), and nothing is claimed.
"""

from __future__ import annotations

import functools
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

__all__ = ["cpu_info", "int8_warning", "u8s8_saturates"]

X86 = {"x86_64", "amd64", "i386", "i686", "x86"}
ARM = {"aarch64", "arm64", "armv8l", "armv8b"}


_UARCH = {  # (vendor, family, first model, last model): name; x86 CPUs benchmarks name
    ("AuthenticAMD", 23, 0x00, 0x2F): "Zen / Zen+",
    ("AuthenticAMD", 23, 0x30, 0x7F): "Zen 2",
    ("AuthenticAMD", 25, 0x00, 0x0F): "Zen 3",
    ("AuthenticAMD", 25, 0x10, 0x1F): "Zen 4",
    ("AuthenticAMD", 25, 0x20, 0x5F): "Zen 3",
    ("AuthenticAMD", 25, 0x60, 0x7F): "Zen 4",
    ("AuthenticAMD", 25, 0xA0, 0xAF): "Zen 4",
    ("AuthenticAMD", 26, 0x00, 0xFF): "Zen 5",
    ("GenuineIntel", 6, 0x55, 0x55): "Skylake-SP / Cascade Lake",
    ("GenuineIntel", 6, 0x6A, 0x6A): "Ice Lake-SP",
    ("GenuineIntel", 6, 0x8F, 0x8F): "Sapphire Rapids",
    ("GenuineIntel", 6, 0xCF, 0xCF): "Emerald Rapids",
    ("GenuineIntel", 6, 0xAD, 0xAD): "Granite Rapids",
}
"""x86 microarchitectures by CPUID family and model (cloud CPUs often report only
"AMD EPYC" as their name); anything else is ``None``."""


def _identity() -> dict[str, Any]:
    """vendor, family, model number and stepping of an x86 CPU from /proc/cpuinfo (each
    ``None`` when unknown), and the microarchitecture they name, if known."""
    fields: dict[str, Any] = {"vendor": None, "family": None, "model_number": None,
                              "stepping": None}
    keys = {"vendor_id": "vendor", "cpu family": "family", "model": "model_number",
            "stepping": "stepping"}
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        text = ""
    for line in text.split("\n\n")[0].splitlines():
        key, _, value = line.partition(":")
        name = keys.get(key.strip().lower())
        if name is None or fields[name] is not None or not value.strip():
            continue
        value = value.strip()
        fields[name] = value if name == "vendor" else (int(value) if value.isdigit() else None)
    fields["microarchitecture"] = next(
        (label for (vendor, family, lo, hi), label in _UARCH.items()
         if fields["vendor"] == vendor and fields["family"] == family
         and fields["model_number"] is not None and lo <= fields["model_number"] <= hi),
        None)
    return fields


@functools.lru_cache(maxsize=1)
def _flags_and_model() -> tuple[frozenset[str] | None, str]:
    """CPU feature flags (lower case, Linux names) or None when unknown, and the model name."""
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    try:
        if cpuinfo.is_file():
            flags: set[str] = set()
            for line in cpuinfo.read_text(errors="replace").splitlines():
                key, _, value = line.partition(":")
                key = key.strip().lower()
                if key in {"flags", "features"} and not flags:
                    flags = set(value.split())
                elif key in {"model name", "cpu model"} and value.strip():
                    model = value.strip()
            return (frozenset(flags) if flags else None), model
        if platform.system() == "Darwin":
            return _darwin()
    except (OSError, ValueError, subprocess.SubprocessError):
        pass
    return None, model


def _darwin() -> tuple[frozenset[str] | None, str]:
    def sysctl(name: str) -> str:
        done = subprocess.run(["sysctl", "-n", name], capture_output=True, text=True,
                              timeout=5, check=False)
        return done.stdout.strip() if done.returncode == 0 else ""

    model = sysctl("machdep.cpu.brand_string") or platform.machine()
    words = (sysctl("machdep.cpu.features") + " " + sysctl("machdep.cpu.leaf7_features")).split()
    if not words:  # Apple silicon: Arm64, NEON always there
        return (frozenset({"asimd"}) if platform.machine().lower() in ARM else None), model
    names = {"AVX2": "avx2", "AVX512F": "avx512f", "AVX512BW": "avx512bw",
             "AVX512VNNI": "avx512_vnni", "AVXVNNI": "avx_vnni", "AMX_INT8": "amx_int8"}
    return frozenset(names.get(w.upper(), w.lower()) for w in words), model


def u8s8_saturates() -> bool | None:
    """True on an x86 CPU without VNNI (onnxruntime's u8s8 kernels saturate int16
    pair sums there), False on x86 with VNNI and on Arm, None when unknown."""
    machine = platform.machine().lower()
    if machine in ARM:
        return False
    if machine not in X86:
        return None
    flags = _flags_and_model()[0]
    if flags is None:
        return None
    return not flags & {"avx512_vnni", "avx_vnni", "avx512vnni", "avxvnni"}


def cpu_info() -> dict[str, Any]:
    """The CPU a figure was measured on: model, logical cores, the SIMD flags int8 and
    fp32 speed depend on (``None``: unknown here), onnxruntime's version."""
    flags, model = _flags_and_model()

    def has(*names: str) -> bool | None:
        return None if flags is None else bool(flags & set(names))

    try:
        import onnxruntime

        ort_version = onnxruntime.__version__
    except ImportError:  # pragma: no cover - a runtime dependency
        ort_version = None
    return {
        "model": model,
        **_identity(),
        "machine": platform.machine(),
        "cores": os.cpu_count(),
        "avx2": has("avx2"),
        "avx512": has("avx512f"),
        "avx512_vnni": has("avx512_vnni", "avx512vnni"),
        "avx_vnni": has("avx_vnni", "avxvnni"),
        "vnni": has("avx512_vnni", "avx_vnni", "avx512vnni", "avxvnni"),
        "avx512_bf16": has("avx512_bf16"),
        "amx": has("amx_int8"),
        "neon": has("asimd", "neon"),
        "int8_u8s8_saturates": u8s8_saturates(),
        "onnxruntime": ort_version,
    }


def cpu_summary(info: dict[str, Any] | None = None) -> str:
    """``"AMD EPYC (Zen 4, 2 cores; AVX2, AVX-512, VNNI; onnxruntime 1.32.0)"``: the
    microarchitecture where the CPU's family and model number name one (:data:`_UARCH`)."""
    info = cpu_info() if info is None else info
    names = [label for key, label in (("avx2", "AVX2"), ("avx512", "AVX-512"),
                                      ("vnni", "VNNI"), ("amx", "AMX")) if info.get(key)]
    if str(info.get("machine", "")).lower() in ARM:
        features = "Arm64, NEON"
    elif info.get("avx2") is None:
        features = "SIMD flags unknown"
    else:
        features = ", ".join(names) if names else "no AVX2"
        if info.get("vnni") is False:
            features += ", no VNNI"
    uarch = info.get("microarchitecture")
    return (f"{info['model']} ({uarch + ', ' if uarch else ''}{info['cores']} cores; "
            f"{features}; onnxruntime {info['onnxruntime']})")


def full_range_int8(quantization: Any) -> bool:
    """Whether a ``provenance["quantization"]`` record says int8 weights use the full
    8-bit range (files written before the 7-bit default, or ``reduce_range=False``)."""
    if not isinstance(quantization, dict) or quantization.get("type") != "int8":
        return False
    if "reduce_range" in quantization:
        return not quantization["reduce_range"]
    return "7-bit" not in str(quantization.get("weights", ""))


def int8_warning(quantization: Any, source: str) -> str | None:
    """The warning to give when a model quantised this way is loaded on this CPU, if any."""
    if not full_range_int8(quantization) or not u8s8_saturates():
        return None
    return (
        f"{source}: this int8 model has full-range 8-bit weights, and this CPU "
        f"({_flags_and_model()[1]}) has no VNNI: onnxruntime's int8 kernels saturate here "
        "and the landmarks can be far off (outputs 15.6 % of their range off on an AVX2-only "
        "CPU). Re-quantise the fp32 model with this pipdetect (`pipdetect convert --quantize "
        "int8`, or pipdetect.convert.quantize.quantize_model: 7-bit weights, exact on every "
        "CPU), or use the fp32 model."
    )

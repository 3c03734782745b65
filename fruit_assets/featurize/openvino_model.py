"""MobileNetV2 in reduced precision through OpenVINO: the converted ONNX model compiled for bfloat16.

Why OpenVINO bf16 (measured side by side, benchmarks/README.md): on a CPU with AMX or AVX-512 BF16
it runs the same ONNX graph at about twice ONNX Runtime's fp32 rate, with no calibration step and
no second model file to keep; ONNX Runtime's int8 (static QDQ) reaches about the same speed but
moves each vector almost four times as far from fp32. The model is the registry's fp32 ONNX bytes,
compiled with an inference precision hint: nothing is converted or stored for the precision.

A CPU without native bf16 would run a hint of bf16 in fp32 (OpenVINO falls back without a word),
or emulate it slowly: ``require_native`` refuses instead, in one line, on the driver before a run
and in every executor before its first image (executors may sit on another instance type).
"""

from __future__ import annotations

import io

import numpy as np

from fruit_assets.errors import UserFacingError
from fruit_assets.featurize.model import EMBEDDING_SIZE

# OpenVINO's names for the precisions (INFERENCE_PRECISION_HINT, OPTIMIZATION_CAPABILITIES).
_HINTS = {"bf16": "bf16", "fp32": "f32"}
_CAPABILITIES = {"bf16": "BF16", "fp32": "FP32"}


class PrecisionUnsupportedError(UserFacingError):
    """This CPU cannot run the configured precision natively."""


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "this CPU"


def _cpu_flags() -> set[str] | None:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return None


# x86 flags of a bf16 dot product. OpenVINO also lists BF16 for AVX2-VNNI-2 CPUs, which only
# convert to and from bf16: there it would be emulated.
_BF16_FLAGS = {"amx_bf16", "avx512_bf16"}


def native_precisions() -> list[str]:
    """The precisions OpenVINO's CPU plugin runs natively here: in its OPTIMIZATION_CAPABILITIES and,
    for bf16 on x86, backed by a bf16 dot-product instruction."""
    import platform

    import openvino as ov

    capabilities = set(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    flags = _cpu_flags()
    if flags is not None and platform.machine() in ("x86_64", "AMD64") and not flags & _BF16_FLAGS:
        capabilities.discard("BF16")
    return [precision for precision, name in _CAPABILITIES.items() if name in capabilities]


def require_native(precision: str) -> None:
    if precision not in native_precisions():
        raise PrecisionUnsupportedError(
            f"{cpu_name()} has no native {precision} (it needs AMX or AVX-512 BF16): running it would "
            f"be emulated or silently fp32; set FRUIT_INFERENCE_PRECISION=fp32 or run on such a CPU"
        )


class OpenVinoEmbedder:
    """One compiled OpenVINO model; ``threads`` inference threads (0: OpenVINO's default, all cores)."""

    def __init__(self, onnx_bytes: bytes, precision: str, threads: int = 1, batch_size: int = 8):
        import openvino as ov

        require_native(precision)
        core = ov.Core()
        model = core.read_model(io.BytesIO(onnx_bytes))
        config = {
            "INFERENCE_PRECISION_HINT": _HINTS[precision],
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": 1,
            # Spark runs one worker process per task slot: pinned threads of two workers would
            # share one core while the other idles.
            "ENABLE_CPU_PINNING": False,
        }
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        self.compiled = core.compile_model(model, "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.batch_size = batch_size
        self.precision = precision

    def embed(self, preprocessed: np.ndarray) -> np.ndarray:
        """float32 (n, 224, 224, 3) already preprocessed -> float32 (n, 1280), computed in
        ``precision``; the batch dimension is dynamic, so a short last batch is run as it is."""
        out = np.empty((len(preprocessed), EMBEDDING_SIZE), dtype=np.float32)
        for start in range(0, len(preprocessed), self.batch_size):
            chunk = np.ascontiguousarray(preprocessed[start : start + self.batch_size], dtype=np.float32)
            out[start : start + len(chunk)] = self.request.infer({0: chunk})[0]
        return out

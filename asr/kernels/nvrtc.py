"""NVRTC through ctypes, for kernels that need an architecture-specific target (sm_90a).

MLX's `cuda_kernel` compiles for the plain architecture (sm_90), where Hopper's warpgroup
instructions are not allowed; `mx.fast.precompiled_cuda_kernel` runs a cubin built here.
The library is the one MLX itself loaded.
"""

from __future__ import annotations

import ctypes
import glob
import os

_library: ctypes.CDLL | None = None


class NVRTCError(RuntimeError):
    pass


def _candidates() -> list[str]:
    found = []
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.split()[-1]
                if "libnvrtc.so" in os.path.basename(path) and path not in found:
                    found.append(path)
    except OSError:
        pass
    found += ["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"]
    for home in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if home:
            found += sorted(glob.glob(os.path.join(home, "lib64", "libnvrtc.so*")))
    return found


def library() -> ctypes.CDLL:
    global _library
    if _library is None:
        for name in _candidates():
            try:
                _library = ctypes.CDLL(name)
                break
            except OSError:
                continue
        else:
            raise NVRTCError("libnvrtc could not be loaded")
    return _library


def _device_attribute(attribute: int) -> int:
    driver = ctypes.CDLL("libcuda.so.1")
    device = ctypes.c_int()
    if driver.cuInit(0) != 0 or driver.cuDeviceGet(ctypes.byref(device), 0) != 0:
        raise NVRTCError("no CUDA device")
    value = ctypes.c_int()
    driver.cuDeviceGetAttribute(ctypes.byref(value), attribute, device)
    return value.value


def compute_capability() -> tuple[int, int]:
    """The device's compute capability, through the CUDA driver."""
    # CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR and _MINOR
    return _device_attribute(75), _device_attribute(76)


def multiprocessor_count() -> int:
    return _device_attribute(16)  # CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT


def compile_cubin(source: str, name: str, arch: str) -> bytes:
    """Machine code for `arch` (e.g. "sm_90a") of a self-contained CUDA source."""
    lib = library()
    program = ctypes.c_void_p()
    status = lib.nvrtcCreateProgram(
        ctypes.byref(program), source.encode(), f"{name}.cu".encode(), 0, None, None
    )
    if status != 0:
        raise NVRTCError(f"nvrtcCreateProgram failed ({status})")
    try:
        options = [f"--gpu-architecture={arch}".encode(), b"--std=c++17", b"-default-device"]
        array = (ctypes.c_char_p * len(options))(*options)
        status = lib.nvrtcCompileProgram(program, len(options), array)
        if status != 0:
            size = ctypes.c_size_t()
            lib.nvrtcGetProgramLogSize(program, ctypes.byref(size))
            log = ctypes.create_string_buffer(size.value + 1)
            lib.nvrtcGetProgramLog(program, log)
            raise NVRTCError(f"{name}: {log.value.decode(errors='replace')}")
        size = ctypes.c_size_t()
        lib.nvrtcGetCUBINSize(program, ctypes.byref(size))
        cubin = ctypes.create_string_buffer(size.value)
        lib.nvrtcGetCUBIN(program, cubin)
        return cubin.raw
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(program))

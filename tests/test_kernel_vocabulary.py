"""One kernel vocabulary for the two GPU backends (issue 14): every kernel of a family has the
same name and takes the same parameters in CUDA C (``gpu_plan.kernel_names()``, each taking
the family's struct) and in Numba (``numba_backend.kernel_table``: the struct's pointer
fields as arrays, then one tuple of its scalar fields), except the kernels ``ONLY`` lists.

Table-driven: ``FAMILIES`` names each family's struct fields; a family joins the table when
both backends speak it. Same maths in the same order (issue 18): conv_grad_bias agrees bit for
bit between the Numba twin (simulated) and the CUDA C kernel (host emulation)."""

from __future__ import annotations

import numba
import numpy as np
import pytest

from gpuconv.backends import gpu_plan, numba_backend

FAMILIES = {"conv": gpu_plan.CONV_FIELDS, "pool": gpu_plan.POOL_FIELDS}
# kernel -> (the backend that has it, why the other does not)
ONLY = {
    "conv_gemm_mma": ("cuda", "tensor cores: Numba offers precision='ieee' only"),
}


def cuda_family(name: str) -> str:
    if gpu_plan.is_layer_kernel(name):
        return "layers"  # the trainer's kernels (layers.cu): CUDA only so far
    return "pool" if gpu_plan.is_pool_kernel(name) else "conv"


def numba_family(fields) -> str | None:
    return next((f for f, known in FAMILIES.items() if fields is known), None)


def base_name(name: str) -> str:
    return name.partition("<")[0]


def cuda_kernels() -> dict[str, list]:
    """CUDA kernel base name -> the fields of the struct it takes."""
    return {base_name(n): FAMILIES[cuda_family(n)] for n in gpu_plan.kernel_names()
            if cuda_family(n) in FAMILIES}


def numba_kernels(dtype) -> dict[str, list]:
    return {base_name(n): e.fields for n, e in numba_backend.kernel_table(dtype).items()
            if numba_family(e.fields) is not None}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_both_backends_implement_one_kernel_list(dtype):
    cuda, nb = cuda_kernels(), numba_kernels(dtype)
    for name, (owner, _) in ONLY.items():
        assert name in (cuda if owner == "cuda" else nb), f"{name} is no longer {owner}-only"
        assert name not in (nb if owner == "cuda" else cuda), f"{name} is on both: not in ONLY"
    shared = {n for n in cuda if n not in ONLY} | {n for n in nb if n not in ONLY}
    assert sorted(n for n in cuda if n not in ONLY) == sorted(shared), "Numba-only kernels"
    assert sorted(n for n in nb if n not in ONLY) == sorted(shared), "CUDA-only kernels"
    for name in shared:
        assert [f for f, _ in nb[name]] == [f for f, _ in cuda[name]], name


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_numba_signatures_are_the_struct(dtype):
    """Each Numba kernel's argument types are the struct's: a flat array per pointer field (of
    int64 for indices and error words, else of the dtype), then one tuple with a slot per
    scalar (4 per 4-vector)."""
    real = numba.from_dtype(np.dtype(dtype))
    for name, entry in numba_backend.kernel_table(dtype).items():
        if numba_family(entry.fields) is None:
            continue
        pointers = gpu_plan.pointer_names(entry.fields)
        slots = len(gpu_plan.scalars(entry.fields, {}))
        *arrays, scalars = entry.signature
        assert len(arrays) == len(pointers), name
        want = [numba.types.Array(numba.int64 if p in gpu_plan.INDEX_POINTERS else real, 1, "C")
                for p in pointers]
        assert list(arrays) == want, name
        assert len(scalars) == slots == max(gpu_plan.scalar_slots(entry.fields).values()) + 1, name


def test_scalar_tuple_follows_the_struct_order():
    last = gpu_plan.CONV_FIELDS[-1][0]
    params = dict(a_stride=(1, 2, 3, 4), batch=5, **{last: 6})
    packed = gpu_plan.scalars(gpu_plan.CONV_FIELDS, params)
    slots = gpu_plan.scalar_slots(gpu_plan.CONV_FIELDS)
    assert packed[slots["a_stride"]:slots["a_stride"] + 4] == (1, 2, 3, 4)
    assert packed[slots["batch"]] == 5 and packed[slots[last]] == 6 == packed[-1]
    assert sum(packed) == 21  # every other field 0


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_grad_bias_is_the_cuda_tree_bit_for_bit(dtype):
    """conv_grad_bias in Numba (simulated, with the GPU's block of 256) and in CUDA C (the host
    emulation) add the same numbers in the same order: per-thread strided sums, one tree."""
    from numba import cuda

    from gpuconv.kernels import conv_numba
    from tests.cuda_host import harness

    if harness.compiler() is None:
        pytest.skip("no C++ compiler for the CUDA host emulation")
    gy = np.random.default_rng(3).standard_normal((3, 2, 19, 17)).astype(dtype) * 1e3
    strides = tuple(s // gy.itemsize for s in gy.strides)
    want = np.empty(2, dtype)
    buffers = {"grad_out": gy, "out": want}
    executor = harness.HostExecutor(harness.build())
    for step in gpu_plan.conv_grad_bias_plan(gy.shape, strides, dtype).launches:
        params = gpu_plan.pack(step.kernel, step.params, lambda n: executor.pointer(buffers[n]))
        executor.launch(step.kernel, step.grid, step.block, params)
    (step,) = gpu_plan.numba_conv_grad_bias_plan(gy.shape, dtype).launches  # the GPU's block
    kernel = conv_numba.conv_kernels(np.dtype(dtype), step.block[0])["conv_grad_bias"]
    got = cuda.device_array(2, dtype)
    null = cuda.device_array(1, dtype)[1:]
    kernel[step.grid, step.block](cuda.to_device(gy.ravel()), null, null, got,
                                  gpu_plan.scalars(gpu_plan.CONV_FIELDS, step.params))
    assert step.block == (256, 1, 1)
    np.testing.assert_array_equal(got.copy_to_host(), want)

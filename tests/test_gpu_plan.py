"""The CuPy backend's launch planning (gpuconv/backends/gpu_plan.py), without a GPU: grids,
blocks, tile choice, split-K, workspaces, the parameter structs against common.cuh, and that
importing gpuconv and asking for backend='cupy' behave where CuPy has no device."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest

import gpuconv.functional as F
from gpuconv.backends import BackendUnavailableError, cuda_source, gpu_plan as plan, unavailable_reason
from gpuconv.shapes import ConvSpec, PoolSpec


def _contiguous(shape):
    return tuple(int(s) for s in np.array(np.cumprod((shape[1:] + (1,))[::-1])[::-1]))


@pytest.mark.parametrize("struct, fields", [("ConvParams", plan.CONV_FIELDS), ("PoolParams", plan.POOL_FIELDS)])
def test_param_structs_match_common_cuh(struct, fields):
    text = (cuda_source.resources.files("gpuconv.kernels") / "common.cuh").read_text()
    body = re.search(rf"struct {struct} {{(.*?)\n}};", text, re.S).group(1)
    names = []
    for decl in re.sub(r"//[^\n]*", "", body).split(";"):
        decl = re.sub(r"\[\d+\]", "", decl).replace("*", " ").strip()
        if decl:
            names += [part.split()[-1] for part in decl.split(",")]
    assert names == [name for name, _ in fields]
    assert plan.CONV_PARAMS.itemsize == 8 * (len(plan.CONV_FIELDS) + 6)


@pytest.mark.parametrize("rows, cols, dtype, want", [
    (256, 50176, "float32", "large"), (64, 50176, "float32", "medium"), (8, 100, "float32", "small"),
    (256, 50176, "float64", "medium"), (16, 50176, "float64", "small"), (128, 256, "float32", "small"),
])
def test_choose_tile(rows, cols, dtype, want):
    assert plan.choose_tile(rows, cols, dtype).name == want


@pytest.mark.parametrize("tile, itemsize, ok", [("large", 4, True), ("medium", 4, False),
                                                 ("medium", 8, True), ("small", 8, False)])
def test_vec_ok_needs_a_full_vector_per_thread(tile, itemsize, ok):
    assert plan.TILES[tile].vec_ok(itemsize) is ok
    assert plan.TF32_TILE.vec_ok(4)


def test_tile_resources():
    assert plan.TILES["large"].smem_bytes(4) == 16896   # as ptxas reports for sm_90
    assert plan.TF32_TILE.smem_bytes(4) == 34816
    for t in plan.TILES.values():  # static shared memory: at most 48 KiB
        assert t.bm * t.bk % t.threads == 0 and t.smem_bytes(8) <= 48 * 1024
    assert plan.TF32_TILE.smem_bytes(4) <= 48 * 1024


def test_forward_plan_grid_and_vec_flag():
    x, w = (32, 256, 56, 56), (64, 256, 1, 1)
    spec = ConvSpec.make(2, (1, 1))
    (launch,) = plan.conv_forward_plan(x, _contiguous(x), w, _contiguous(w), spec, "float32", True,
                                       vec_aligned=True).launches
    assert launch.kernel == "conv_gemm<float, 64, 64, 8, 4, 4, false>"
    assert launch.grid == (32 * 56 * 56 // 64, 1, 1) and launch.block == (256, 1, 1)
    assert launch.params["vec_b"] == 0  # the medium tile has no full vector per thread
    big = plan.conv_forward_plan(x, _contiguous(x), (128, 256, 1, 1), _contiguous((128, 256, 1, 1)),
                                 spec, "float32", False, vec_aligned=True).launches[0]
    assert big.kernel.startswith("conv_gemm<float, 128") and big.params["vec_b"] == 1
    unaligned = plan.conv_forward_plan(x, _contiguous(x), (128, 256, 1, 1), _contiguous((128, 256, 1, 1)),
                                       spec, "float32", False, vec_aligned=False).launches[0]
    assert unaligned.params["vec_b"] == 0


def test_tf32_plan_and_depthwise_direct():
    x, w = (8, 64, 28, 28), (128, 64, 3, 3)
    spec = ConvSpec.make(2, (3, 3), padding=1)
    tf32 = plan.conv_forward_plan(x, _contiguous(x), w, _contiguous(w), spec, "float32", False, "tf32")
    assert tf32.launches[0].kernel == "conv_gemm_tf32<false>" and tf32.launches[0].block == (128, 1, 1)
    f64 = plan.conv_forward_plan(x, _contiguous(x), w, _contiguous(w), spec, "float64", False, "tf32")
    assert f64.launches[0].kernel.startswith("conv_gemm<double")  # TF32 is float32 only
    dw = (128, 1, 3, 3)
    depthwise = ConvSpec.make(2, (3, 3), stride=2, padding=1, groups=64)
    (launch,) = plan.conv_forward_plan(x, _contiguous(x), dw, _contiguous(dw), depthwise, "float32",
                                       False).launches
    assert launch.kernel == "conv_direct<float>" and launch.grid == (1, 2, 64)  # 14*14 pixels, 2 per group


def test_grad_input_phases_and_padding_adjoint():
    gy, w = (2, 8, 5, 5), (8, 4, 3, 3)
    spec = ConvSpec.make(2, (3, 3), stride=(2, 3), padding=1)
    (launch,) = plan.conv_grad_input_plan(gy, _contiguous(gy), w, _contiguous(w), spec, (10, 14),
                                          "float32", False).launches
    assert launch.grid[2] == 6 and launch.params["transposed"] == 1   # one slice per phase
    assert launch.params["out"] == "out" and (launch.params["lo_h"], launch.params["len_h"]) == (1, 10)
    reflect = ConvSpec.make(2, (3, 3), stride=2, padding=1, padding_mode="reflect")
    p = plan.conv_grad_input_plan(gy, _contiguous(gy), w, _contiguous(w), reflect, (10, 10), "float64",
                                  True)
    assert [l.kernel for l in p.launches][1] == "conv_pad_adjoint<double>"
    assert p.workspaces == {"padded": (2 * 4 * 12 * 12, "float64")}
    assert p.launches[0].params["bias"] is None and p.launches[1].params["bias"] == "bias"


def test_grid_z_limit_is_a_clear_error():
    gy, w = (1, 70000, 4, 4), (70000, 1, 3, 3)
    spec = ConvSpec.make(2, (3, 3), groups=70000)
    with pytest.raises(ValueError, match="launch slices"):
        plan.conv_grad_input_plan(gy, _contiguous(gy), w, _contiguous(w), spec, (6, 6), "float32", False)


@pytest.mark.parametrize("blocks, tiles, groups, want", [
    (1, 1000, 1, (63, 16)), (512, 1000, 1, (1, 1000)), (4, 3, 1, (3, 1)), (1, 0, 1, (1, 0)),
    (1, 1000, 2000, (32, 32)),
])
def test_split_k(blocks, tiles, groups, want):
    splits, per = plan.split_k(blocks, tiles, groups, partial_bytes=1024)
    assert (splits, per) == want
    assert splits * per >= tiles and (splits - 1) * per < max(tiles, 1)   # no empty split


def test_grad_weight_plan_workspace():
    gy, x = (32, 64, 56, 56), (32, 64, 56, 56)
    spec = ConvSpec.make(2, (3, 3), padding=1)
    p = plan.conv_grad_weight_plan(gy, _contiguous(gy), x, _contiguous(x), spec, (3, 3), "float32")
    gemm, reduce = p.launches
    splits = gemm.params["splits"]
    assert gemm.grid[2] == splits > 1 and gemm.params["out"] == "partials"
    assert p.workspaces["partials"] == (splits * 64 * 576, "float32")
    assert reduce.kernel == "conv_splitk_reduce<float>" and reduce.params["splits"] == splits
    many = plan.conv_grad_weight_plan(gy, _contiguous(gy), x, _contiguous(x), spec, (3, 3), "float32",
                                      sm_count=1)
    assert len(many.launches) == 1 and many.launches[0].params["out"] == "out"


def test_pool_plans():
    spec = PoolSpec.make(2, 3, 2, 1)
    x = (32, 64, 112, 112)
    (launch,) = plan.max_pool_plan(x, _contiguous(x), spec, "float32", False).launches
    assert launch.grid == (32 * 64 * 56 * 56 // 256, 1, 1) and launch.params["idx"] is None
    bwd = plan.max_pool_backward_plan((32, 64, 56, 56), _contiguous((32, 64, 56, 56)), (112, 112), "float32")
    assert [l.kernel for l in bwd.launches] == ["max_index_bounds", "max_index_members",
                                                "pool2d_backward<float>"]
    assert bwd.launches[0].grid == (112, 1, 1) and bwd.workspaces["tables"] == (2 * (112 + 224), "int64")
    lp = plan.lp_pool_backward_plan((2, 3, 4, 4), _contiguous((2, 3, 4, 4)), (2, 3, 8, 8),
                                    _contiguous((2, 3, 8, 8)), PoolSpec.make(2, 2), "float64", 2.0)
    assert lp.launches[1].params["g_stride"] == (48, 16, 4, 1) and lp.workspaces["scale"] == (96, "float64")


def test_every_planned_kernel_is_compiled():
    names = set(plan.kernel_names())
    code, _, _ = cuda_source.module_source()
    for name in names:
        assert re.sub(r"<.*", "", name) in code


def test_pack_resolves_pointers():
    p = plan.pack("conv_grad_bias<float>", dict(a="g", out=None, a_stride=(1, 2, 3, 4), batch=5),
                  {"g": 1234}.__getitem__)
    assert p["a"][0] == 1234 and p["out"][0] == 0 and tuple(p["a_stride"][0]) == (1, 2, 3, 4)


# --------------------------------------------------------------------------- availability
def test_import_without_cupy():
    code = ("import sys; sys.modules['cupy'] = None\n"
            "import gpuconv, gpuconv.functional as F, numpy as np\n"
            "from gpuconv.backends import unavailable_reason, BackendUnavailableError\n"
            "assert 'not installed' in unavailable_reason('cupy')\n"
            "try:\n F.conv2d(np.ones((1,1,3,3)), np.ones((1,1,1,1)), backend='cupy')\n"
            "except BackendUnavailableError as e: print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "backend 'cupy' is unavailable" in out.stdout


def test_cupy_without_a_device_is_a_clear_error():
    reason = unavailable_reason("cupy")
    if reason is None:
        pytest.skip("a CUDA device is present")
    with pytest.raises(BackendUnavailableError, match="backend 'cupy' is unavailable"):
        F.conv2d(np.ones((1, 1, 3, 3)), np.ones((1, 1, 1, 1)), backend="cupy")

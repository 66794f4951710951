"""The GEMM loaders' copies into shared memory (kernels/conv.cu, Loader), for every float32 tile
the planner launches: each (k, row) of A and (k, column) of B is copied exactly once, to its
layout's place, and a warp's copies of one step hit 32 distinct banks, one-element copies (a
request of 32 lanes) and 16-byte copies (VEC_A: a request per 8 lanes) alike. A conflict
costs shared-memory cycles the main loops cannot spare: the 8x8 CUDA-core tiles issue as many
shared-memory wavefronts as FFMA per SM partition. The Loader's own placement functions,
compiled on the CPU against tests/cuda_host (float64 tiles and the epilogue's staging are not
checked here)."""

from __future__ import annotations

import subprocess

import pytest

from gpuconv.backends import cuda_source, gpu_plan
from tests.cuda_host import harness

PROGRAM = r"""
#include "cuda_shim.h"
#include <algorithm>
#include <cstdio>
#include <vector>
@SOURCE@
// Whether every thread's copies land where the layouts place their (k, row) and (k, column),
// each of the BK x BM and BK x BN exactly once.
template <class L>
bool placed_once(int threads, int bk, int bm, int bn) {
    typedef typename L::LayoutA LA;
    typedef typename L::LayoutB LB;
    std::vector<int> a_hits(bk * bm), b_hits(bk * bn);
    bool ok = true;
    for (int t = 0; t < threads; ++t) {
        int kk, l;
        L::lanes(t, kk, l);
        ok &= kk >= 0 && kk < bk;
        for (int i = 0; i < L::PA && ok; ++i) {
            const int row = L::first_a_row(kk, l) + i * L::A_STRIDE, k0 = kk - kk % L::V;
            for (int e = 0; e < L::V && ok; ++e) {
                ok &= row < bm && L::a_dst_of(kk, l) + L::a_shift(i) + e == LA::at(k0 + e, row);
                if (ok) ++a_hits[(k0 + e) * bm + row];
            }
        }
        for (int j = 0; j < L::PB && ok; ++j) {
            const int col = LB::first(l) + LB::step(j, L::STRIDE);
            ok &= col < bn && L::b_dst_of(kk, l) + L::b_shift(j) == LB::at(kk, col);
            if (ok) ++b_hits[kk * bn + col];
        }
    }
    for (int h : a_hits) ok &= h == 1;
    for (int h : b_hits) ok &= h == 1;
    return ok;
}

// The most copies of one request that share a bank, over the warps, steps' copies and requests.
template <class L>
int conflict_degree(int threads) {
    int degree = 0;
    for (int side = 0; side < 2; ++side) {  // A, then B
        const int copies = side ? L::PB : L::PA, words = side == 0 ? L::V : 1;
        const int request = 32 / words;      // threads of one 128-byte request
        for (int t0 = 0; t0 < threads; t0 += request)
            for (int c = 0; c < copies; ++c) {
                int hits[32] = {};
                for (int t = t0; t < t0 + request; ++t) {
                    int kk, l;
                    L::lanes(t, kk, l);
                    const int word = side ? L::b_dst_of(kk, l) + L::b_shift(c)
                                          : L::a_dst_of(kk, l) + L::a_shift(c);
                    for (int e = 0; e < words; ++e) degree = std::max(degree, ++hits[(word + e) % 32]);
                }
            }
    }
    return degree;
}

int main() {
@CASES@
}
"""


def _cases() -> dict[str, str]:
    """{tile and variant: (its Loader type, its TileConfig)}."""
    cases = {}
    for precision in gpu_plan.PRECISIONS:
        for name in gpu_plan.TILES_FOR[("float32", precision)]:
            t = gpu_plan.TILES[name]
            if t.terms:
                loader = "WgmmaLoader" if t.wgmma else "MmaLoader"
                for vec in ("false", "true"):
                    cases[f"{name}-vec_a={vec}"] = (
                        f"{loader}<{t.bm}, {t.bn}, {vec}, TAP_MASKS, int>", t)
            else:
                cases[name] = (
                    f"CoreLoader<float, {t.bm}, {t.bn}, {t.bk}, {t.threads}, TAP_MASKS, int>", t)
    return cases


@pytest.fixture(scope="module")
def degrees(tmp_path_factory) -> dict[str, int]:
    if harness.compiler() is None:
        pytest.skip("needs a C++ compiler (g++)")
    cases = _cases()
    lines = "\n".join(
        f'    std::printf("{name} %d %d\\n", conflict_degree<{loader}>({t.threads}), '
        f'(int)placed_once<{loader}>({t.threads}, {t.bk}, {t.bm}, {t.bn}));'
        for name, (loader, t) in cases.items())
    folder = tmp_path_factory.mktemp("loader_banks")
    (folder / "banks.cpp").write_text(PROGRAM.replace("@SOURCE@", cuda_source.kernel_source())
                                      .replace("@CASES@", lines))
    subprocess.run([harness.compiler(), "-std=c++20", "-O1", "-w", f"-I{harness.SHIM.parent}",
                    "banks.cpp", "-o", "banks"], cwd=folder, check=True)
    out = subprocess.run([folder / "banks"], capture_output=True, text=True, check=True).stdout
    return {name: (int(degree), int(placed))
            for name, degree, placed in (line.split() for line in out.splitlines())}


@pytest.mark.parametrize("case", sorted(_cases()))
def test_every_element_is_copied_once_to_its_place(degrees, case):
    assert degrees[case][1] == 1, f"{case}: an element copied twice, never, or to another place"


@pytest.mark.parametrize("case", sorted(_cases()))
def test_a_warps_copies_hit_32_banks(degrees, case):
    assert degrees[case][0] == 1, f"{case}: {degrees[case][0]} copies of one request share a bank"

"""The mutant catalogue: plausible bugs, each with the tests that must catch it.

``scripts/check_mutants.py`` (``make check-mutants``) plants each one in a scratch copy of the
tree and runs its tests, one of which must fail; tests/test_mutants.py checks in CI that every
entry still applies (its text occurs exactly once in its file) and names tests that pytest
collects. The entries come from mutation campaigns over each layer; among them are the bugs
the suite once missed, which the tests named beside them were written for. An entry whose
code is rewritten is rewritten with it, or dropped with the code it mutated.
"""

from __future__ import annotations

from typing import NamedTuple, Optional


class Mutant(NamedTuple):
    name: str          # unique, kebab-case
    path: str          # the file, relative to the repository root
    old: str           # text that occurs exactly once in that file...
    new: str           # ...and what the mutant writes instead
    fault: str         # the bug, in words
    tests: tuple       # pytest node ids (functions or single cases), one of which must fail
    sanitizer: Optional[str] = None  # "asan" as make check-memory, "tsan" as make check-races


MUTANTS = [
    # --------------------------------------------------------------------------- kernels/conv.cu
    Mutant("conv-live-phase-without-rows", "kernels/conv.cu",
           "if (ah.taps == 0 || ah.count == 0) continue;", "if (ah.taps == 0) continue;",
           "nth_live_phase counts a row phase that taps reach but that holds no row",
           ("tests/test_cupy_host.py::test_grad_input_phases_that_reach_no_row",)),
    Mutant("conv-live-phase-without-columns", "kernels/conv.cu",
           "if (aw.taps == 0 || aw.count == 0) continue;", "if (aw.taps == 0) continue;",
           "nth_live_phase counts a column phase that taps reach but that holds no column",
           ("tests/test_cupy_host.py::test_grad_input_phases_that_reach_no_row[one-column-float32]",)),
    Mutant("conv-gemm-group-ignores-phases", "kernels/conv.cu",
           "const int z_group = (int)blockIdx.z / (int)(p.phases * p.splits);\n"
           "    const int t = reread<TID_X>(), col = first_col(t);",
           "const int z_group = (int)blockIdx.z / (int)p.splits;\n"
           "    const int t = reread<TID_X>(), col = first_col(t);",
           "conv_gemm's epilogue takes the group from blockIdx.z without dividing out the stride "
           "phases (a transposed conv's bias row of another group)",
           ("tests/test_cupy_host.py::test_grad_input_phases_that_reach_no_row[one-row-gemm-float32]",)),
    Mutant("conv-mma-group-ignores-phases", "kernels/conv.cu",
           "const int z_group = (int)blockIdx.z / (int)(p.phases * p.splits);\n"
           "    const int t = reread<TID_X>(), r0 = warp_row(t)",
           "const int z_group = (int)blockIdx.z / (int)p.splits;\n"
           "    const int t = reread<TID_X>(), r0 = warp_row(t)",
           "conv_gemm_mma's epilogue takes the group from blockIdx.z without dividing out the "
           "stride phases",
           ("tests/test_cupy_host.py::test_transposed_conv_bias_in_every_stride_phase"
            "[float32-tf32x3-tf32x3-64x64]",)),
    Mutant("conv-wgmma-group-ignores-phases", "kernels/conv.cu",
           "const int z_group = (int)blockIdx.z / (int)(p.phases * p.splits);\n"
           "    const int t = reread<TID_X>(), w = t / 32",
           "const int z_group = (int)blockIdx.z / (int)p.splits;\n"
           "    const int t = reread<TID_X>(), w = t / 32",
           "conv_gemm_wgmma's epilogue takes the group from blockIdx.z without dividing out the "
           "stride phases",
           ("tests/test_cupy_host.py::test_transposed_conv_bias_in_every_stride_phase"
            "[float32-tf32-wgmma-128x128]",)),
    Mutant("conv-source-index-column-without-group", "kernels/conv.cu",
           "table[j].b = sl.b_base + (ZERO_PAD ? c.b + (Index)c.h * sl.b_sh + (Index)c.w * sl.b_sw : c.b);",
           "table[j].b = ZERO_PAD ? sl.b_base + c.b + (Index)c.h * sl.b_sh + (Index)c.w * sl.b_sw : c.b;",
           "the loader's column table under a padding mode other than zeros forgets the group's "
           "channel offset b_base (every group reads group 0's input)",
           ("tests/test_cupy_host.py::test_grouped_conv_through_source_index[reflect-float32]",)),
    Mutant("conv-tap-walk-drops-row-carry", "kernels/conv.cu",
           "if (d1 >= L.n1) { d1 -= L.n1; ++d0; }", "if (d1 >= L.n1) { d1 -= L.n1; }",
           "the incremental tap walk wraps the middle digit without carrying into the outer one",
           ("tests/test_conv_relu.py::test_conv_relu[gemm-groups-cupy-host-float32]",)),
    Mutant("conv-pixel-bounds-one-past-row", "kernels/conv.cu",
           "ok[j] = k_ok && (unsigned)h < (unsigned)b_h && (unsigned)w < (unsigned)b_w;",
           "ok[j] = k_ok && (unsigned)h < (unsigned)b_h && (unsigned)w <= (unsigned)b_w;",
           "the loader's pixel bounds let a tap one column past the input's row through",
           ("tests/test_conv_relu.py::test_fused_model_trains_bit_identically[cupy-host-float32]",)),
    Mutant("conv-pixel-masks-past-slice-column-reads", "kernels/conv.cu",
           "1u << c.d1 | 1u << (sl.col.n1 + c.d2) : NO_TAP;",
           "1u << c.d1 | 1u << (sl.col.n1 + c.d2) : 0u;",
           "the tensor-core grad-weight's columns past the slice pass every bounds test: they "
           "copy the first column's taps in the padding, before the input's first element "
           "(no value changes: those columns are never stored)",
           ("tests/test_cupy_host.py::test_conv_kernels[basic-float32-tf32-128x256]",), "asan"),
    Mutant("conv-tap-mask-either-bit", "kernels/conv.cu",
           "ok[j] = BOUNDS == TAP_MASKS ? !(tap & ~c.taps) : !(c.taps & outside);",
           "ok[j] = BOUNDS == TAP_MASKS ? (tap & c.taps) != 0 : !(c.taps & outside);",
           "a tap-masked copy is issued when either its row bit or its column bit is set, not both",
           ("tests/test_conv_relu.py::test_conv_relu[gemm-groups-cupy-host-float32]",)),
    Mutant("conv-splitk-relu-before-bias", "kernels/conv.cu",
           "    if (p.bias) s += ((const T*)p.bias)[i / p.plane % p.out_c];\n"
           "    if (p.relu) s = s < T(0) ? T(0) : s;\n",
           "    if (p.relu) s = s < T(0) ? T(0) : s;\n"
           "    if (p.bias) s += ((const T*)p.bias)[i / p.plane % p.out_c];\n",
           "conv_splitk_reduce applies the fused ReLU before adding the bias",
           ("tests/test_conv_relu.py::test_conv_relu[split-k-cupy-host-float32]",)),
    Mutant("conv-epilogue-band-unfenced", "kernels/conv.cu",
           "        if (pass) __syncthreads();  // the previous band is stored\n",
           "",
           "the CUDA-core GEMM stages its next band of outputs before the last one is stored",
           ("tests/test_cupy_host.py::test_conv_kernels",), "tsan"),
    Mutant("conv-direct-chunk-unfenced", "kernels/conv.cu",
           "        __syncthreads();  // the previous chunk's weights are consumed\n",
           "",
           "conv_direct loads the next chunk of weights while threads still read the last",
           ("tests/test_cupy_host.py::"
            "test_conv_direct_stages_its_weights_chunk_by_chunk",), "tsan"),
    Mutant("conv-direct-chunk-restarts", "kernels/conv.cu",
           "const Position<int> tp = decode(s.red, k0 + i / ROWS);",
           "const Position<int> tp = decode(s.red, i / ROWS);",
           "conv_direct stages every chunk's weights from the first tap of the reduction",
           ("tests/test_cupy_host.py::test_conv_direct_stages_its_weights_chunk_by_chunk",)),
    Mutant("conv-main-loop-unfenced", "kernels/conv.cu",
           "        __syncthreads();         // everyone's copies; and the write stage is free\n",
           "",
           "the GEMM main loop computes on a stage before every thread's copies into it landed",
           ("tests/test_cupy_host.py::test_conv_kernels",), "tsan"),
    Mutant("conv-epilogue-staged-early", "kernels/conv.cu",
           "    copy_wait<0>();\n    __syncthreads();  // every warp's last step is consumed\n"
           "    const int z_group = (int)blockIdx.z / (int)(p.phases * p.splits);\n"
           "    const int t = reread<TID_X>(), col = first_col(t);",
           "    copy_wait<0>();\n"
           "    const int z_group = (int)blockIdx.z / (int)(p.phases * p.splits);\n"
           "    const int t = reread<TID_X>(), col = first_col(t);",
           "the CUDA-core GEMM stages its outputs over the tiles other warps still multiply",
           ("tests/test_cupy_host.py::test_conv_kernels",), "tsan"),
    Mutant("conv-splitk-reduce-drops-last-split", "kernels/conv.cu",
           "for (i64 k = 1; k < p.splits; ++k) s += part[k * p.total + i];",
           "for (i64 k = 1; k + 1 < p.splits; ++k) s += part[k * p.total + i];",
           "conv_splitk_reduce leaves out the last split's partial sums",
           ("tests/test_cupy_host.py::test_split_k_forward_with_bias_and_relu[ieee]",)),
    Mutant("conv-splitk-reduce-reverse-order", "kernels/conv.cu",
           "    T s = part[i];\n"
           "    for (i64 k = 1; k < p.splits; ++k) s += part[k * p.total + i];",
           "    T s = part[(p.splits - 1) * p.total + i];\n"
           "    for (i64 k = p.splits - 2; k >= 0; --k) s += part[k * p.total + i];",
           "conv_splitk_reduce sums the splits' partials last split first, not in split order "
           "(deterministic still, but another rounding than the documented order)",
           ("tests/test_cupy_host.py::test_split_k_partials_are_summed_in_split_order",)),
    Mutant("conv-splitk-bias-in-every-split", "kernels/conv.cu",
           "bias(!WG && p.splits == 1 ? (const T*)p.bias : nullptr)",
           "bias(!WG ? (const T*)p.bias : nullptr)",
           "the GEMM epilogue adds the bias in each split's partials (and the reduce once more)",
           ("tests/test_cupy_host.py::test_split_k_forward_with_bias_and_relu[ieee]",)),
    Mutant("conv-splitk-relu-in-every-split", "kernels/conv.cu",
           "relu(!WG && p.splits == 1 && p.relu)",
           "relu(!WG && p.relu)",
           "the GEMM epilogue applies the fused ReLU to each split's partial sums, before the "
           "split-K sum",
           ("tests/test_cupy_host.py::test_split_k_forward_with_bias_and_relu[ieee]",)),
    Mutant("conv-phase-first-row-rounded-down", "kernels/conv.cu",
           "const int u0 = (lo - r + s - 1) / s;",
           "const int u0 = (lo - r) / s;",
           "a grad-input stride phase's first written row is rounded down, not up (a row before "
           "the written region: grad-input writes a row before its output)",
           ("tests/test_cupy_host.py::test_conv_kernels[stride2-asym-float32-128x128x32]",), "asan"),
    Mutant("conv-phase-tap-row-step-without-gcd", "kernels/conv.cu",
           "a.st = -(d / g);",
           "a.st = -d;",
           "a grad-input phase's grad_out row steps by the dilation, not dilation / gcd(stride, "
           "dilation), per tap",
           ("tests/test_cupy_host.py::test_conv_kernels[groups-float32-128x128]",)),
    Mutant("conv-direct-spread-row-step-without-dilation", "kernels/conv.cu",
           "row_step = g.hs * g.b_sh - g.n2 * col_step,",
           "row_step = g.b_sh - g.n2 * col_step,",
           "conv_direct's spread tap walk moves one input row per kernel row, not the dilation's",
           ("tests/test_cupy_host.py::test_conv_direct[groups-float32]",
            "tests/test_cupy_host.py::test_conv_direct[circular-float32]",)),
    Mutant("conv-direct-segment-row-one-past", "kernels/conv.cu",
           "const int col_end = (unsigned)(row_h + th) < (unsigned)g.b_h ? g.b_w : 0;",
           "const int col_end = (unsigned)(row_h + th) <= (unsigned)g.b_h ? g.b_w : 0;",
           "conv_direct's segment layout reads the row just past the input (the bottom padding)",
           ("tests/test_cupy_host.py::test_conv_direct[basic-float32]",)),
    Mutant("conv-grad-bias-contiguous-plane", "kernels/conv.cu",
           "s += gy[n * p.a_stride[0] + h * p.a_stride[2] + w * p.a_stride[3]];",
           "s += gy[n * p.a_stride[0] + pix];",
           "conv_grad_bias reads each plane of grad_out as contiguous, not by its row and "
           "column strides",
           ("tests/test_cupy_host.py::test_grad_bias_reads_grad_out_by_its_strides[float32]",)),
    Mutant("conv-mma-tf32x3-drops-small-times-big", "kernels/conv.cu",
           "                        mma_tf32(acc[i][j], b_small, a_big[j]);\n",
           "",
           "3xTF32 on mma.sync drops one of its three products (small(B) * big(A))",
           ("tests/test_cupy_host.py::test_conv_kernels[basic-float32-tf32x3-128x256]",)),
    Mutant("conv-wgmma-tf32x3-small-term-from-big", "kernels/conv.cu",
           "wgmma_m64n128k8_tf32_rs(acc + 64 * n, a_small[h], big);",
           "wgmma_m64n128k8_tf32_rs(acc + 64 * n, a_big[h], big);",
           "3xTF32 on wgmma multiplies A's big part where its small part belongs",
           ("tests/test_cupy_host.py::"
            "test_conv_kernels[stride-gt-kernel-float32-wgmma-tf32x3-128x128]",)),
    Mutant("conv-tap-walk-drops-column-carry", "kernels/conv.cu",
           "if (d2 >= L.n2) { d2 -= L.n2; ++d1; }",
           "if (d2 >= L.n2) { d2 -= L.n2; }",
           "the incremental tap walk wraps the inner digit without carrying into the middle one",
           ("tests/test_cupy_host.py::test_conv_kernels[basic-float32-128x128]",)),
    Mutant("conv-loader-partial-a-tile-rounded-down", "kernels/conv.cu",
           "(sl.M - m0 - first_row + A_STRIDE - 1) / A_STRIDE",
           "(sl.M - m0 - first_row) / A_STRIDE",
           "the loader counts the A rows of a partial last row tile rounded down (its last rows "
           "copied as zeros)",
           ("tests/test_cupy_host.py::test_conv_kernels[wide-rows-float32-128x128]",)),
    Mutant("conv-loader-reads-one-past-reduction", "kernels/conv.cu",
           "const bool k_ok = k_left > 0;",
           "const bool k_ok = k_left >= 0;",
           "the loader copies reduction index K (one past the last) in a partial last k-tile",
           ("tests/test_cupy_host.py::test_conv_kernels[wide-rows-float32-128x128]",)),
    Mutant("conv-direct-epilogue-group-ignores-phases", "kernels/conv.cu",
           "const Epilogue<T, int, false> ep(p, s, (int)blockIdx.z / (int)p.phases);",
           "const Epilogue<T, int, false> ep(p, s, (int)blockIdx.z);",
           "conv_direct's epilogue takes the group from blockIdx.z without dividing out the "
           "stride phases (a transposed conv's bias of another channel)",
           ("tests/test_cupy_host.py::test_grad_input_phases_that_reach_no_row[one-row-float32]",)),
    Mutant("conv-pad-adjoint-trailing-candidate-one-past", "kernels/conv.cu",
           "return t < before ? t : t == before ? before + i : n + t - 1;",
           "return t < before ? t : t == before ? before + i : n + t;",
           "conv_pad_adjoint's trailing-pad candidates start one column too far (the first "
           "trailing pad's gradient is not folded back)",
           ("tests/test_cupy_host.py::test_conv_kernels[reflect-float32-32x64]",)),
    Mutant("conv-fill-bias-channel-without-plane", "kernels/conv.cu",
           "((T*)p.out)[i] = bias ? bias[i / p.plane % p.out_c] : T(0);",
           "((T*)p.out)[i] = bias ? bias[i % p.out_c] : T(0);",
           "conv_fill_bias takes the channel as the flat index modulo the channels, not index / "
           "plane modulo the channels",
           ("tests/test_cupy_host.py::test_grad_input_launches_only_reached_phases",)),
    Mutant("conv-tile-store-vector-offset-unchecked", "kernels/conv.cu",
           "vec = vec && off[0] >= 0 && off[0] % W == 0;",
           "vec = vec && off[0] >= 0;",
           "the GEMM epilogue takes a 16-byte store without checking that its first column's "
           "offset is a multiple of 16 bytes (a row stride phase's rows of 6: offset 14)",
           ("tests/test_cupy_host.py::"
            "test_grad_input_row_phases_store_16_bytes_only_at_aligned_offsets[64x64]",
            "tests/test_cupy_host.py::"
            "test_grad_input_row_phases_store_16_bytes_only_at_aligned_offsets[tf32x3-64x64]",), "asan"),
    # ------------------------------------------------------------------------ kernels/common.cuh
    Mutant("common-tf32-big-truncated", "kernels/common.cuh",
           "big = (__float_as_uint(x) + 0x1000u) & 0xffffe000u;",
           "big = __float_as_uint(x) & 0xffffe000u;",
           "split_tf32 truncates 3xTF32's big part instead of rounding it to nearest (the small "
           "part's truncation error is then biased)",
           ("tests/test_cupy_host.py::test_tf32x3_errors_are_unbiased",)),
    Mutant("common-circular-below-off-by-one", "kernels/common.cuh",
           "if (mode == PAD_CIRCULAR) return i < 0 ? i + n : i - n;",
           "if (mode == PAD_CIRCULAR) return i < 0 ? i + n - 1 : i - n;",
           "source_index wraps a circular padding position before the input one place short",
           ("tests/test_cupy_host.py::test_depthwise_kernels[k3-circular-mult3-float32]",)),
    Mutant("common-block-reduce-reuses-buffer-unfenced", "kernels/common.cuh",
           "    __syncthreads();  // buf is reused by the next call\n",
           "",
           "block_reduce returns before every thread has read the total, which the next call "
           "overwrites",
           ("tests/test_cupy_layers_host.py::"
            "test_batch_norm_inference_and_no_input_grad",), "tsan"),
    Mutant("common-reflect-trailing-as-symmetric", "kernels/common.cuh",
           "return i < 0 ? -i : 2 * (n - 1) - i;",
           "return i < 0 ? -i : 2 * n - 1 - i;",
           "source_index reflects past the input's end symmetrically (edge repeated), not as "
           "reflect (edge not repeated)",
           ("tests/test_cupy_host.py::test_conv_kernels[reflect-float32-32x64]",)),
    Mutant("common-tf32x3-big-keeps-eleven-bits", "kernels/common.cuh",
           "big = (__float_as_uint(x) + 0x1000u) & 0xffffe000u;",
           "big = (__float_as_uint(x) + 0x1000u) & 0xfffff000u;",
           "split_tf32 keeps 11 mantissa bits in the big part: the MMA drops the 11th, which "
           "the small part does not carry",
           ("tests/test_cupy_host.py::test_conv_kernels[basic-float32-tf32x3-128x256]",)),
    Mutant("common-store-vec-misaligned", "kernels/common.cuh",
           "if (V % N == 0 && count == V && aligned16(dst)) {",
           "if (V % N == 0 && count == V) {",
           "store_vec takes 16-byte stores at any address (pooling rows of 6 outputs: every "
           "other row starts 8 bytes off a 16-byte boundary)",
           ("tests/test_cupy_host.py::test_max_pool[dilated-ceil-random-float32]",), "asan"),
    # --------------------------------------------------------------------------- kernels/pool.cu
    Mutant("pool-avg-backward-gy-contiguous", "kernels/pool.cu",
           "s += gy[oh * p.g_stride[2] + ow * p.g_stride[3]] / (T)avg_divisor",
           "s += gy[oh * aw.out + ow] / (T)avg_divisor",
           "the average / Lp backward gather reads grad_out as contiguous rows, not by its strides",
           ("tests/test_cupy_host.py::test_pool_backwards_read_strided_views[float32]",)),
    Mutant("pool-lp-scale-gy-contiguous", "kernels/pool.cu",
           "const T gy = ((const T*)p.gy)[n * p.g_stride[0] + c * p.g_stride[1] +\n"
           "                                                  oh * p.g_stride[2] + (t.col0 + v) * p.g_stride[3]];",
           "const T gy = ((const T*)p.gy)[(plane * ah.out + oh) * aw.out + t.col0 + v];",
           "the Lp gradient's per-window scale reads grad_out as contiguous, not by its strides",
           ("tests/test_cupy_host.py::test_pool_backwards_read_strided_views[float32]",)),
    Mutant("pool-max-backward-gy-contiguous", "kernels/pool.cu",
           "const T g = gy[oh * p.g_stride[2] + ow * p.g_stride[3]];",
           "const T g = gy[(i64)oh * aw.out + ow];",
           "the max-pool backward reads grad_out's rows as contiguous, not by its strides",
           ("tests/test_cupy_host.py::test_pool_backwards_read_strided_views[float32]",)),
    Mutant("pool-window-check-between-column-taps", "kernels/pool.cu",
           "if (c >= c0 && c < c1 && (int)(c - c0) % cs == 0) return;",
           "if (c >= c0 && c < c1) return;",
           "the max-pool backward's window check accepts an index between two dilated column taps",
           ("tests/test_host_overhead.py::test_gpu_max_pool_backward_flags_an_index_outside_its_window"
            "[cupy-dilated_padded]",)),
    Mutant("pool-window-check-past-last-column", "kernels/pool.cu",
           "if (c >= c0 && c < c1 && (int)(c - c0) % cs == 0) return;",
           "if (c >= c0 && c <= c1 && (int)(c - c0) % cs == 0) return;",
           "the max-pool backward's window check accepts an index one column past the window",
           ("tests/test_host_overhead.py::test_gpu_max_pool_backward_flags_an_index_outside_its_window"
            "[cupy-overlapping]",)),
    Mutant("pool-window-check-between-row-taps", "kernels/pool.cu",
           "    for (int r = r0; r < r1; r += rs) {\n        const i64 c = at - (i64)r * p.w;",
           "    for (int r = r0; r < r1; ++r) {\n        const i64 c = at - (i64)r * p.w;",
           "the max-pool backward's window check accepts an index on a row between two dilated "
           "row taps",
           ("tests/test_host_overhead.py::test_gpu_max_pool_backward_flags_an_index_outside_its_window"
            "[cupy-dilated_padded]",)),
    Mutant("pool-max-one-pass-of-planes", "kernels/pool.cu",
           "        max_taps(p, ah, oh, r0, r1, rs);\n"
           "        for (i64 plane = t.plane0; plane < p.n * p.c; plane += t.plane_step) {",
           "        max_taps(p, ah, oh, r0, r1, rs);\n"
           "        for (i64 plane = t.plane0; plane < p.n * p.c; plane += p.n * p.c) {",
           "max_pool2d forward covers only the planes of the grid's first pass (no loop past "
           "the grid's z)",
           ("tests/test_cupy_host.py::test_kernels_loop_past_the_grid[max]",)),
    Mutant("pool-global-one-pass-of-planes", "kernels/pool.cu",
           "base < planes; base += (i64)gridDim.z * blockDim.z) {",
           "base < planes; base += planes) {",
           "global pooling covers only the planes of the grid's first pass",
           ("tests/test_cupy_host.py::test_kernels_loop_past_the_grid[global-max]",)),
    Mutant("pool-backward-one-pass-of-rows", "kernels/pool.cu",
           "one element at a time\n    for (int h = t.row0; h < ah.n; h += t.row_step) {",
           "one element at a time\n    for (int h = t.row0; h < ah.n; h += ah.n) {",
           "the average / Lp backward covers only the rows of the grid's first pass (no loop past "
           "the grid's y)",
           ("tests/test_cupy_host.py::test_kernels_loop_past_the_grid[avg-backward]",)),
    Mutant("pool-max-first-tap-rounded-down", "kernels/pool.cu",
           "first = start < 0 ? start + (-start + step - 1) / step * step : start;",
           "first = start < 0 ? start + (-start) / step * step : start;",
           "a dilated max window starting in the padding takes its first tap in the padding "
           "(rounded down, not up, to the next tap inside)",
           ("tests/test_cupy_host.py::test_max_pool[dilated-ceil-random-float32]",)),
    Mutant("pool-avg-window-past-trailing-pad", "kernels/pool.cu",
           "end = imin(start + a.k, a.n + a.pad);",
           "end = start + a.k;",
           "an average window of ceil mode that runs past the trailing padding counts the "
           "positions past it (count_include_pad divides by the whole kernel)",
           ("tests/test_cupy_host.py::test_avg_pool[include-pad-ceil-float32]",)),
    Mutant("pool-members-first-rounded-down", "kernels/pool.cu",
           "lo = first <= 0 ? 0 : (first + a.s - 1) / a.s;",
           "lo = first <= 0 ? 0 : first / a.s;",
           "the pooling backward's first window holding an element is rounded down (a window "
           "that ends before it)",
           ("tests/test_cupy_host.py::test_avg_pool[include-pad-float32]",)),
    Mutant("pool-adaptive-end-rounded-down", "kernels/pool.cu",
           "end = (int)(((unsigned)(o + 1) * (unsigned)n - 1) / (unsigned)out) + 1;",
           "end = (int)((unsigned)(o + 1) * (unsigned)n / (unsigned)out);",
           "an adaptive window ends at floor((o+1) n / out), not the ceiling (its last row or "
           "column left out)",
           ("tests/test_cupy_host.py::test_adaptive_pools[down-float32]",)),
    Mutant("pool-adaptive-end-wraps-in-32-bits", "kernels/pool.cu",
           "end = (int)(((unsigned)(o + 1) * (unsigned)n - 1) / (unsigned)out) + 1;",
           "end = (int)(((unsigned)(o + 1) * (unsigned)n + (unsigned)out - 1) / (unsigned)out);",
           "an adaptive window's end takes the ceiling as ((o+1) n + out - 1) / out, which "
           "passes 2^32 where out > n (the last windows empty)",
           ("tests/test_cupy_host.py::test_adaptive_pools[up-past-2^32-float32]",)),
    Mutant("pool-global-vector-path-any-plane", "kernels/pool.cu",
           "if (contiguous && aligned16(x) && plane_len % N == 0) {",
           "if (contiguous && aligned16(x)) {",
           "global pooling reads a contiguous aligned plane in 16-byte vectors whatever its "
           "length (a plane of 6 floats: its last 2 left out)",
           ("tests/test_cupy_host.py::test_kernels_loop_past_the_grid[global-max]",)),
    # ---------------------------------------------------------------------- kernels/depthwise.cu
    Mutant("depthwise-tile-row-ignores-shift", "kernels/depthwise.cu",
           "t.ld = (t.cols + t.shift + N - 1) / N * N;", "t.ld = (t.cols + N - 1) / N * N;",
           "the staged tile's row stride leaves out the alignment shift (a row's last columns "
           "are not staged)",
           ("tests/test_cupy_host.py::test_depthwise_kernels[k3-s3-full-row-reflect-float32]",)),
    Mutant("depthwise-segment-path-any-column-step", "kernels/depthwise.cu",
           "if (g.dw == 1 && g.step_w <= 2) {", "if (g.dw == 1) {",
           "the register-segment path (column step 1 or 2) runs any column step (3 in the test)",
           ("tests/test_cupy_host.py::test_depthwise_kernels[k3-s3-full-row-reflect-float32]",)),
    Mutant("depthwise-grad-weight-column-pad-from-top", "kernels/depthwise.cu",
           "const int sc = source_index(ow * sw + j * dw - pl, W, mode);\n"
           "                        if (sc >= 0) acc[i][j]",
           "const int sc = source_index(ow * sw + j * dw - pt, W, mode);\n"
           "                        if (sc >= 0) acc[i][j]",
           "the fixed-kernel grad-weight under a padding mode other than zeros offsets columns by "
           "the top padding",
           ("tests/test_cupy_host.py::test_depthwise_kernels[k3-s3-full-row-reflect-float32]",)),
    Mutant("depthwise-direct-column-pad-from-top", "kernels/depthwise.cu",
           "sc = source_index((ow0 + v) * sw + j * g.dw - (int)p.pl, g.src_w, g.mode);",
           "sc = source_index((ow0 + v) * sw + j * g.dw - (int)p.pt, g.src_w, g.mode);",
           "the direct forward offsets columns by the top padding instead of the left",
           ("tests/test_cupy_host.py::test_depthwise_kernels[direct-tall-padded-float32]",)),
    Mutant("depthwise-one-pass-of-planes", "kernels/depthwise.cu",
           "for (i64 plane = blockIdx.z; plane < planes; plane += gridDim.z) {",
           "for (i64 plane = blockIdx.z; plane < planes; plane += planes) {",
           "conv_depthwise covers only the planes of the grid's first pass",
           ("tests/test_cupy_host.py::test_kernels_loop_past_the_grid[depthwise]",)),
    Mutant("depthwise-tile-unfenced", "kernels/depthwise.cu",
           "                __syncthreads();  // the previous tile is consumed\n",
           "",
           "the depthwise kernel loads the next input tile while threads still read the last",
           ("tests/test_cupy_host.py::test_depthwise_kernels",), "tsan"),
    Mutant("depthwise-tile-read-early", "kernels/depthwise.cu",
           "                dw_load_tile<T>(p, g, t, src, tile);\n"
           "                __syncthreads();\n",
           "                dw_load_tile<T>(p, g, t, src, tile);\n",
           "the depthwise kernel reads its input tile before every thread has loaded its part",
           ("tests/test_cupy_host.py::test_depthwise_kernels",), "tsan"),
    Mutant("depthwise-tile-vector-any-row-stride", "kernels/depthwise.cu",
           "p.b_stride[3] == 1 && p.b_stride[2] % N == 0 && aligned16(src);",
           "p.b_stride[3] == 1 && aligned16(src);",
           "the depthwise tile loader takes 16-byte loads on rows whose stride is not a "
           "multiple of 16 bytes (misaligned rows past the first)",
           ("tests/test_cupy_host.py::test_depthwise_kernels[k3-pad1-float32]",), "asan"),
    Mutant("depthwise-direct-transposed-row-one-past", "kernels/depthwise.cu",
           "sr = num >= 0 && num % sh == 0 && num / sh < g.src_h ? num / sh : -1;",
           "sr = num >= 0 && num % sh == 0 && num / sh <= g.src_h ? num / sh : -1;",
           "the depthwise direct grad-input reads the grad_out row just past the last",
           ("tests/test_cupy_host.py::test_depthwise_kernels[k5-mult2-s2-float32]",)),
    Mutant("depthwise-grad-weight-chunk-past-batch", "kernels/depthwise.cu",
           "n1 = lmin(p.batch, n0 + p.tiles_per_split);",
           "n1 = n0 + p.tiles_per_split;",
           "the depthwise grad-weight's last chunk of images runs past the batch (3 images in "
           "chunks of 2: it reads a fourth)",
           ("tests/test_cupy_host.py::test_depthwise_kernels[k3-s3-full-row-reflect-float32]",), "asan"),
    # ------------------------------------------------------------------------- kernels/layers.cu
    Mutant("layers-unbias-single-value", "kernels/layers.cu",
           "(double)(count > 1 ? count - 1 : 1)", "(double)(count - 1)",
           "batch norm's running-variance unbiasing divides by count - 1 = 0 for a channel of "
           "one value",
           ("tests/test_cupy_layers_host.py::test_batch_norm_training_step[one-value-float32-]",)),
    Mutant("layers-bn-relu-drops-nan", "kernels/layers.cu",
           "y[k] = relu && v < T(0) ? T(0) : v;", "y[k] = relu && !(v >= T(0)) ? T(0) : v;",
           "batch norm's fused ReLU maps NaN to 0 (np.maximum keeps it)",
           ("tests/test_cupy_layers_host.py::test_batch_norm_relu_keeps_nan[float32]",)),
    Mutant("layers-channel-wrap-off-by-one", "kernels/layers.cu",
           "if (i < 2 * p.hw) { i -= p.hw; ++n; }", "if (i <= 2 * p.hw) { i -= p.hw; ++n; }",
           "for_channel moves to the next image with a position a whole plane past its own "
           "(i == hw: the next channel's first element)",
           ("tests/test_cupy_layers_host.py::test_batch_norm_training_step[plane-of-144-float32-]",)),
    Mutant("layers-dropout-drops-threshold-draw", "kernels/layers.cu",
           ">= p.threshold ? scale : T(0)", "> p.threshold ? scale : T(0)",
           "dropout drops a draw equal to the threshold (keep is draw >= threshold)",
           ("tests/test_cupy_layers_host.py::test_dropout_keeps_a_draw_equal_to_the_threshold[float32]",)),
    Mutant("layers-softmax-last-maximum", "kernels/layers.cu",
           "if (row[j] > row[arg]) arg = j;", "if (row[j] >= row[arg]) arg = j;",
           "softmax_cross_entropy's correct count compares the label with the last maximum, not "
           "the first (argmax)",
           ("tests/test_cupy_layers_host.py::test_softmax_cross_entropy[ties-float32]",)),
    Mutant("layers-bn-backward-relu-passes-zero", "kernels/layers.cu",
           "gy[i] * (relu_y[i] > T(0) ? T(1) : T(0))",
           "gy[i] * (relu_y[i] >= T(0) ? T(1) : T(0))",
           "batch norm's backward through its fused ReLU passes the gradient where the output "
           "is exactly 0 (clipped)",
           ("tests/test_cupy_layers_host.py::test_batch_norm_training_step[small-float32-relu]",)),
    Mutant("layers-relu-backward-passes-zero", "kernels/layers.cu",
           "g[i] * (y[i] > T(0) ? T(1) : T(0));",
           "g[i] * (y[i] >= T(0) ? T(1) : T(0));",
           "relu_backward passes the gradient where the fused output is exactly 0",
           ("tests/test_cupy_layers_host.py::"
            "test_conv_relu_backward_is_the_numpy_mask[3,4,5,6-float32]",)),
    Mutant("layers-dropout-drops-partial-group", "kernels/layers.cu",
           "if (group * 4 >= p.n) return;",
           "if (group * 4 + 4 > p.n) return;",
           "dropout's last thread returns when its four elements run past the end (n not a "
           "multiple of 4: the last elements are not written)",
           ("tests/test_cupy_layers_host.py::"
            "test_dropout_masks_are_bit_identical[3,5,7,9-0.3-float32]",)),
    Mutant("layers-philox-key-low-word-twice", "kernels/layers.cu",
           "(unsigned)key, (unsigned)(key >> 32));",
           "(unsigned)key, (unsigned)key);",
           "dropout keys Philox with the seed's low word twice, not its low and high words",
           ("tests/test_cupy_layers_host.py::"
            "test_dropout_masks_are_bit_identical[3,5,7,9-0.3-float32]",)),
    Mutant("layers-bn-inference-without-epsilon", "kernels/layers.cu",
           "inv_std = T(1) / sqrt(running_var[ch] + (T)p.epsilon);",
           "inv_std = T(1) / sqrt(running_var[ch]);",
           "batch norm's inference forward divides by sqrt(running_var), without epsilon",
           ("tests/test_cupy_layers_host.py::test_batch_norm_inference_and_no_input_grad[float32]",
            "tests/test_cupy_layers_host.py::test_batch_norm_inference_and_no_input_grad[float64]",)),
    # --------------------------------------------------------------------- kernels/conv_numba.py
    Mutant("numba-conv-live-phase-without-rows", "kernels/conv_numba.py",
           "            if ah[0] > 0 and ah[1] > 0:", "            if ah[1] > 0:",
           "nth_live_phase counts a row phase that taps reach but that holds no row",
           ("tests/test_numba_gpu_launches.py::test_split_reductions_and_phases_no_tap_reaches"
            "[float32-dead row phase first]",)),
    Mutant("numba-conv-live-phase-without-columns", "kernels/conv_numba.py",
           "                    if aw[0] > 0 and aw[1] > 0:", "                    if aw[1] > 0:",
           "nth_live_phase counts a column phase that taps reach but that holds no column",
           ("tests/test_numba_gpu_launches.py::test_split_reductions_and_phases_no_tap_reaches"
            "[float32-conv_direct, dead column phase first]",)),
    Mutant("numba-conv-reflect-repeats-edge", "kernels/conv_numba.py",
           "else I32(2 * (n - 1) - i)  # reflect", "else I32(2 * n - 1 - i)  # reflect",
           "source_index reflects past the last element as symmetric padding (repeating the edge)",
           ("tests/test_golden.py::test_golden[conv1d_reflect_f32-numba]",)),
    Mutant("numba-conv-tile-past-input", "kernels/conv_numba.py",
           "return j if j >= 0 and j < n else I32(-1)", "return j if j >= 0 else I32(-1)",
           "tile_source_index lets a staged tile column past the padded input read memory",
           ("tests/test_golden.py::"
            "test_a_tile_past_the_padded_input_reads_nothing[circular-numba]",)),
    Mutant("numba-conv-tap-walk-late-carry", "kernels/conv_numba.py",
           "    carry = d2 >= r2\n", "    carry = d2 > r2\n",
           "the incremental tap walk carries its inner digit one step late",
           ("tests/test_golden.py::test_golden[conv_transpose2d_basic_f32-numba]",)),
    Mutant("numba-conv-split-index-decode", "kernels/conv_numba.py",
           "g, split = quot(z, per_group), rem(z, p[SPLITS])",
           "g, split = quot(z, per_group), rem(z, per_group)",
           "a slice takes its split of the reduction from z modulo the slices per group, not "
           "modulo the splits",
           ("tests/test_numba_random.py::test_int64_offsets_match_numpy[0]",)),
    Mutant("numba-conv-direct-chunk-restarts", "kernels/conv_numba.py",
           "d0, d1, d2 = digits32(k0 + i // rows, r1, r2)",
           "d0, d1, d2 = digits32(i // rows, r1, r2)",
           "the Numba conv_direct stages every chunk's weights from the first tap of the reduction",
           ("tests/test_numba_gpu_launches.py::"
            "test_conv_direct_stages_its_weights_chunk_by_chunk",)),
    Mutant("numba-conv-direct-chunk-unfenced", "kernels/conv_numba.py",
           "            cuda.syncthreads()  # the previous chunk's weights are consumed\n",
           "",
           "the Numba conv_direct loads the next chunk of weights while threads still read the "
           "last",
           ("tests/test_numba_gpu_launches.py::"
            "test_conv_direct_stages_its_weights_chunk_by_chunk",)),
    # --------------------------------------------------------------------- kernels/pool_numba.py
    Mutant("numba-pool-adaptive-end-wraps-in-32-bits", "kernels/pool_numba.py",
           "return div32(o * n, out), div32((o + 1) * n - 1, out) + 1",
           "return div32(o * n, out), div32((o + 1) * n + out - 1, out)",
           "an adaptive window's end takes the ceiling as ((o+1) n + out - 1) // out, which "
           "passes 2^32 where out > n (the last windows empty)",
           ("tests/test_numba_random.py::test_adaptive_windows_match_shapes[up-past-2^32]",)),
    Mutant("numba-pool-max-first-tap-rounded-down", "kernels/pool_numba.py",
           "div32(-start + d - 1, d) * d", "div32(-start, d) * d",
           "a dilated max window starting in the padding takes its first tap in the padding "
           "(rounded down, not up, to the next tap inside)",
           ("tests/test_numba_random.py::test_numba_matches_numpy[30-max_pool2d-float32]",)),
    Mutant("numba-pool-window-check-owner", "kernels/pool_numba.py",
           "if not 0 <= c0 - col0 < POOL_V:", "if not 0 <= c0 - col0 < POOL_V - 1:",
           "max-pool backward's window check skips windows whose first tap is a thread's last "
           "column",
           ("tests/test_host_overhead.py::"
            "test_gpu_max_pool_backward_flags_an_index_outside_its_window"
            "[numba-overlapping]",)),
    Mutant("numba-pool-window-check-between-column-taps", "kernels/pool_numba.py",
           "if c0 <= c < c1 and mod32(c - c0, cs) == 0:", "if c0 <= c < c1:",
           "max-pool backward's window check passes an index between dilated column taps",
           ("tests/test_host_overhead.py::"
            "test_gpu_max_pool_backward_flags_an_index_outside_its_window"
            "[numba-dilated_padded]",)),
    Mutant("numba-pool-first-nan-wins", "kernels/pool_numba.py",
           "wins = o_nan and (not a_nan or oarg > arg)",
           "wins = o_nan and (not a_nan or oarg < arg)",
           "merging two NaN maxima keeps the earlier index (PyTorch keeps the later)",
           ("tests/test_numba_random.py::test_max_pooling_nans_match_numpy[global_max_pool2d]",)),
    Mutant("numba-pool-max-ignores-nan", "kernels/pool_numba.py",
           "if arg < 0 or val > best or val != val:",
           "if arg < 0 or val > best:",
           "windowed max pooling passes over a NaN after a number",
           ("tests/test_numba_random.py::test_max_pooling_nans_match_numpy[max_pool2d]",)),
    Mutant("numba-pool-global-max-ignores-nan", "kernels/pool_numba.py",
           "                            if arg < 0 or val > v or val != val:\n"
           "                                v, arg = val, e",
           "                            if arg < 0 or val > v:\n"
           "                                v, arg = val, e",
           "global max pooling's lane scan passes over a NaN after a number",
           ("tests/test_numba_random.py::test_max_pooling_nans_match_numpy[global_max_pool2d]",)),
    Mutant("numba-pool-window-drops-last-tap", "kernels/pool_numba.py",
           "return first, min(start + (k - 1) * d + 1, n), d",
           "return first, min(start + (k - 1) * d, n), d",
           "a max window's taps end before its last tap",
           ("tests/test_golden.py::test_golden[max_pool1d_ceil_last_window_dropped_f32-numba]",)),
    # ---------------------------------------------------------------- kernels/depthwise_numba.py
    Mutant("numba-depthwise-tile-taps-column-dilation", "kernels/depthwise_numba.py",
           "tap = base + U32(i * dh * ld + j * dw)", "tap = base + U32(i * dh * ld + j)",
           "the staged tile's taps ignore the column dilation",
           ("tests/test_numba_random.py::test_numba_matches_numpy[32-conv2d-float32]",)),
    Mutant("numba-depthwise-registers-for-stride-3", "kernels/depthwise_numba.py",
           "registers = k > 0 and dw == 1 and step_w <= 2",
           "registers = k > 0 and dw == 1 and step_w <= 3",
           "a column stride of 3 takes the registers path, which holds the taps of strides 1 and "
           "2 only",
           ("tests/test_numba_random.py::test_numba_matches_numpy[31-conv2d-float32]",)),
    Mutant("numba-depthwise-transposed-origin-dilation", "kernels/depthwise_numba.py",
           "org_h, org_w = oh0 + p[LO_H] - (kh - 1) * dh, ow0 + p[LO_W] - (kw - 1) * dw",
           "org_h, org_w = oh0 + p[LO_H] - (kh - 1) * dh, ow0 + p[LO_W] - (kw - 1)",
           "grad-input's transposed tile starts its columns without the column dilation",
           ("tests/test_numba_random.py::test_numba_matches_numpy[32-conv2d-float32]",)),
    Mutant("numba-depthwise-grad-weight-short-chunk", "kernels/depthwise_numba.py",
           "n1 = min(p[BATCH], n0 + p[TILES_PER_SPLIT])", "n1 = n0 + p[TILES_PER_SPLIT]",
           "grad-weight's last chunk of images runs past the batch",
           ("tests/test_numba_random.py::test_numba_matches_numpy[33-conv2d-float32]",)),
    Mutant("numba-depthwise-halo-past-input", "kernels/depthwise_numba.py",
           "sc = tile_source_index(org_w + col, p[B_W], mode)",
           "sc = source_index(org_w + col, p[B_W], mode)",
           "the staged tile's halo columns past the padded input wrap or reflect instead of "
           "reading zero",
           ("tests/test_golden.py::"
            "test_a_tile_past_the_padded_input_reads_nothing[circular-numba]",)),
    # -------------------------------------------------------------- gpuconv/backends/gpu_plan.py
    Mutant("plan-direct-grid-ignores-short-runs", "gpuconv/backends/gpu_plan.py",
           "cols = direct_columns(shape.cols, pixel_rows) if t.direct else shape.cols",
           "cols = shape.cols",
           "conv_direct's grid covers the pixels but not each row's short last run",
           ("tests/test_cupy_host.py::"
            "test_conv_direct_grid_covers_every_row_of_short_runs[float32]",)),
    Mutant("plan-direct-grid-one-image", "gpuconv/backends/gpu_plan.py",
           "pixel_rows=x_shape[0] * gemm.params[\"out_h\"],",
           "pixel_rows=gemm.params[\"out_h\"],",
           "conv_direct's forward grid counts the short runs of one image's rows only",
           ("tests/test_cupy_host.py::"
            "test_conv_direct_grid_covers_every_row_of_short_runs[float32]",)),
    Mutant("plan-grad-input-unreached-not-filled", "gpuconv/backends/gpu_plan.py",
           "plane=len_h * len_w)] if reached < len_h * len_w else []",
           "plane=len_h * len_w)] if reached < len_h * len_w - 1 else []",
           "grad-input leaves unwritten a single position that no tap reaches",
           ("tests/test_cupy_host.py::"
            "test_grad_input_writes_every_position[one-unreached-float32]",)),
    Mutant("plan-grad-input-first-phase-shape", "gpuconv/backends/gpu_plan.py",
           "    shape = GemmShape(cg, n * max(ah[1] * aw[1] for ah, aw in live),",
           "    shape = GemmShape(cg, n * live[0][0][1] * live[0][1][1] if live else 0,",
           "grad-input's GEMM spans the first live phase's pixels, not the largest phase's",
           ("tests/test_cupy_host.py::test_grad_input_writes_every_position"
            "[largest-phase-last-float32]",)),
    Mutant("plan-split-fill-one-split", "gpuconv/backends/gpu_plan.py",
           "fill = dict(out=\"partials\", total=splits * out_count)",
           "fill = dict(out=\"partials\", total=out_count)",
           "a split grad-input zeroes the first split's partials only",
           ("tests/test_cupy_host.py::test_grad_input_writes_every_position"
            "[split-with-gaps-float32]",)),
    Mutant("plan-index64-ignores-output", "gpuconv/backends/gpu_plan.py",
           "    index64 = _needs_index64(_span(x_shape, x_strides), _span(w_shape, w_strides),\n"
           "                             gemm.out_count)",
           "    index64 = _needs_index64(_span(x_shape, x_strides), _span(w_shape, w_strides))",
           "the forward takes 32-bit offsets for an output of 2^31 elements from a smaller input",
           ("tests/test_gpu_plan.py::test_64_bit_offsets_from_2_31_elements"
            "[output of 2^31 from 2^30]",)),
    Mutant("plan-index64-from-past-2-31", "gpuconv/backends/gpu_plan.py",
           "    return max(counts) >= INDEX64_FROM", "    return max(counts) > INDEX64_FROM",
           "64-bit offsets only past 2^31 elements, not from it",
           ("tests/test_gpu_plan.py::test_64_bit_offsets_from_2_31_elements"
            "[output of 2^31 from 2^30]",)),
    Mutant("plan-unpadded-modes-off-fast-path", "gpuconv/backends/gpu_plan.py",
           "return spec.padding_mode == \"zeros\" or spec.padding == ((0, 0), (0, 0))",
           "return spec.padding_mode == \"zeros\"",
           "a reflect / replicate / circular conv without padding runs the generic instance",
           ("tests/test_gpu_plan.py::test_other_padding_modes_without_padding_take_the_fast_path"
            "[reflect]",)),
    Mutant("plan-split-k-count-unrounded", "gpuconv/backends/gpu_plan.py",
           "    splits = -(-steps // per_split) if per_split else 1\n",
           "    splits = splits if per_split else 1\n",
           "split-K keeps its asked split count, leaving reduction steps past the last split",
           ("tests/test_gpu_plan.py::"
            "test_gemm_choice_splits_without_empty_splits[512-49-4608-1]",)),
    Mutant("plan-split-partials-short", "gpuconv/backends/gpu_plan.py",
           "workspaces[\"partials\"] = (splits * out_count, dtype)",
           "workspaces[\"partials\"] = ((splits - 1) * out_count + 1, dtype)",
           "the split-K partials workspace is short of the last split's outputs",
           ("tests/test_gpu_plan.py::test_grad_weight_plan_workspace",)),
    Mutant("plan-ties-to-the-smaller-tile", "gpuconv/backends/gpu_plan.py",
           "key=lambda c: (round(c.seconds, 12), -c.tile.bm * c.tile.bn))",
           "key=lambda c: (round(c.seconds, 12), c.tile.bm * c.tile.bn))",
           "of two tiles the model times alike, the smaller runs (more blocks, same results)",
           ("tests/test_gpu_plan.py::test_ties_go_to_the_larger_tile",)),
    Mutant("plan-direct-held-to-a-full-wave", "gpuconv/backends/gpu_plan.py",
           " or c.steps_per_split <= MIN_SPLIT_STEPS or c.tile.direct\n",
           " or c.steps_per_split <= MIN_SPLIT_STEPS\n",
           "conv_direct, which cannot split, fails the full-wave threshold on small slices",
           ("tests/test_gpu_plan.py::test_conv_direct_meets_the_thresholds_short_of_a_wave",)),
    Mutant("plan-tap-masks-one-short", "gpuconv/backends/gpu_plan.py",
           "fits = kernel_hw[0] + kernel_hw[1] <= MASK_TAPS",
           "fits = kernel_hw[0] + kernel_hw[1] < MASK_TAPS",
           "a kernel whose rows plus columns fill the tap mask exactly runs the generic instance",
           ("tests/test_gpu_plan.py::"
            "test_tap_masks_or_the_generic_instance[1024-1,30-True]",)),
    # ----------------------------------------------------------- gpuconv/backends/gpu_pooling.py
    Mutant("pooling-max-backward-indices-not-copied", "gpuconv/backends/gpu_pooling.py",
           "(\"grad_out\", \"indices\", \"out\"), (pooled(grad_out, input_hw),),\n"
           "            (1,))",
           "(\"grad_out\", \"indices\", \"out\"), (pooled(grad_out, input_hw),),\n"
           "            ())",
           "max-pool backward reads a strided view of its indices as if flat (no contiguous copy)",
           ("tests/test_cupy_host.py::test_max_pool_backward_takes_indices_as_a_strided_view",)),
    Mutant("pooling-avg-ignores-count-include-pad", "gpuconv/backends/gpu_pooling.py",
           "(spec, None, count_include_pad, divisor_override, None))[0]",
           "(spec, None, True, divisor_override, None))[0]",
           "avg_pool2d always counts the padding in its divisor",
           ("tests/test_cupy_host.py::test_avg_pool[exclude-pad-ceil-float32]",)),
    Mutant("pooling-avg-backward-ignores-divisor-override", "gpuconv/backends/gpu_pooling.py",
           "(spec, tuple(input_hw), count_include_pad, divisor_override))[0]",
           "(spec, tuple(input_hw), count_include_pad, None))[0]",
           "avg_pool2d_backward divides by the window count even with a divisor_override",
           ("tests/test_cupy_host.py::test_avg_pool[divisor-override-float32]",)),
    # ---------------------------------------------------------- gpuconv/backends/cupy_backend.py
    Mutant("cupy-context-without-tile-switches", "gpuconv/backends/cupy_backend.py",
           "(ex.current_device(), *autotune.switches()))", "(ex.current_device(),))",
           "CuPy's prepared-call context leaves out the tile switches: a call under a forced "
           "tile reuses the plan model's launches",
           ("tests/test_cupy_host.py::test_a_forced_tile_is_planned_anew",)),
    Mutant("cupy-backend-autotune-key-without-device", "gpuconv/backends/cupy_backend.py",
           "autotune.make_key(ex.device_name(), op, problem",
           "autotune.make_key(\"\", op, problem",
           "the autotune cache key leaves out the device name: a tile tuned on one GPU is "
           "reused on another",
           ("tests/test_cupy_host.py::test_autotune_picks_and_caches_a_tile",)),
    Mutant("cupy-backend-autotune-key-without-precision", "gpuconv/backends/cupy_backend.py",
           "f\"{dtype}-{precision}\")",
           "dtype)",
           "the autotune cache key leaves out the precision: an ieee tuning's tile is reused "
           "for tf32 (a tile of another precision's candidates)",
           ("tests/test_cupy_host.py::test_autotune_off_the_tensor_core_path",
            "tests/test_cupy_host.py::test_autotuning_keeps_each_precisions_tile_apart",)),
    Mutant("cupy-backend-autotune-read-when-tile-forced", "gpuconv/backends/cupy_backend.py",
           "if tile is None and autotune.enabled():",
           "if autotune.enabled():",
           "with autotuning on, a forced tile is overridden by the tuned (cached) tile",
           ("tests/test_cupy_host.py::test_a_forced_tile_is_planned_anew",
            "tests/test_cupy_host.py::test_a_forced_tile_wins_over_the_autotune_cache",)),
    Mutant("cupy-backend-tensor-cores-for-float64", "gpuconv/backends/cupy_backend.py",
           "if precision == \"ieee\" or dtype != \"float32\":",
           "if precision == \"ieee\":",
           "a float64 conv asked for tf32 runs the tf32 path instead of IEEE float64 (PyTorch's "
           "allow_tf32 applies to float32 only)",
           ("tests/test_cupy_host.py::test_conv_kernels[basic-float64-32x64]",
            "tests/test_host_overhead.py::"
            "test_what_the_launch_depends_on_is_planned_anew[cupy-precision]",
            "tests/test_cupy_host.py::"
            "test_a_float64_conv_asked_for_tensor_cores_runs_in_ieee_float64"
            "[no-tensor-cores-tf32]",
            "tests/test_cupy_host.py::"
            "test_a_float64_conv_asked_for_tensor_cores_runs_in_ieee_float64[autotuned-tf32]",)),
    Mutant("cupy-backend-grad-bias-allocated-float64", "gpuconv/backends/cupy_backend.py",
           "(\"grad_out\", \"out\"), (((grad_out.shape[1],), dtype),))",
           "(\"grad_out\", \"out\"), (((grad_out.shape[1],), \"float64\"),))",
           "conv2d_grad_bias allocates its output float64 whatever the dtype",
           ("tests/test_host_overhead.py::"
            "test_conv_backward_is_its_parts_in_one_call[cupy-xwb-3x3]",
            "tests/test_cupy_host.py::test_tensor_core_a_runs[aligned-tf32-tf32-128x128]",)),
    Mutant("cupy-backend-grad-weight-channels-without-groups", "gpuconv/backends/cupy_backend.py",
           "out_shape = (grad_out.shape[1], x.shape[1] // spec.groups) + tuple(kernel_hw)",
           "out_shape = (grad_out.shape[1], x.shape[1]) + tuple(kernel_hw)",
           "conv2d_grad_weight allocates C, not C/G, input channels for a grouped conv",
           ("tests/test_host_overhead.py::"
            "test_conv_backward_is_its_parts_in_one_call[cupy-w-reflect-groups-s2]",)),
    Mutant("cupy-backend-strided-bias-not-copied", "gpuconv/backends/cupy_backend.py",
           "_contiguous_copies((x, weight, bias), (2,)))",
           "_contiguous_copies((x, weight, bias), ()))",
           "conv2d hands a strided bias to a kernel that indexes it flat",
           ("tests/test_cupy_host.py::test_strided_views_and_transposed_conv[float32]",
            "tests/test_cupy_host.py::test_a_strided_bias_is_read_as_its_values[float32]",)),
    Mutant("cupy-backend-alignment-checked-at-8-bytes", "gpuconv/backends/cupy_backend.py",
           "        if pointer(buffers[slot]) % 16:\n"
           "            buffers[slot] = buffers[slot].copy()",
           "        if pointer(buffers[slot]) % 8:\n"
           "            buffers[slot] = buffers[slot].copy()",
           "the alignment copy checks 8-byte alignment: a float32 input two elements off a "
           "16-byte boundary goes uncopied to the kernels that read it 16 bytes at a time",
           ("tests/test_cupy_host.py::test_tensor_core_a_runs[shifted-8-bytes-tf32-tf32-128x128]",),
           "asan"),
    Mutant("cupy-backend-alignment-checked-at-4-bytes", "gpuconv/backends/cupy_backend.py",
           "        if pointer(buffers[slot]) % 16:\n"
           "            buffers[slot] = buffers[slot].copy()",
           "        if pointer(buffers[slot]) % 4:\n"
           "            buffers[slot] = buffers[slot].copy()",
           "the alignment copy checks 4-byte alignment: a float32 input one element off a "
           "16-byte boundary goes uncopied to the tensor-core kernels that read it 16 bytes at "
           "a time",
           ("tests/test_cupy_host.py::test_tensor_core_a_runs[shifted-tf32-tf32-128x128]",), "asan"),
    Mutant("cupy-backend-error-word-not-cleared", "gpuconv/backends/cupy_backend.py",
           "            word.fill(0)\n",
           "",
           "take_errors reads the error word without clearing it: one bad call flags every "
           "later one",
           ("tests/test_host_overhead.py::"
            "test_bad_indices_are_flagged_on_the_device[False-25-indices must lie in \\\\[0, 25\\\\)]",)),
    Mutant("cupy-backend-context-without-device", "gpuconv/backends/cupy_backend.py",
           "(ex.current_device(), *autotune.switches()))",
           "(*autotune.switches(),))",
           "CuPy's prepared-call context leaves out the device: a call on a second GPU reuses "
           "the first's launches (its error word, its SM count)",
           ("tests/test_host_overhead.py::"
            "test_what_the_launch_depends_on_is_planned_anew[cupy-device]",)),
    Mutant("cupy-backend-strides-in-float32-elements", "gpuconv/backends/cupy_backend.py",
           "return tuple(s // array.itemsize for s in array.strides)",
           "return tuple(s // 4 for s in array.strides)",
           "element strides computed as if every array held 4-byte floats (float64 strides "
           "doubled)",
           ("tests/test_cupy_host.py::test_conv_kernels[basic-float64-32x64]",)),
    # ------------------------------------------------------------- gpuconv/backends/signature.py
    Mutant("signature-key-without-dtype", "gpuconv/backends/signature.py",
           "key += (type(array), array.shape, array.strides, array.dtype)",
           "key += (type(array), array.shape, array.strides)",
           "the prepared-call key leaves out the dtype: equal byte strides of another dtype "
           "reuse the first dtype's launches",
           ("tests/test_cupy_host.py::"
            "test_signatures_of_equal_byte_strides_but_other_dtypes_are_planned_apart",)),
    Mutant("signature-key-without-strides", "gpuconv/backends/signature.py",
           "key += (type(array), array.shape, array.strides, array.dtype)",
           "key += (type(array), array.shape, array.dtype)",
           "the prepared-call key leaves out the strides: a strided view reuses a contiguous "
           "array's launches",
           ("tests/test_host_overhead.py::test_what_the_launch_depends_on_is_planned_anew"
            "[cupy-strides]",)),
    Mutant("signature-key-without-context", "gpuconv/backends/signature.py",
           "key = [build, context, options, tuple(map(type, options))]",
           "key = [build, options, tuple(map(type, options))]",
           "the prepared-call key leaves out the context: another device reuses the first "
           "device's launches",
           ("tests/test_host_overhead.py::test_what_the_launch_depends_on_is_planned_anew"
            "[cupy-device]",)),
    Mutant("signature-1d-call-detected-only-without-bias", "gpuconv/backends/signature.py",
           "if any(a is not None and a.ndim == 3 for a in arrays):",
           "if all(a is None or a.ndim == 3 for a in arrays):",
           "a 1-D op's call is recognised (and lifted to 2-D) only when every array is 3-D: a "
           "conv1d with a bias goes to the 2-D build unlifted",
           ("tests/test_unbatched.py::test_unbatched_conv_matches_torch[conv1d-numba-float32]",)),
    # ------------------------------------------------------------------------- gpuconv/shapes.py
    Mutant("shapes-reflect-padding-checks-smaller-side", "gpuconv/shapes.py",
           'if self.padding_mode == "reflect" and any(max(p) >= n',
           'if self.padding_mode == "reflect" and any(min(p) >= n',
           "reflect padding is checked on its smaller side only, so an after-padding equal to "
           "the input size passes",
           ("tests/test_validation.py::test_shape_rules_at_their_boundaries_name_the_sizes"
            "[reflect pad after = size]",)),
    Mutant("shapes-circular-padding-of-whole-input-refused", "gpuconv/shapes.py",
           'if self.padding_mode == "circular" and any(max(p) > n',
           'if self.padding_mode == "circular" and any(max(p) >= n',
           "circular padding of exactly the input size (which PyTorch wraps) is refused",
           ("tests/test_validation.py::test_circular_padding_of_the_whole_input_is_allowed",)),
    Mutant("shapes-transposed-output-of-zero-accepted", "gpuconv/shapes.py",
           '        if any(n <= 0 for n in out):\n            raise ValueError(f"transposed',
           '        if any(n < 0 for n in out):\n            raise ValueError(f"transposed',
           "a transposed convolution whose padding leaves an output of size 0 is accepted",
           ("tests/test_validation.py::test_shape_rules_at_their_boundaries_name_the_sizes"
            "[transposed output of size 0]",)),
    Mutant("shapes-keras-same-negative-padding", "gpuconv/shapes.py",
           "total = max((out - 1) * stride + dilation * (kernel - 1) + 1 - size, 0)",
           "total = (out - 1) * stride + dilation * (kernel - 1) + 1 - size",
           "Keras' \"same\" padding goes negative where the stride passes the kernel",
           ("tests/test_shapes.py::test_keras_same_padding_by_hand[4,1,2-0,0]",)),
    Mutant("shapes-conv-output-size-missing-minus-one", "gpuconv/shapes.py",
           "    return (size + padding - dilation * (kernel - 1) - 1) // stride + 1",
           "    return (size + padding - dilation * (kernel - 1)) // stride + 1",
           "the convolution output size formula drops its -1 (one output too many at stride 1)",
           ("tests/test_shapes.py::test_conv_output_size_by_hand[4-3-1-0,0-1-2]",)),
    Mutant("shapes-ceil-mode-keeps-window-starting-at-padding-end", "gpuconv/shapes.py",
           "if ceil_mode and (rounded - 1) * stride >= size + padding:",
           "if ceil_mode and (rounded - 1) * stride > size + padding:",
           "ceil_mode keeps a last window that starts exactly where the right padding starts "
           "(PyTorch drops it)",
           ("tests/test_shapes.py::test_pool_output_size_by_hand[5-2-2-1-1-True-3]",)),
    Mutant("shapes-pool-padding-of-half-kernel-refused", "gpuconv/shapes.py",
           "            if 2 * p > k:",
           "            if 2 * p >= k:",
           "pooling padding of exactly half the kernel (which PyTorch allows) is refused",
           ("tests/test_shapes.py::test_poolspec_padding_may_be_exactly_half",)),
    Mutant("shapes-pool-size-ignores-dilation", "gpuconv/shapes.py",
           "    span = size + 2 * padding - dilation * (kernel - 1) - 1",
           "    span = size + 2 * padding - (kernel - 1) - 1",
           "the pooling output size ignores the dilation (counts windows of an undilated kernel)",
           ("tests/test_shapes.py::test_pool_output_size_by_hand[8-3-2-1-2-False-3]",)),
    Mutant("shapes-output-padding-checked-against-stride-only", "gpuconv/shapes.py",
           "                if op >= s and op >= d:",
           "                if op >= s:",
           "a transposed conv's output_padding must be below the stride, not below the stride "
           "or the dilation (PyTorch's rule)",
           ("tests/test_shapes.py::test_convspec_transposed_output_padding",)),

    # --------------------------------------------------------- gpuconv/backends/numpy_backend.py
    Mutant("numpy-max-pool-inside-index-ignores-column-dilation",
           "gpuconv/backends/numpy_backend.py",
           "    index *= dh * w - dw * kw\n",
           "    index *= dh * w - kw\n",
           "max pooling's all-inside pass computes the returned flat index as if the columns "
           "were undilated",
           ("tests/test_cpu_kernels.py::test_max_pool_engines_agree_bit_for_bit_and_with_torch"
            "[3x2_s1x2_dilated_2x3_inside-distinct-float64]",)),
    Mutant("numpy-avg-pool-backward-column-tail-not-zeroed",
           "gpuconv/backends/numpy_backend.py",
           "    tail = (h, w) != (ho * kh, wo * kw)\n",
           "    tail = h != ho * kh\n",
           "the tiled average-pool backward leaves uninitialised the input columns past the last "
           "window when only the column axis has a tail",
           ("tests/test_cpu_kernels.py::test_avg_pool_backward_engines_agree_bit_for_bit_and_with_torch"
            "[3x2_tiled_column_tail_only-float64]",)),
    Mutant("numpy-depthwise-grad-weight-keeps-row-image-nan",
           "gpuconv/backends/numpy_backend.py",
           "        if np.isfinite(grad_w).all():\n            return grad_w\n",
           "        return grad_w\n",
           "the compiled depthwise grad-weight keeps the NaN that its row images' zero columns "
           "past W_out make of a non-finite input, in taps that never read it",
           ("tests/test_semantics.py::"
            "test_conv2d_backward_non_finite_input_reaches_what_torch_reaches[nan-depthwise]",)),
    Mutant("numpy-max-pool-first-nan-wins", "gpuconv/backends/numpy_backend.py",
           "            better |= np.isnan(value)\n",
           "            better |= np.isnan(value) & ~np.isnan(best)\n",
           "max pooling's index keeps the first NaN of a window instead of the last (PyTorch's "
           "rule)",
           ("tests/test_cpu_kernels.py::test_max_pool_engines_agree_bit_for_bit_and_with_torch"
            "[2x2_disjoint-nan_and_inf-float64]",)),
    Mutant("numpy-window-view-strides-swapped", "gpuconv/backends/numpy_backend.py",
           "dilation[1] * sw, stride[0] * sh, stride[1] * sw)",
           "dilation[1] * sw, stride[1] * sh, stride[0] * sw)",
           "the windows view steps its output rows by the column stride and its columns by the "
           "row stride",
           ("tests/test_cpu_kernels.py::test_depthwise_conv_matches_torch"
            "[3x3_stride2x3-numpy-float64]",)),
    Mutant("numpy-replicate-padding-read-as-reflect", "gpuconv/backends/numpy_backend.py",
           "    if mode == \"replicate\":\n",
           "    if mode == \"reflect\":\n",
           "_source_index confuses reflect and replicate (each mode gets the other's table)",
           ("tests/test_golden.py::test_golden[conv2d_replicate_f64-numpy]",
            "tests/test_golden.py::test_golden[conv2d_reflect_f64-numpy]",)),
    Mutant("numpy-pad-backward-crops-from-the-bottom", "gpuconv/backends/numpy_backend.py",
           "        return grad_padded[:, :, top:top + h, left:left + w]\n",
           "        return grad_padded[:, :, bottom:bottom + h, left:left + w]\n",
           "the zero padding's adjoint crops the input's rows from the bottom pad's offset",
           ("tests/test_golden.py::test_golden[avg_pool2d_ceil_include_f64-numpy]",)),
    Mutant("numpy-avg-divisor-counts-ceil-overhang", "gpuconv/backends/numpy_backend.py",
           "    end = np.minimum(start + kernel, size + padding)\n",
           "    end = start + kernel\n",
           "with count_include_pad, a ceil_mode window's overhang past the padded input is "
           "counted in its divisor",
           ("tests/test_golden.py::test_golden[avg_pool2d_ceil_include_f64-numpy]",)),
    Mutant("numpy-avg-backward-tiled-ignores-divisor-override", "gpuconv/backends/numpy_backend.py",
           "    _, pads, divisor = _avg_pool_geometry(spec, input_hw, count_include_pad, "
           "divisor_override,\n"
           "                                          grad_out.dtype)",
           "    _, pads, divisor = _avg_pool_geometry(spec, input_hw, count_include_pad, None,\n"
           "                                          grad_out.dtype)",
           "the average-pool backward's tiled pass divides by the window sizes, not by "
           "divisor_override",
           ("tests/test_cpu_kernels.py::"
            "test_avg_pool_backward_engines_agree_bit_for_bit_and_with_torch"
            "[2x2_tiled_divisor_override-float64]",)),
    Mutant("numpy-max-pool-tables-last-tie-wins", "gpuconv/backends/numpy_backend.py",
           "        better = value > best\n"
           "        if has_nan:",
           "        better = value >= best\n"
           "        if has_nan:",
           "the window-table max pooling takes the last of tied maxima as the index",
           ("tests/test_cpu_kernels.py::"
            "test_max_pool_engines_agree_bit_for_bit_and_with_torch[3x3_s2_pad1-ties-float64]",)),
    Mutant("numpy-max-pool-values-drop-nan", "gpuconv/backends/numpy_backend.py",
           "    return _separable_reduce(np.maximum, xp, spec, out_hw), None\n",
           "    return _separable_reduce(np.fmax, xp, spec, out_hw), None\n",
           "max pooling without indices skips NaN (fmax) instead of propagating it",
           ("tests/test_cpu_kernels.py::"
            "test_max_pool_engines_agree_bit_for_bit_and_with_torch"
            "[3x3_s2_pad1-nan_and_inf-float64]",
            "tests/test_cpu_kernels.py::"
            "test_max_pool_engines_agree_bit_for_bit_and_with_torch"
            "[2x2_disjoint-nan_and_inf-float64]",)),
    Mutant("numpy-window-table-clamps-to-the-plane", "gpuconv/backends/numpy_backend.py",
           "    return np.clip(pos, first, last).astype(np.int64)\n",
           "    return np.clip(pos, 0, size - 1).astype(np.int64)\n",
           "a tap in the padding repeats the input's edge element, which a dilated window may "
           "not hold, instead of the window's nearest tap",
           ("tests/test_cpu_kernels.py::"
            "test_max_pool_engines_agree_bit_for_bit_and_with_torch"
            "[3x2_s2x1_pad_dilated-distinct-float64]",)),
    Mutant("numpy-avg-backward-row-taps-step-by-column-stride", "gpuconv/backends/numpy_backend.py",
           "        grad_padded[:, :, i:i + sh * (ho - 1) + 1:sh, :] += rows\n",
           "        grad_padded[:, :, i:i + sh * (ho - 1) + 1:sw, :] += rows\n",
           "the average-pool backward spreads its rows of windows by the column stride",
           ("tests/test_cpu_kernels.py::"
            "test_avg_pool_backward_engines_agree_bit_for_bit_and_with_torch"
            "[3x2_s2x1_pad1_overlapping-float64]",
            "tests/test_golden.py::"
            "test_golden[avg_pool2d_column_padding_row_stride_ceil_f64-numpy]",)),
    Mutant("numpy-fold-rows-dilations-swapped", "gpuconv/backends/numpy_backend.py",
           "(a, rh), (b, rw) = divmod(i * dh, sh), divmod(j * dw, sw)",
           "(a, rh), (b, rw) = divmod(i * dw, sh), divmod(j * dh, sw)",
           "the grad-input fold places row taps by the column dilation and column taps by the "
           "row dilation",
           ("tests/test_golden.py::test_golden[conv2d_dilation_2_1_f64-numpy]",)),
    Mutant("numpy-phase-taps-ignore-gcd", "gpuconv/backends/numpy_backend.py",
           "    taps = slice(first, kernel, stride // g)\n",
           "    taps = slice(first, kernel, stride)\n",
           "a stride phase's taps step by the stride, not stride / gcd(stride, dilation)",
           ("tests/test_golden.py::test_golden[conv_transpose2d_dilation_padding_f64-numpy]",)),
    Mutant("numpy-gather-weight-not-transposed", "gpuconv/backends/numpy_backend.py",
           "    w_t = (weight.reshape(groups, o // groups, cg, kh, kw).transpose(0, 2, 1, 3, "
           "4)\n",
           "    w_t = (weight.reshape(groups, cg, o // groups, kh, kw)\n",
           "the grad-input gather forgets to swap the weight's in and out channels",
           ("tests/test_golden.py::test_golden[conv2d_flip_reflect_f64-numpy]",
            "tests/test_golden.py::test_golden[conv2d_flip_groups_dilated_f64-numpy]",)),
    Mutant("numpy-grad-weight-accumulates-in-float32", "gpuconv/backends/numpy_backend.py",
           "    grad_w_t = np.zeros((groups, k, og), dtype=x.dtype)\n",
           "    grad_w_t = np.zeros((groups, k, og), dtype=np.float32)\n",
           "the grad-weight adds its pieces in float32 whatever the input's dtype",
           ("tests/test_golden.py::test_golden[conv2d_odd_f64-numpy]",)),
    Mutant("numpy-adaptive-members-take-a-window-ending-there", "gpuconv/backends/numpy_backend.py",
           "    return _ranges(np.searchsorted(ends, positions, \"right\"),\n",
           "    return _ranges(np.searchsorted(ends, positions, \"left\"),\n",
           "adaptive average pooling's backward also credits a position to the window that ends "
           "just before it",
           ("tests/test_golden.py::test_golden[adaptive_avg_pool2d_7x5_to_3x4_f64-numpy]",)),
    Mutant("numpy-disjoint-windows-off-by-one", "gpuconv/backends/numpy_backend.py",
           "    return all(s >= d * (k - 1) + 1\n",
           "    return all(s >= d * (k - 1)\n",
           "windows that share their edge element count as disjoint: the NumPy scatter stores "
           "where it must add",
           ("tests/test_cpu_kernels.py::"
            "test_max_pool_backward_engines_agree_bit_for_bit_and_with_torch"
            "[3x3_s2_pad1_overlapping-float64]",)),
    Mutant("numpy-pointwise-grad-weight-takes-a-short-grad-out", "gpuconv/backends/numpy_backend.py",
           "    if (kh, kw) == (1, 1) and tuple(spec.stride) == (1, 1) and (ho, wo) == "
           "xp.shape[2:]:\n",
           "    if (kh, kw) == (1, 1) and tuple(spec.stride) == (1, 1):\n",
           "the 1x1 stride-1 grad-weight shortcut is taken where grad_out is smaller than the "
           "padded input (a transposed conv's output_padding)",
           ("tests/test_golden.py::test_golden[conv_transpose2d_1x1_output_padding_f64-numpy]",)),

    # -------------------------------------------------------------------- gpuconv/channelwise.py
    Mutant("channelwise-relu-epilogue-turns-nan-to-zero", "gpuconv/channelwise.py",
           "            np.maximum(block, np.zeros(block.shape[-1], block.dtype), out=block)",
           "            np.fmax(block, np.zeros(block.shape[-1], block.dtype), out=block)",
           "the fused conv + ReLU epilogue maps NaN to 0 (fmax) instead of keeping it",
           ("tests/test_conv_relu.py::test_conv_relu[direct-numpy-float64]",)),
    Mutant("channelwise-epilogue-bias-of-group-zero", "gpuconv/channelwise.py",
           "bias_columns[\n"
           "                at[-1] if at else 0, rows]",
           "bias_columns[\n"
           "                0, rows]",
           "the conv epilogue adds group 0's bias to every group's product",
           ("tests/test_conv_relu.py::"
            "test_products_finished_one_by_one_add_their_own_groups_bias[float32-False]",
            "tests/test_conv_relu.py::"
            "test_products_finished_one_by_one_add_their_own_groups_bias[float64-False]",)),
    Mutant("channelwise-affine-shift-then-scale", "gpuconv/channelwise.py",
           "        np.multiply(a, scale_rows, out=y)\n"
           "        y += shift_rows\n",
           "        np.add(a, shift_rows, out=y)\n"
           "        y *= scale_rows\n",
           "batch norm's affine pass adds the shift before scaling",
           ("tests/test_nn.py::"
            "test_layer_backward_after_an_inference_forward_is_that_forwards"
            "[BatchNorm2D(momentum=0.99, epsilon=0.001)-]",
            "tests/test_nn.py::test_batch_norm_backward_after_an_inference_forward[]",)),
    Mutant("channelwise-channel-dots-square-the-first", "gpuconv/channelwise.py",
           "    return (a[:, :, None, :] @ b[:, :, :, None]).sum(axis=(0, 2, 3))\n",
           "    return (a[:, :, None, :] @ a[:, :, :, None]).sum(axis=(0, 2, 3))\n",
           "channel_dots multiplies its first argument by itself",
           ("tests/test_nn.py::"
            "test_layer_backward_matches_finite_differences"
            "[BatchNorm2D(momentum=0.99, epsilon=0.001)-]",)),
    Mutant("channelwise-relu-before-bias", "gpuconv/channelwise.py",
           "        if bias_rows is not None:\n"
           "            piece += bias_rows\n"
           "        if relu:\n"
           "            np.maximum(piece, zero_rows, out=piece)\n",
           "        if relu:\n"
           "            np.maximum(piece, zero_rows, out=piece)\n"
           "        if bias_rows is not None:\n"
           "            piece += bias_rows\n",
           "add_bias_relu clips before adding the bias",
           ("tests/test_conv_relu.py::test_conv_relu[depthwise-numpy-float64]",)),

    # ---------------------------------------------------------------------- kernels/cpu_numba.py
    Mutant("cpu-numba-max-pool-last-tie-wins", "kernels/cpu_numba.py",
           "        better = (v > best[q]) | (v != v)",
           "        better = (v >= best[q]) | (v != v)",
           "the compiled max pooling takes the last of tied maxima as the index, not the first",
           ("tests/test_cpu_kernels.py::test_max_pool_engines_agree_bit_for_bit_and_with_torch"
            "[2x2_disjoint-ties-float64]",)),
    Mutant("cpu-numba-split-plane-drops-last-odd-column", "kernels/cpu_numba.py",
           "            if width % 2:\n"
           "                first[width // 2] = src[width - 1]\n",
           "",
           "the stride-2 phase split drops an odd-width plane's last column",
           ("tests/test_cpu_kernels.py::"
            "test_max_pool_engines_agree_bit_for_bit_and_with_torch[3x3_s2_pad1-distinct-float64]",)),
    Mutant("cpu-numba-tap-start-column-by-row-dilation", "kernels/cpu_numba.py",
           "i * dh // sh * pw + j * dw // sw\n",
           "i * dh // sh * pw + j * dh // sw\n",
           "a tap's run starts at its column offset by the row dilation",
           ("tests/test_cpu_kernels.py::"
            "test_depthwise_conv_matches_torch[2x2_dilated-numba-float64]",)),
    Mutant("cpu-numba-first-inside-off-by-one", "kernels/cpu_numba.py",
           "    return start if start >= 0 else start + (-start + step - 1) // step * step\n",
           "    return start if start >= 0 else start + (-start) // step * step\n",
           "a window of -inf alone points at a tap still in the padding (floor, not ceil)",
           ("tests/test_cpu_kernels.py::"
            "test_max_pool_engines_agree_bit_for_bit_and_with_torch"
            "[3x2_s2x1_pad_dilated-nan_and_inf-float64]",
            "tests/test_cpu_kernels.py::"
            "test_max_pool_engines_agree_bit_for_bit_and_with_torch"
            "[2x3_dilated_ceil-nan_and_inf-float64]",)),
    Mutant("cpu-numba-scatter-ignores-row-dilation", "kernels/cpu_numba.py",
           "    return (row_lo <= r <= row_hi and (row_step == 1 or (r - row_lo) % row_step == "
           "0)\n",
           "    return (row_lo <= r <= row_hi\n",
           "the compiled scatter's window check accepts an index between dilated rows",
           ("tests/test_cpu_kernels.py::"
            "test_max_pool_backward_index_outside_its_window_is_an_error[2x3_dilated_ceil-numba]",)),
    Mutant("cpu-numba-depthwise-four-tap-weight-typo", "kernels/cpu_numba.py",
           "row_image[q] += w0 * a0[q] + w1 * a1[q] + w2 * a2[q] + w3 * a3[q]",
           "row_image[q] += w0 * a0[q] + w1 * a1[q] + w2 * a2[q] + w2 * a3[q]",
           "the four-tap pass multiplies its last tap by the third tap's weight",
           ("tests/test_cpu_kernels.py::"
            "test_depthwise_conv_matches_torch[2x2_dilated-numba-float64]",)),
    Mutant("cpu-numba-max-pool-border-columns-floor", "kernels/cpu_numba.py",
           "    border_cols = min(wo, (left + sw - 1) // sw)",
           "    border_cols = min(wo, left // sw)",
           "a window of -inf alone whose first column is padding keeps its padding index when "
           "its rows are inside (left / sw floored)",
           ("tests/test_cpu_kernels.py::"
            "test_max_pool_engines_agree_bit_for_bit_and_with_torch"
            "[3x3_s2_pad1-minus_inf_columns-float64]",
            "tests/test_cpu_kernels.py::"
            "test_max_pool_engines_agree_bit_for_bit_and_with_torch"
            "[4x3_s3_pad_ceil-minus_inf_columns-float64]",)),
    Mutant("cpu-numba-max-pool-drops-nan", "kernels/cpu_numba.py",
           "        better = (v > best[q]) | (v != v)\n",
           "        better = v > best[q]\n",
           "the compiled max pooling never lets a NaN win",
           ("tests/test_cpu_kernels.py::"
            "test_max_pool_engines_agree_bit_for_bit_and_with_torch"
            "[3x3_s2_pad1-nan_and_inf-float64]",)),

    # ------------------------------------------------------------------ gpuconv/nn/optimizers.py
    Mutant("nn-adam-bias-correction-off-by-one", "gpuconv/nn/optimizers.py",
           "        t = step + 1\n",
           "        t = step + 2\n",
           "Adam's bias correction counts updates from 2, not 1",
           ("tests/test_nn_maths.py::test_adam_updates_as_keras_writes_it[{}-1.0]",)),
    Mutant("nn-adam-epsilon-inside-sqrt", "gpuconv/nn/optimizers.py",
           "            np.sqrt(vv, out=t)\n            t += epsilon\n",
           "            t[...] = vv + epsilon\n            np.sqrt(t, out=t)\n",
           "Adam adds epsilon under the square root of v instead of after it (Keras' placement)",
           ("tests/test_nn_maths.py::test_adam_updates_as_keras_writes_it"
            "[{'learning_rate': 0.01, 'epsilon': 0.001}-0.001]",)),
    Mutant("nn-sgd-nesterov-drops-gradient", "gpuconv/nn/optimizers.py",
           "p -= s[0] * (g + m * v if self.nesterov else v)",
           "p -= s[0] * (m * v if self.nesterov else v)",
           "SGD's Nesterov step leaves out the gradient term (p -= lr * m * v)",
           ("tests/test_nn_maths.py::test_sgd_updates_as_pytorch"
            "[{'lr': 0.05, 'momentum': 0.8, 'nesterov': True}]",)),
    Mutant("nn-weight-decay-decoupled", "gpuconv/nn/optimizers.py",
           "g = g + p.dtype.type(self.weight_decay) * p  # L2 penalty, coupled (as SGD's)",
           "p -= p.dtype.type(self.weight_decay) * scalars[0] * p  # decoupled",
           "weight decay shrinks the parameters directly (decoupled, AdamW-like) instead of "
           "adding an L2 term to the gradient",
           ("tests/test_nn_maths.py::test_sgd_updates_as_pytorch"
            "[{'lr': 0.05, 'momentum': 0.9, 'weight_decay': 0.1}]",)),
    Mutant("nn-step-decay-off-by-one", "gpuconv/nn/optimizers.py",
           "return self.lr * self.gamma ** (step // self.step_size)",
           "return self.lr * self.gamma ** ((step + 1) // self.step_size)",
           "StepDecay decays one step early",
           ("tests/test_nn_maths.py::test_schedules_give_the_documented_rate_at_each_step"
            "[{'name': 'step', 'lr': 0.1, 'step_size': 3, 'gamma': 0.5}-]",)),
    Mutant("nn-optimizers-weight-decay-scales-gradient", "gpuconv/nn/optimizers.py",
           "g = g + p.dtype.type(self.weight_decay) * p",
           "g = g + p.dtype.type(self.weight_decay) * g",
           "the L2 term is taken of the gradient instead of the weight",
           ("tests/test_nn_maths.py::"
            "test_sgd_updates_as_pytorch[{'lr': 0.05, 'momentum': 0.9, 'weight_decay': 0.1}]",)),
    Mutant("nn-optimizers-sgd-velocity-restarts-on-step-two", "gpuconv/nn/optimizers.py",
           "return 1 if step == 0 else 0",
           "return 1 if step <= 1 else 0",
           "SGD's velocity starts afresh at g on the second update too",
           ("tests/test_nn_maths.py::test_sgd_updates_as_pytorch[{'lr': 0.1, 'momentum': 0.9}]",)),
    Mutant("nn-optimizers-adam-correction-without-sqrt", "gpuconv/nn/optimizers.py",
           "math.sqrt(1 - self.beta_2 ** t)",
           "(1 - self.beta_2 ** t)",
           "Adam's step size divides by (1 - b2^t) without its square root",
           ("tests/test_nn_maths.py::test_adam_updates_as_keras_writes_it[{}-1.0]",)),
    Mutant("nn-optimizers-adam-first-moment-takes-beta-2", "gpuconv/nn/optimizers.py",
           "t = gg * (1 - b1)",
           "t = gg * (1 - b2)",
           "Adam's first moment adds (1 - beta_2) g instead of (1 - beta_1) g",
           ("tests/test_nn_maths.py::test_adam_updates_as_keras_writes_it[{}-1.0]",)),
    Mutant("nn-optimizers-cosine-warmup-from-zero", "gpuconv/nn/optimizers.py",
           "return self.lr * (step + 1) / self.warmup_steps",
           "return self.lr * step / self.warmup_steps",
           "cosine warm-up starts at 0 and reaches lr one step late",
           ("tests/test_nn_maths.py::test_cosine_warms_up_to_the_rate_and_ends_at_its_fraction",)),
    Mutant("nn-optimizers-cosine-not-held-after-the-end", "gpuconv/nn/optimizers.py",
           "t = min(1.0, (step - self.warmup_steps) / span)",
           "t = (step - self.warmup_steps) / span",
           "past total_steps the cosine rises again instead of holding the final rate",
           ("tests/test_nn_maths.py::test_cosine_warms_up_to_the_rate_and_ends_at_its_fraction",)),

    # ---------------------------------------------------------------------- gpuconv/nn/layers.py
    Mutant("nn-dropout-not-inverted", "gpuconv/nn/layers.py",
           "dropout_threshold(self.rate), 1.0 / (1.0 - self.rate)",
           "dropout_threshold(self.rate), 1.0",
           "dropout keeps values unscaled instead of dividing them by the keep probability",
           ("tests/test_nn_maths.py::"
            "test_dropout_keeps_a_fraction_scaled_by_its_inverse_and_routes_the_gradient_alike"
            "[0.5]",)),
    Mutant("nn-random-shift-never-by-max", "gpuconv/nn/layers.py",
           "dy, dx = rng.integers(2 * s + 1, (n,)), rng.integers(2 * s + 1, (n,))",
           "dy, dx = rng.integers(2 * s, (n,)), rng.integers(2 * s, (n,))",
           "RandomShift draws shifts from -max to max - 1, never by +max",
           ("tests/test_nn_maths.py::"
            "test_random_shift_moves_each_image_by_up_to_max_shift_each_way",)),
    Mutant("nn-batch-norm-running-var-biased", "gpuconv/nn/layers.py",
           "(1 - m) * var * (count / max(count - 1, 1)))",
           "(1 - m) * var)",
           "batch norm's running variance takes the batch's biased variance instead of the "
           "unbiased one (PyTorch's)",
           ("tests/test_nn.py::test_training_matches_pytorch_step_by_step",)),
    Mutant("nn-layers-dense-gradients-accumulate", "gpuconv/nn/layers.py",
           "self.grads = {\"kernel\": matmul(self._x.T, grad_out)}",
           "self.grads = {\"kernel\": matmul(self._x.T, grad_out) + self.grads.get(\"kernel\", "
           "0)}",
           "Dense's kernel gradient is added to the last step's instead of replacing it (never "
           "zeroed)",
           ("tests/test_nn.py::test_training_matches_pytorch_step_by_step",)),
    Mutant("nn-layers-batch-norm-momentum-swapped", "gpuconv/nn/layers.py",
           "self.buffers[\"running_mean\"][...] = m * self.buffers[\"running_mean\"] + (1 - m) "
           "* mean",
           "self.buffers[\"running_mean\"][...] = (1 - m) * self.buffers[\"running_mean\"] + m "
           "* mean",
           "batch norm's running mean takes momentum as PyTorch's convention (weight of the "
           "batch), not Keras' (weight of the old value)",
           ("tests/test_nn.py::test_training_matches_pytorch_step_by_step",)),

    # ---------------------------------------------------------------------- gpuconv/nn/losses.py
    Mutant("nn-softmax-without-max-shift", "gpuconv/nn/losses.py",
           "shifted = logits - logits.max(axis=-1, keepdims=True)",
           "shifted = logits",
           "log-softmax does not subtract the row maximum, so large logits overflow exp",
           ("tests/test_nn_maths.py::test_softmax_cross_entropy_is_pytorchs_mean_over_the_batch"
            "[1000.0]",)),
    Mutant("nn-losses-gradient-not-divided-by-batch", "gpuconv/nn/losses.py",
           "return loss, grad / logits.shape[0]",
           "return loss, grad",
           "softmax cross-entropy's gradient is the sum's, not the mean's (not divided by the "
           "batch)",
           ("tests/test_nn_maths.py::"
            "test_softmax_cross_entropy_is_pytorchs_mean_over_the_batch[1.0]",)),
    Mutant("nn-losses-totals-add-the-mean", "gpuconv/nn/losses.py",
           "totals[0] += loss * logits.shape[0]",
           "totals[0] += loss",
           "the epoch's loss total adds each batch's mean, not its sum",
           ("tests/test_nn_step.py::test_totals_match_the_model_on_the_same_batches",)),
    # ------------------------------------------------------------------- gpuconv/nn/callbacks.py
    Mutant("nn-early-stopping-min-delta-not-strict", "gpuconv/nn/callbacks.py",
           "return current + self.min_delta < best",
           "return current + self.min_delta <= best",
           "EarlyStopping counts a loss improvement of exactly min_delta as an improvement",
           ("tests/test_keras.py::test_early_stopping_needs_an_improvement_by_more_than_min_delta"
            "[val_loss-1.0,0.5,0.25-0.5-0-2-0]",)),
    Mutant("nn-callbacks-patience-off-by-one", "gpuconv/nn/callbacks.py",
           "if self.wait >= self.patience:",
           "if self.wait > self.patience:",
           "EarlyStopping waits one epoch more than its patience",
           ("tests/test_keras.py::"
            "test_early_stopping_counts_patience_as_keras_and_restores_the_best",)),
    Mutant("nn-callbacks-checkpoint-best-not-updated", "gpuconv/nn/callbacks.py",
           "            self.best = current\n"
           "        path = self._path(epoch, logs)",
           "        path = self._path(epoch, logs)",
           "ModelCheckpoint(save_best_only) never updates its best, so it saves every finite "
           "epoch",
           ("tests/test_keras.py::test_model_checkpoint_formats_the_path_and_keeps_the_best",)),
    Mutant("nn-callbacks-checkpoint-epoch-zero-based", "gpuconv/nn/callbacks.py",
           "fields = type(logs)(logs, epoch=epoch + 1)",
           "fields = type(logs)(logs, epoch=epoch)",
           "ModelCheckpoint's {epoch} field counts from 0, not from 1 as Keras'",
           ("tests/test_keras.py::test_model_checkpoint_formats_the_path_and_keeps_the_best",)),
    # ---------------------------------------------------------------- gpuconv/backends/reference.py
    Mutant("reference-argmax-first-nan-wins", "gpuconv/backends/reference.py",
           "    last_nan = values.shape[2] - 1 - np.argmax(nan[:, :, ::-1], axis=2)\n",
           "    last_nan = np.argmax(nan, axis=2)\n",
           "the reference max pooling's index takes the first NaN of a window, not the last",
           ("tests/test_golden.py::test_golden[max_pool2d_nan_ties_padding_f64-reference]",)),
    Mutant("reference-argmax-last-tie-wins", "gpuconv/backends/reference.py",
           "    first_max = np.argmax(valid & (values == top), axis=2)\n",
           "    first_max = values.shape[2] - 1 - np.argmax((valid & (values == top))[:, :, "
           "::-1], axis=2)\n",
           "the reference max pooling's index takes the last of tied maxima",
           ("tests/test_golden.py::test_golden[max_pool2d_ties_f64-reference]",)),
    Mutant("reference-avg-divisor-padding-axes-swapped", "gpuconv/backends/reference.py",
           "    counted[:, :, th - eh:th + h + eh, tw - ew:tw + w + ew] = 1\n",
           "    counted[:, :, th - ew:th + h + ew, tw - eh:tw + w + eh] = 1\n",
           "with count_include_pad, the reference divisor counts the row padding along columns "
           "and the column padding along rows",
           ("tests/test_golden.py::test_golden[avg_pool2d_row_padding_include_f64-reference]",)),
    Mutant("reference-fold-taps-step-by-stride", "gpuconv/backends/reference.py",
           "        r, q = i * dilation[0], j * dilation[1]\n",
           "        r, q = i * stride[0], j * stride[1]\n",
           "the reference col2im places taps by the stride instead of the dilation",
           ("tests/test_golden.py::test_golden[conv2d_dilation_2_1_f64-reference]",)),
    Mutant("reference-transposed-conv-drops-bias", "gpuconv/backends/reference.py",
           "    return dx if bias is None else dx + bias.reshape(1, -1, 1, 1)\n",
           "    return dx\n",
           "the reference transposed conv forgets its bias",
           ("tests/test_golden.py::test_golden[conv_transpose2d_basic_f64-reference]",)),
    Mutant("reference-max-pool-backward-stores", "gpuconv/backends/reference.py",
           "    np.add.at(grad.reshape(n * c, -1), (np.broadcast_to(rows, indices.shape), "
           "indices), grad_out)\n",
           "    grad.reshape(n * c, -1)[np.broadcast_to(rows, indices.shape), indices] = "
           "grad_out\n",
           "the reference max-pool backward stores each gradient: an element two windows chose "
           "keeps one",
           ("tests/test_golden.py::test_golden[max_pool2d_ties_overlap_f64-reference]",
            "tests/test_golden.py::test_golden[max_pool2d_overlap_3x3_s2_f64-reference]",)),
    Mutant("reference-lp-backward-zero-window-passes-gradient", "gpuconv/backends/reference.py",
           "    grad_total = grad_out * window * safe ** (1.0 / p - 1.0) / p * (np.abs(total) > "
           "0)\n",
           "    grad_total = grad_out * window * safe ** (1.0 / p - 1.0) / p\n",
           "the reference Lp-pool backward lets a window of zeros pass gradient (PyTorch gives "
           "0)",
           ("tests/test_golden.py::test_golden[lp_pool2d_p1_f64-reference]",
            "tests/test_semantics.py::"
            "test_lp_pool_backward_of_zero_and_nan_windows_as_torch[1.0-numpy]",)),
    # ------------------------------------------------------------------------ gpuconv/functional.py
    Mutant("functional-conv-channels-check-only-upper", "gpuconv/functional.py",
           "if weight.shape[1] * groups != channels:",
           "if weight.shape[1] * groups > channels:",
           "conv's channel rule only refuses weight.shape[1] * groups above the input's "
           "channels: a weight with too few input channels per group is let through",
           ("tests/test_validation.py::"
            "test_bad_input_is_rejected[conv2d-weight-in-channels-fewer-than-per-group]",
            "tests/test_validation.py::"
            "test_bad_input_is_rejected[conv1d_backward-weight-in-channels-fewer-than-per-group]",)),
    Mutant("functional-transposed-weight-in-channels-only-upper", "gpuconv/functional.py",
           "if weight.shape[0] != channels:",
           "if weight.shape[0] > channels:",
           "a transposed conv's weight.shape[0] is only checked against too many input "
           "channels, not too few",
           ("tests/test_validation.py::"
            "test_bad_input_is_rejected[conv_transpose2d-weight-in-channels-fewer-than-input]",
            "tests/test_validation.py::"
            "test_bad_input_is_rejected"
            "[conv_transpose1d_backward-weight-in-channels-fewer-than-input]",)),
    Mutant("functional-grad-out-dtype-unchecked", "gpuconv/functional.py",
           "check_same_dtype(\"input\", x, grad_out=grad_out)",
           "check_same_dtype(\"input\", x)",
           "a backward's grad_out of another dtype than the input is not refused",
           ("tests/test_validation.py::"
            "test_bad_input_is_rejected[conv2d_backward-grad_out-dtype-mismatch]",)),
    Mutant("functional-max-pool-always-returns-indices", "gpuconv/functional.py",
           "    return (y, indices) if return_indices else y\n"
           "\n"
           "\n"
           "def _index_pool_backward_checks",
           "    return (y, indices)\n"
           "\n"
           "\n"
           "def _index_pool_backward_checks",
           "max_pool returns (output, indices) even when return_indices is False",
           ("tests/test_hostile_args.py::test_max_pooling_counts_its_indices[max_pool1d]",)),
    Mutant("functional-max-pool-size-check-ignores-indices", "gpuconv/functional.py",
           "indices=return_indices)",
           "indices=False)",
           "max pooling's size check leaves out the int64 indices it returns",
           ("tests/test_hostile_args.py::test_max_pooling_counts_its_indices[max_pool1d]",)),
    Mutant("functional-avg-pool-count-include-pad-not-forwarded", "gpuconv/functional.py",
           "be.avg_pool2d(_lift(ndim, be, x), spec, include_pad, divisor_override)",
           "be.avg_pool2d(_lift(ndim, be, x), spec, True, divisor_override)",
           "avg_pool's forward drops count_include_pad (always counts the padding)",
           ("tests/test_torch_adapter.py::test_module_matches_torch_nn[AvgPool1d-cpu-dtype0]",)),
    Mutant("functional-avg-pool-backward-divisor-dropped", "gpuconv/functional.py",
           "_lift_spatial(ndim, x.shape[2:]),\n"
           "                                                  include_pad, divisor_override))",
           "_lift_spatial(ndim, x.shape[2:]),\n"
           "                                                  include_pad, None))",
           "avg_pool's backward drops divisor_override",
           ("tests/test_unbatched.py::"
            "test_unbatched_pooling_matches_torch[avg_pool2d-numpy-float64]",)),
    Mutant("functional-transposed-backward-not-cropped", "gpuconv/functional.py",
           "grad_x = _drop_view(ndim, _cropped(grad_x, x2.shape[2:]))",
           "grad_x = _drop_view(ndim, grad_x)",
           "a transposed conv's grad_input is not cropped back to the input (output_padding >= "
           "stride): a row or column too many",
           ("tests/test_gradcheck.py::"
            "test_conv_transpose_gradients"
            "[conv_transpose1d-1-{'dilation': 2, 'output_padding': 1}]",)),
    Mutant("functional-flip-grad-weight-not-flipped-back", "gpuconv/functional.py",
           "grad_w = (_drop_view(ndim, _flip_kernel(grad_w)) if flip and grad_w is not None else",
           "grad_w = (_drop_view(ndim, grad_w) if flip and grad_w is not None else",
           "conv backward with flip=True returns the flipped kernel's gradient unflipped",
           ("tests/test_gradcheck.py::"
            "test_conv_gradients[conv1d-11-{'padding': 1, 'stride': 2, 'flip': True}]",)),
    Mutant("functional-memo-ignores-argument-type", "gpuconv/functional.py",
           "        key.append(kind)\n"
           "    key = tuple(key)",
           "    key = tuple(key)",
           "the checks' memo keys plain arguments by value only: 0 after False (or 1 after 1.0) "
           "reuses the checks of the other",
           ("tests/test_hostile_args.py::test_flags_must_be_bools[<lambda>-ceil_mode-0]",)),
    Mutant("functional-memo-ignores-size-limit", "gpuconv/functional.py",
           "key = [checks, max_bytes_setting(), tuple(backends._LOADED.values())]",
           "key = [checks, tuple(backends._LOADED.values())]",
           "the checks' memo leaves out $GPUCONV_MAX_BYTES: a lower limit set later is not "
           "applied",
           ("tests/test_hostile_args.py::test_the_size_limit_is_configurable",)),
    Mutant("functional-bad-index-1d-output-position", "gpuconv/functional.py",
           "error.output[:2] + error.output[3:]",
           "error.output[:3]",
           "a 1-D max-pool backward's bad index names the lifted (n, c, 0) instead of (n, c, l)",
           ("tests/test_cpu_kernels.py::"
            "test_max_pool1d_backward_index_outside_its_window_names_its_1d_output"
            "[k2-index-past-the-window-numba]",)),
    # --------------------------------------------------------------------------- gpuconv/_checks.py
    Mutant("checks-int-accepts-bool", "gpuconv/_checks.py",
           "if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < "
           "minimum:",
           "if not isinstance(value, numbers.Integral) or value < minimum:",
           "check_int takes True as 1",
           ("tests/test_validation.py::"
            "test_bad_input_is_rejected[avg_pool2d-divisor_override-True]",)),
    Mutant("checks-float16-accepted", "gpuconv/_checks.py",
           "FLOAT_DTYPES = (\"float32\", \"float64\")",
           "FLOAT_DTYPES = (\"float16\", \"float32\", \"float64\")",
           "arrays of float16 pass the dtype rule",
           ("tests/test_validation.py::test_bad_input_is_rejected[max_pool2d-input-float16]",
            "tests/test_validation.py::test_bad_input_is_rejected[conv2d-all-float16]",)),
    Mutant("checks-batch-hint-on-any-layout", "gpuconv/_checks.py",
           "layout[0] == \"N\" else \"\"",
           "layout[0] != \"N\" else \"\"",
           "the '(add a batch axis with x[None])' hint goes to a weight one axis short, not to "
           "a grad_out without its batch axis",
           ("tests/test_validation.py::test_only_an_array_with_a_batch_axis_is_told_to_add_one",)),
    Mutant("checks-same-dtype-value-error", "gpuconv/_checks.py",
           "raise TypeError(f\"{name} has dtype",
           "raise ValueError(f\"{name} has dtype",
           "a dtype mismatch is a ValueError, not a TypeError",
           ("tests/test_validation.py::test_bad_input_is_rejected[conv2d-dtype-mismatch-weight]",)),
    Mutant("checks-mixed-libraries-allowed", "gpuconv/_checks.py",
           "if len(kinds) > 1:",
           "if len(kinds) > 2:",
           "resolve_backend lets arrays of two array libraries through",
           ("tests/test_any_array.py::test_numpy_and_numba_arrays_in_one_call_are_refused",)),
    Mutant("checks-bool-accepts-int", "gpuconv/_checks.py",
           "if isinstance(value, (bool, np.bool_)):",
           "if isinstance(value, (bool, np.bool_, int)):",
           "check_bool takes 0 and 1",
           ("tests/test_hostile_args.py::test_flags_must_be_bools[<lambda>-ceil_mode-0]",)),
    Mutant("checks-broadcast-axis-of-two-not-counted", "gpuconv/_checks.py",
           "if any(s == 0 and n > 1 for s, n in zip(strides, array.shape)):",
           "if any(s == 0 and n > 2 for s, n in zip(strides, array.shape)):",
           "a broadcast view whose zero-stride axes have 2 elements is not size-checked as the "
           "copy an op makes of it",
           ("tests/test_hostile_args.py::"
            "test_a_broadcast_view_is_size_checked_as_its_copy_whatever_its_axes",)),
    Mutant("checks-byte-limit-exclusive", "gpuconv/_checks.py",
           "if nbytes <= limit:",
           "if nbytes < limit:",
           "an array of exactly the byte limit is refused",
           ("tests/test_hostile_args.py::test_max_pooling_counts_its_indices[max_pool1d]",)),
    # ------------------------------------------------------------------------- gpuconv/_boundary.py
    Mutant("boundary-unbatched-grad-out-extra-axis", "gpuconv/_boundary.py",
           "if array.ndim != unbatched_ndim:",
           "if array.ndim < unbatched_ndim:",
           "an unbatched input's grad_out with a batch axis is let through (and lifted to 5-D)",
           ("tests/test_unbatched.py::"
            "test_unbatched_input_needs_unbatched_grad_out_and_indices[conv2d_backward-args0]",)),
    Mutant("boundary-requires-grad-advice-lost", "gpuconv/_boundary.py",
           "if getattr(array, \"requires_grad\", False)",
           "if False",
           "a tensor that requires grad gets the dtype advice instead of 'use gpuconv.torch'",
           ("tests/test_torch_adapter.py::"
            "test_a_tensor_that_cannot_be_shared_says_why"
            "[<lambda>-for autograd use gpuconv.torch]",)),
    Mutant("boundary-wrong-rank-not-named", "gpuconv/_boundary.py",
           "    if ndim == len(layout) - 1:\n"
           "        return True\n",
           "    if ndim == len(layout) - 1:\n"
           "        return True\n"
           "    return False\n",
           "an input of neither rank is left to check_array, whose message names only the "
           "batched rank",
           ("tests/test_unbatched.py::test_input_of_neither_rank_names_both[conv2d-5,5-args1]",)),
    Mutant("boundary-indices-not-batched", "gpuconv/_boundary.py",
           "FOLLOW_INPUT = (\"grad_out\", \"indices\")",
           "FOLLOW_INPUT = (\"grad_out\",)",
           "an unbatched max-pool backward's indices keep no batch axis",
           ("tests/test_unbatched.py::"
            "test_unbatched_pooling_matches_torch[max_pool2d-numpy-float64]",)),
    # ----------------------------------------------------------------------------- gpuconv/torch.py
    Mutant("torch-adapter-conv-backward-mask-swapped", "gpuconv/torch.py",
           "output_mask=(needs[0], needs[1], ctx.has_bias and needs[2])",
           "output_mask=(needs[1], needs[0], ctx.has_bias and needs[2])",
           "ConvFunction's backward asks for grad_input where the weight needs one and vice "
           "versa",
           ("tests/test_torch_adapter.py::"
            "test_a_model_with_gpuconv_layers_trains_as_with_torch_layers[cpu]",)),
    Mutant("torch-adapter-avgpool2d-divisor-override-dropped", "gpuconv/torch.py",
           "self.count_include_pad, self.divisor_override, backend=self.backend)",
           "self.count_include_pad, None, backend=self.backend)",
           "AvgPool2d's forward drops divisor_override",
           ("tests/test_torch_adapter.py::test_module_matches_torch_nn[AvgPool2d-cpu-dtype0]",)),
    Mutant("torch-adapter-convtranspose2d-output-size-ignores-dilation", "gpuconv/torch.py",
           "self.kernel_size, 2, self.dilation)",
           "self.kernel_size, 2)",
           "ConvTranspose2d(output_size=...) works out output_padding without the dilation",
           ("tests/test_torch_adapter.py::"
            "test_conv_transpose_output_size_counts_the_dilation_as_torch[2d-dilation-2]",)),
    Mutant("torch-adapter-convtranspose1d-output-size-ignores-dilation", "gpuconv/torch.py",
           "self.kernel_size, 1, self.dilation)",
           "self.kernel_size, 1)",
           "ConvTranspose1d(output_size=...) works out output_padding without the dilation",
           ("tests/test_torch_adapter.py::"
            "test_conv_transpose_output_size_counts_the_dilation_as_torch[1d-dilation-2]",)),
    Mutant("torch-adapter-conv1d-padding-mode-dropped", "gpuconv/torch.py",
           "self.groups, padding_mode=self.padding_mode, backend=self.backend)\n"
           "\n"
           "\n"
           "def _conv2d_forward",
           "self.groups, backend=self.backend)\n"
           "\n"
           "\n"
           "def _conv2d_forward",
           "Conv1d's forward drops padding_mode (zeros always)",
           ("tests/test_torch_adapter.py::test_module_matches_torch_nn[Conv1d-reflect-cpu-dtype0]",)),
    Mutant("torch-adapter-adaptive-max-pool1d-drops-indices", "gpuconv/torch.py",
           "return adaptive_max_pool1d(input, self.output_size, self.return_indices,",
           "return adaptive_max_pool1d(input, self.output_size, False,",
           "AdaptiveMaxPool1d(return_indices=True) returns no indices",
           ("tests/test_torch_adapter.py::"
            "test_max_pool_modules_built_to_return_indices_return_torchs[AdaptiveMaxPool1d]",)),
    Mutant("torch-adapter-cpu-ignores-backend", "gpuconv/torch.py",
           "    if device.type == \"cpu\":\n"
           "        return op(*args, backend=backend, **kwargs)",
           "    if device.type == \"cpu\":\n"
           "        return op(*args, backend=None, **kwargs)",
           "on CPU tensors the adapter runs the NumPy backend whatever backend= names",
           ("tests/test_torch_adapter.py::"
            "test_the_backend_named_for_cpu_tensors_is_the_one_that_runs[nonsense-conv2d]",)),
    Mutant("torch-adapter-conv-transpose1d-groups-dilation-swapped", "gpuconv/torch.py",
           "F.conv_transpose1d, F.conv_transpose1d_backward,\n"
           "        (stride, padding, output_padding, groups, dilation), backend))",
           "F.conv_transpose1d, F.conv_transpose1d_backward,\n"
           "        (stride, padding, output_padding, dilation, groups), backend))",
           "conv_transpose1d hands groups and dilation over swapped",
           ("tests/test_torch_adapter.py::test_gradcheck[conv_transpose1d-cpu]",
            "tests/test_torch_adapter.py::"
            "test_module_matches_torch_nn[ConvTranspose1d-cpu-dtype0]",)),
    Mutant("torch-adapter-lppool2d-stride-dropped", "gpuconv/torch.py",
           "return lp_pool2d(input, self.norm_type, self.kernel_size, self.stride, "
           "self.ceil_mode,",
           "return lp_pool2d(input, self.norm_type, self.kernel_size, None, self.ceil_mode,",
           "LPPool2d's forward drops its stride (stride = kernel_size)",
           ("tests/test_torch_adapter.py::"
            "test_module_matches_torch_nn[LPPool2d-stride-cpu-dtype0]",)),
    # ----------------------------------------------------------------- gpuconv/backends/__init__.py
    Mutant("backends-masked-array-is-foreign", "gpuconv/backends/__init__.py",
           "return type(array) is not np.ndarray and not isinstance(array, np.ma.MaskedArray)",
           "return type(array) is not np.ndarray",
           "a masked array counts as a foreign subclass, shared through DLPack without its mask",
           ("tests/test_hostile_args.py::test_masked_arrays_are_refused[<lambda>0]",)),
    Mutant("backends-bad-index-zero-called-outside-plane", "gpuconv/backends/__init__.py",
           "if 0 <= index < plane_size:",
           "if 0 < index < plane_size:",
           "a bad index 0 (in the plane, outside its window) is reported as outside the plane",
           ("tests/test_cpu_kernels.py::"
            "test_max_pool1d_backward_index_outside_its_window_names_its_1d_output"
            "[k2-index-0-numpy]",)),
    Mutant("backends-kernel-flipped-on-one-axis", "gpuconv/backends/__init__.py",
           "(slice(None, None, -1),) * (weight.ndim - 2)",
           "(slice(None, None, -1),)",
           "kernel_flipped reverses the first kernel axis only",
           ("tests/test_semantics.py::"
            "test_flip_is_correlation_with_the_kernel_reversed_on_every_axis[conv2d-k3x2-1]",)),
    # ---------------------------------------------------------------------------- gpuconv/_files.py
    Mutant("files-write-in-place", "gpuconv/_files.py",
           "        with open(tmp, \"wb\") as f:\n",
           "        tmp = path\n"
           "        with open(tmp, \"wb\") as f:\n",
           "atomic_write writes the file in place instead of through a temporary file and a "
           "rename (a crash mid-write leaves a truncated model)",
           ("tests/test_nn.py::test_save_is_atomic_and_keeps_the_old_file_on_failure",)),
    Mutant("files-rename-before-fsync", "gpuconv/_files.py",
           "            write(f)\n"
           "            f.flush()\n"
           "            os.fsync(f.fileno())\n"
           "        os.replace(tmp, path)\n",
           "            write(f)\n"
           "            os.replace(tmp, path)\n"
           "            f.flush()\n"
           "            os.fsync(f.fileno())\n",
           "atomic_write renames the temporary over the file before flushing and syncing it (a "
           "power cut leaves a file whose data never reached the disk)",
           ("tests/test_hostile_files.py::"
            "test_a_file_reaches_the_disk_before_its_rename_and_the_rename_after[model]",)),
    Mutant("files-no-fsync", "gpuconv/_files.py",
           "            f.flush()\n"
           "            os.fsync(f.fileno())\n",
           "            f.flush()\n",
           "atomic_write renames the temporary without syncing its data to disk first",
           ("tests/test_hostile_files.py::"
            "test_a_file_reaches_the_disk_before_its_rename_and_the_rename_after[model]",)),
    Mutant("files-temporary-left-behind", "gpuconv/_files.py",
           "        if tmp.exists():\n"
           "            tmp.unlink()\n",
           "        pass\n",
           "a failed atomic_write leaves its temporary file behind",
           ("tests/test_nn.py::test_save_is_atomic_and_keeps_the_old_file_on_failure",)),
    Mutant("files-permissions-not-kept", "gpuconv/_files.py",
           "                os.fchmod(f.fileno(), stat.S_IMODE(old.st_mode))\n",
           "                pass\n",
           "a file saved over loses its permission bits (a private model becomes readable)",
           ("tests/test_hostile_files.py::test_a_file_saved_over_keeps_its_permissions[384]",)),
    Mutant("files-stale-temporaries-of-any-name", "gpuconv/_files.py",
           "if (match := _TEMPORARY.match(path.name)) and match[\"name\"] in names",
           "if (match := _TEMPORARY.match(path.name))",
           "remove_stale_temporaries deletes every temporary-looking file, the user's too",
           ("tests/test_hostile_training.py::test_stale_temporary_files_are_removed_on_start",)),
    # ---------------------------------------------------------------------- gpuconv/nn/modelfile.py
    Mutant("nn-modelfile-trailing-member-bytes-accepted", "gpuconv/nn/modelfile.py",
           "if info.file_size != header_size + nbytes:",
           "if info.file_size < header_size + nbytes:",
           "a member with more bytes than its .npy header describes is accepted",
           ("tests/test_hostile_files.py::"
            "test_a_member_whose_size_disagrees_with_its_header_is_refused[+8-bytes]",)),
    Mutant("nn-modelfile-weight-dtype-not-checked", "gpuconv/nn/modelfile.py",
           "if dtype.hasobject or dtype.newbyteorder(\"=\").name not in expected:",
           "if dtype.hasobject:",
           "a stored weight of an integer (or any non-object) dtype is accepted and cast",
           ("tests/test_hostile_files.py::test_arrays_of_another_dtype_are_refused_unread",)),
    Mutant("nn-modelfile-weight-shape-rank-only", "gpuconv/nn/modelfile.py",
           "if stored[key] != tuple(shape):",
           "if len(stored[key]) != len(shape):",
           "a stored weight is checked for its rank only, not its shape",
           ("tests/test_hostile_files.py::"
            "test_an_architecture_that_disagrees_with_the_arrays_is_refused",)),
    Mutant("nn-modelfile-optimizer-shape-not-checked", "gpuconv/nn/modelfile.py",
           "if shape != tuple(wanted[key]):",
           "if len(shape) != len(wanted[key]):",
           "an optimiser slot is checked for its rank only, not its shape",
           ("tests/test_hostile_files.py::test_optimiser_state_of_the_wrong_shape_is_refused",)),
    Mutant("nn-modelfile-missing-optimizer-state-accepted", "gpuconv/nn/modelfile.py",
           "if unknown or (step > 0 and missing):",
           "if unknown:",
           "a checkpoint missing some optimiser slots loads (fresh Adam moments on resume)",
           ("tests/test_hostile_files.py::test_missing_optimiser_state_is_refused",)),
    Mutant("nn-modelfile-negative-epoch-accepted", "gpuconv/nn/modelfile.py",
           "if not 0 <= epoch <= MAX_COUNT or",
           "if not epoch <= MAX_COUNT or",
           "a negative epoch counter in a model file is accepted",
           ("tests/test_hostile_files.py::"
            "test_malformed_descriptions_are_clear_errors"
            "[<lambda>-and history an object of lists]",)),
    Mutant("nn-modelfile-version-not-checked", "gpuconv/nn/modelfile.py",
           "if meta.get(\"version\") != FORMAT_VERSION:",
           "if meta.get(\"version\") is None:",
           "a model file of another format version is read as this one",
           ("tests/test_nn.py::test_a_damaged_model_file_is_a_clear_error",)),
    # -------------------------------------------------------------------------- gpuconv/nn/model.py
    Mutant("nn-model-set-weights-keeps-the-callers-arrays", "gpuconv/nn/model.py",
           "            store[key] = self.device.copy(value, self.dtype)\n",
           "            store[key] = self.device.asarray(value, self.dtype)\n",
           "set_weights keeps the caller's arrays where their dtype and layout are the model's: "
           "training changes them in place",
           ("tests/test_nn.py::"
            "test_a_model_shares_no_weights_with_its_caller_or_its_fully_convolutional_form"
            "[float64]",)),
    Mutant("nn-model-fully-convolutional-shares-weights", "gpuconv/nn/model.py",
           "store[k.removeprefix(\"buffer:\")] = self.device.copy(v, self.dtype)",
           "store[k.removeprefix(\"buffer:\")] = self.device.asarray(v, self.dtype)",
           "to_fully_convolutional's model shares every array but the first Dense's kernel with "
           "the original: training one changes the other",
           ("tests/test_nn.py::"
            "test_a_model_shares_no_weights_with_its_caller_or_its_fully_convolutional_form"
            "[float32]",)),
    Mutant("nn-model-checkpoint-forgets-the-metric-name", "gpuconv/nn/model.py",
           "            model.compile(optimizer, metrics=[metric])\n",
           "            model.compile(optimizer)\n",
           "a model loaded from a checkpoint logs accuracy as \"accuracy\" whatever name compile "
           "was given: a resumed run's history splits across two keys",
           ("tests/test_nn.py::test_a_checkpoint_keeps_the_metric_name_compile_was_given[acc]",)),
    Mutant("nn-model-buffers-not-restored", "gpuconv/nn/model.py",
           "            store = model.layers[int(index)].params if kind == \"param\" else \\\n"
           "                model.layers[int(index)].buffers\n"
           "            store[name] = read(key)\n",
           "            if kind == \"param\":\n"
           "                model.layers[int(index)].params[name] = read(key)\n",
           "load restores the parameters but not batch norm's running statistics",
           ("tests/test_nn.py::test_save_load_round_trip_is_exact",)),
    Mutant("nn-model-optimizer-state-not-restored", "gpuconv/nn/model.py",
           "            optimizer.state = {k.removeprefix(\"optimizer/\"): read(k)\n"
           "                               for k in file.shapes if "
           "k.startswith(\"optimizer/\")}\n",
           "            optimizer.state = {}\n",
           "load of a checkpoint restarts the optimiser's moments from zero",
           ("tests/test_hostile_files.py::test_a_checkpoint_round_trip_keeps_the_optimiser",)),
    Mutant("nn-model-epoch-not-restored", "gpuconv/nn/model.py",
           "model.epoch, model.history = meta[\"epoch\"], History(meta[\"history\"])",
           "model.history = History(meta[\"history\"])",
           "load forgets the epoch counter (a resumed run restarts at epoch 0)",
           ("tests/test_nn.py::test_fit_is_deterministic_and_resume_is_bit_identical",)),
    Mutant("nn-model-history-not-saved", "gpuconv/nn/model.py",
           "\"epoch\": self.epoch, \"history\": self.history.history,",
           "\"epoch\": self.epoch, \"history\": {},",
           "save drops the per-epoch history (a resumed run's curves start empty)",
           ("tests/test_nn.py::test_fit_is_deterministic_and_resume_is_bit_identical",)),
    Mutant("nn-model-history-before-validation", "gpuconv/nn/model.py",
           "            if validation_data is not None:\n"
           "                val = self.evaluate(*validation_data, batch_size=max(batch_size, "
           "256))\n",
           "            self.history.append(dict(logs))\n"
           "            if validation_data is not None:\n"
           "                val = self.evaluate(*validation_data, batch_size=max(batch_size, "
           "256))\n",
           "fit appends each epoch's logs to the history before the validation metrics are "
           "added (and once more after: the history is missing val_ entries and repeats others)",
           ("tests/test_keras.py::test_validation_split_holds_out_what_keras_holds_out[10-0.25-3]",
            "tests/test_keras.py::"
            "test_fit_trains_epochs_more_each_call_and_refuses_an_empty_range",)),
    Mutant("nn-model-predict-in-training-mode", "gpuconv/nn/model.py",
           "return np.concatenate([to_host(self(self._to_device(x[s:s + batch_size])[0]))",
           "return np.concatenate([to_host(self(self._to_device(x[s:s + batch_size])[0], True))",
           "predict runs the layers in training mode (batch norm uses the batch's statistics)",
           ("tests/test_nn.py::test_training_matches_pytorch_step_by_step",)),
    Mutant("nn-model-steps-floor", "gpuconv/nn/model.py",
           "steps = math.ceil(len(x) / batch_size)",
           "steps = max(len(x) // batch_size, 1)",
           "fit drops the last, partial batch of every epoch",
           ("tests/test_nn_maths.py::"
            "test_an_epochs_loss_and_accuracy_weigh_every_sample_once_with_a_last_smaller_batch",)),
    # --------------------------------------------------------------------------- gpuconv/nn/step.py
    Mutant("nn-step-labels-not-shuffled", "gpuconv/nn/step.py",
           "run(x[idx], y[idx], seeds[b], scalars[b], rng)",
           "run(x[idx], y[b * batch_size:(b + 1) * batch_size], seeds[b], scalars[b], rng)",
           "the epoch shuffles the images but takes the labels in their stored order",
           ("tests/test_nn_step.py::"
            "test_static_step_equals_the_eager_step_bit_for_bit[sgd-plain-float64]",)),
    Mutant("nn-step-shuffle-same-every-epoch", "gpuconv/nn/step.py",
           "rng = model.device.rng(model.seed, model.epoch)",
           "rng = model.device.rng(model.seed)",
           "every epoch shuffles in the same order (the stream ignores the epoch)",
           ("tests/test_nn_step.py::"
            "test_static_step_equals_the_eager_step_bit_for_bit[sgd-plain-float64]",)),
    Mutant("nn-step-shuffle-flag-ignored", "gpuconv/nn/step.py",
           "order = rng.permutation(len(x)) if shuffle else xp.arange(len(x))",
           "order = xp.arange(len(x))",
           "fit never shuffles, whatever shuffle says",
           ("tests/test_nn_step.py::"
            "test_static_step_equals_the_eager_step_bit_for_bit[sgd-plain-float64]",)),
    Mutant("nn-step-schedule-one-step-late", "gpuconv/nn/step.py",
           "opt.step_scalars(opt.step + b, model.dtype)",
           "opt.step_scalars(opt.step + b + 1, model.dtype)",
           "the training step takes the learning rate of the next update (the schedule runs one "
           "step ahead)",
           ("tests/test_nn_step.py::"
            "test_static_step_equals_the_eager_step_bit_for_bit[sgd-nesterov-decay-float64]",)),
    Mutant("nn-step-logged-lr-after-epoch", "gpuconv/nn/step.py",
           "return {\"loss\": mean_loss, metric: correct / seen, \"lr\": lr,",
           "return {\"loss\": mean_loss, metric: correct / seen, \"lr\": "
           "model.optimizer.learning_rate,",
           "an epoch logs the rate after its last update, not that of its first (off by one "
           "epoch)",
           ("tests/test_nn_maths.py::test_an_epochs_logged_rate_is_that_of_its_first_update",)),
    Mutant("nn-step-loss-over-full-batches", "gpuconv/nn/step.py",
           "mean_loss = loss_sum / seen",
           "mean_loss = loss_sum / ((b + 1) * batch_size)",
           "an epoch's mean loss divides by full batches, not by the samples seen",
           ("tests/test_nn_maths.py::"
            "test_an_epochs_loss_and_accuracy_weigh_every_sample_once_with_a_last_smaller_batch",)),
    Mutant("nn-step-evaluate-over-full-batches", "gpuconv/nn/step.py",
           "return {\"loss\": loss_sum / len(x), model.metric_name: correct / len(x)}",
           "return {\"loss\": loss_sum / len(x), model.metric_name: correct / (-(-len(x) // "
           "batch_size) * batch_size)}",
           "evaluate's accuracy divides by the padded count of full batches",
           ("tests/test_nn_step.py::test_totals_match_the_model_on_the_same_batches",)),
    Mutant("nn-step-evaluate-in-training-mode", "gpuconv/nn/step.py",
           "        rng = StepRandom(self.seed) if training else None\n"
           "        out = self.x\n"
           "        for layer in self.layers:\n"
           "            out = layer.forward(out, training, rng)\n",
           "        rng = StepRandom(self.seed)\n"
           "        out = self.x\n"
           "        for layer in self.layers:\n"
           "            out = layer.forward(out, True, rng)\n",
           "the evaluation step runs the layers in training mode (dropout active, batch norm on "
           "the batch's statistics and updating its running ones)",
           ("tests/test_nn_step.py::test_totals_match_the_model_on_the_same_batches",)),
    # ------------------------------------------------------------------------------ gpuconv/data.py
    Mutant("data-idx-payload-little-endian", "gpuconv/data.py",
           "stored = np.frombuffer(payload, dtype).reshape(shape)",
           "stored = np.frombuffer(payload, dtype.newbyteorder(\"=\")).reshape(shape)",
           "read_idx reads multi-byte elements in the machine's byte order, not big-endian",
           ("tests/test_data.py::test_write_then_read_keeps_every_dtype",)),
    Mutant("data-idx-trailing-bytes-accepted", "gpuconv/data.py",
           "    if size == expected:\n"
           "        return\n",
           "    if size >= expected:\n"
           "        return\n",
           "read_idx accepts bytes past the payload its header declares",
           ("tests/test_data.py::test_damaged_idx_file_is_a_value_error_naming_file_and_rule",)),
    Mutant("data-idx-ndim-from-wrong-byte", "gpuconv/data.py",
           "    code, ndim = data[2], data[3]\n",
           "    code, ndim = data[2], data[3] or 1\n",
           "an IDX header of 0 dimensions is read as 1 dimension",
           ("tests/test_data.py::test_damaged_idx_file_is_a_value_error_naming_file_and_rule",)),
    Mutant("data-label-range-off-by-one", "gpuconv/data.py",
           "out_of_range = np.flatnonzero((labels < 0) | (labels >= num_classes))",
           "out_of_range = np.flatnonzero((labels < 0) | (labels > num_classes))",
           "a label equal to the class count passes the dataset check",
           ("tests/test_data.py::test_inconsistent_dataset_is_an_error_naming_the_file",)),
    Mutant("data-float-images-scale", "gpuconv/data.py",
           "    scaled /= 255\n",
           "    scaled /= 256\n",
           "to_float_images scales by 1/256, so white is not 1.0",
           ("tests/test_data.py::test_to_float_images_adds_a_channel_and_scales_to_unit_range",)),
    Mutant("data-split-validation-not-seeded", "gpuconv/data.py",
           "held_out[np.random.default_rng(seed).permutation(len(x))[:n_val]] = True",
           "held_out[np.random.default_rng().permutation(len(x))[:n_val]] = True",
           "split_validation ignores its seed (a resumed run validates on other images)",
           ("tests/test_data.py::test_split_validation_is_deterministic_disjoint_and_ordered",)),
    Mutant("data-split-validation-labels-apart", "gpuconv/data.py",
           "return x[~held_out], y[~held_out], x[held_out], y[held_out]",
           "return x[~held_out], y[~held_out], x[held_out], np.sort(y[held_out])",
           "split_validation reorders the held-out labels apart from their images",
           ("tests/test_data.py::test_split_validation_keeps_each_label_with_its_image[60-0.5-3]",)),
    # -------------------------------------------------------------------------- gpuconv/training.py
    Mutant("training-history-check-too-lenient", "gpuconv/training.py",
           "bad = [key for key in RUN_LOGS if len(history.get(key, ())) != model.epoch",
           "bad = [key for key in RUN_LOGS if len(history.get(key, ())) < model.epoch",
           "a checkpoint's history with more entries than epochs passes the resume check",
           ("tests/test_hostile_training.py::"
            "test_a_checkpoint_whose_history_is_malformed_is_refused_before_any_write"
            "[history4-val_accuracy]",)),
    Mutant("training-resume-ignores-lr-clash", "gpuconv/training.py",
           "\"--optimizer\": options.optimizer, \"--lr\": options.lr}",
           "\"--optimizer\": options.optimizer}",
           "a resumed run accepts a --lr that contradicts the checkpoint's",
           ("tests/test_hostile_training.py::"
            "test_resume_refuses_options_that_contradict_the_checkpoint",)),
    Mutant("training-resume-from-epoch-zero", "gpuconv/training.py",
           "initial_epoch=model.epoch, verbose=0,",
           "initial_epoch=0, verbose=0,",
           "a resumed run trains again from epoch 0 instead of the checkpoint's epoch",
           ("tests/test_train_cli.py::test_resume_gives_the_same_model_as_an_uninterrupted_run",)),
    # -------------------------------------------------------------- gpuconv/backends/cupy_layers.py
    Mutant("cupy-layers-batch-norm-momentum-reversed", "gpuconv/backends/cupy_layers.py",
           "training, momentum,\n",
           "training, 1 - momentum,\n",
           "the fused batch norm gets PyTorch's momentum (weight of the batch) where the plan "
           "takes Keras' (weight of the old running value)",
           ("tests/test_cupy_layers_host.py::test_batch_norm_training_step[small-float64-]",)),
    Mutant("cupy-layers-dropout-stream-ignored", "gpuconv/backends/cupy_layers.py",
           "threshold, scale, stream)",
           "threshold, scale, 0)",
           "the fused dropout draws stream 0's mask whatever stream it is given",
           ("tests/test_cupy_layers_host.py::"
            "test_dropout_masks_are_bit_identical[3,5,7,9-0.3-float32]",)),
    Mutant("cupy-layers-batch-norm-backward-strided-grad", "gpuconv/backends/cupy_layers.py",
           "grad_out, x = xp.ascontiguousarray(grad_out), xp.ascontiguousarray(x)",
           "x = xp.ascontiguousarray(x)",
           "the fused batch norm backward indexes a strided upstream gradient as if contiguous",
           ("tests/test_cupy_layers_host.py::"
            "test_batch_norm_backward_reads_a_strided_upstream_gradient_as_its_values[float64]",)),
    Mutant("cupy-layers-sgd-nesterov-as-plain-momentum", "gpuconv/backends/cupy_layers.py",
           "p -= s[0] * (nesterov ? g + momentum * v : v);",
           "p -= s[0] * v;",
           "the fused SGD update ignores nesterov (plain momentum)",
           ("tests/test_cupy_layers_host.py::"
            "test_the_fused_sgd_update_is_the_optimisers_numpy_update[nesterov-float32]",)),
    Mutant("cupy-layers-adam-without-bias-correction", "gpuconv/backends/cupy_layers.py",
           "p -= s[1] * m / (sqrt(v) + epsilon);",
           "p -= s[0] * m / (sqrt(v) + epsilon);",
           "the fused Adam update steps by the plain learning rate, not the bias-corrected one",
           ("tests/test_cupy_layers_host.py::"
            "test_the_fused_adam_update_is_the_optimisers_numpy_update[float32]",)),
    # ------------------------------------------------------------ gpuconv/backends/numba_backend.py
    Mutant("numba-backend-scalars-packed-as-int32", "gpuconv/backends/numba_backend.py",
           "SCALAR_TYPES = {types.int64: ctypes.c_int64,",
           "SCALAR_TYPES = {types.int64: ctypes.c_int32,",
           "the direct launch packs the kernels' int64 scalars as 32-bit ints",
           ("tests/test_numba_direct_launch.py::test_direct_launch_arguments_equal_numbas_own",)),
    Mutant("numba-backend-pointer-at-itemsize", "gpuconv/backends/numba_backend.py",
           "pointer_at.append(len(arguments) + 4)",
           "pointer_at.append(len(arguments) + 3)",
           "the direct launch writes an array's address over its itemsize field (one before "
           "data)",
           ("tests/test_numba_direct_launch.py::test_direct_launch_arguments_equal_numbas_own",)),
    Mutant("numba-backend-direct-launch-in-simulator", "gpuconv/backends/numba_backend.py",
           "return not simulated and choice != \"numba\"",
           "return choice != \"numba\"",
           "the simulator is sent down the direct (cuda.core) launch it cannot run",
           ("tests/test_host_overhead.py::test_numba_launch_choice",)),
    Mutant("numba-backend-grad-weight-channels-without-groups", "gpuconv/backends/numba_backend.py",
           "out = (grad_out.shape[1], x.shape[1] // spec.groups) + tuple(kernel_hw)",
           "out = (grad_out.shape[1], x.shape[1]) + tuple(kernel_hw)",
           "the Numba grad-weight allocates C, not C/G, input channels for a grouped conv",
           ("tests/test_host_overhead.py::"
            "test_conv_backward_is_its_parts_in_one_call[numba-w-reflect-groups-s2]",)),
    # ----------------------------------------------------------------- gpuconv/backends/autotune.py
    Mutant("autotune-key-without-device", "gpuconv/backends/autotune.py",
           "return f\"{device}|{op}|{shape}|{dtype}\"",
           "return f\"{op}|{shape}|{dtype}\"",
           "the tuned tile's key leaves out the device name",
           ("tests/test_cupy_autotune.py::test_keys_separate_device_shape_and_dtype",)),
    Mutant("autotune-stale-cached-tile-kept", "gpuconv/backends/autotune.py",
           "if hit in candidates:",
           "if hit is not None:",
           "a cached tile that is no longer a candidate is used instead of tuning again",
           ("tests/test_cupy_autotune.py::test_best_tile_times_once_then_caches_on_disk",)),
    Mutant("autotune-forced-tile-not-restored", "gpuconv/backends/autotune.py",
           "        _FORCED = previous\n",
           "        _FORCED = None\n",
           "leaving a nested forced_tile block unforces the outer block's tile",
           ("tests/test_cupy_autotune.py::test_forced_tile_nests_restores_and_names_the_tiles",)),
    Mutant("autotune-slowest-tile-kept", "gpuconv/backends/autotune.py",
           "best = min(candidates, key=time_ms)",
           "best = max(candidates, key=time_ms)",
           "autotuning keeps the slowest candidate",
           ("tests/test_cupy_autotune.py::test_best_tile_times_once_then_caches_on_disk",)),
    Mutant("autotune-any-env-value-enables", "gpuconv/backends/autotune.py",
           "os.environ.get(\"GPUCONV_AUTOTUNE\", \"\") == \"1\"",
           "os.environ.get(\"GPUCONV_AUTOTUNE\", \"\") != \"\"",
           "GPUCONV_AUTOTUNE=0 turns autotuning on",
           ("tests/test_cupy_autotune.py::test_switch[None-0-False]",)),
    # -------------------------------------------------------------------------- gpuconv/parallel.py
    Mutant("parallel-pieces-drop-short-remainder", "gpuconv/parallel.py",
           "for start in range(0, n, size)]",
           "for start in range(0, n - size + 1, size)]",
           "pieces drops the shorter last piece (a remainder of range(n) is never computed)",
           ("tests/test_threads.py::test_even_pieces[130-64-44,44,42]",)),
    Mutant("parallel-pieces-overlap-by-one", "gpuconv/parallel.py",
           "slice(start, min(n, start + size))",
           "slice(start, min(n, start + size + 1))",
           "each piece overlaps the next by one item (an in-place pass updates it twice)",
           ("tests/test_threads.py::test_even_pieces[130-64-44,44,42]",)),
    Mutant("parallel-reduce-adds-in-reverse", "gpuconv/parallel.py",
           "    total = parts[0]\n"
           "    for part in parts[1:]:",
           "    total = parts[-1]\n"
           "    for part in parts[-2::-1]:",
           "reduce adds the pieces' partial sums last piece first, not in piece order",
           ("tests/test_threads.py::test_nn_layer_in_pieces[batch_norm]",
            "tests/test_threads.py::test_sums_over_pieces_add_the_partial_sums_in_piece_order[2]",)),
    Mutant("parallel-map-batch-first-piece-unstored", "gpuconv/parallel.py",
           "    store(slices[0], head)\n",
           "",
           "map_batch leaves its first piece's rows of the output unwritten (np.empty)",
           ("tests/test_threads.py::test_nn_layer_in_pieces[relu]",)),
    Mutant("parallel-piece-error-swallowed", "gpuconv/parallel.py",
           "    if job.error is not None:\n"
           "        raise job.error\n",
           "",
           "an exception in a piece run on the pool is dropped (its result stays None)",
           ("tests/test_threads.py::test_run_raises_a_piece_error_in_the_caller[0]",)),
    Mutant("parallel-even-pieces-count-rounded-down", "gpuconv/parallel.py",
           "count = max(1, -(-n // max(1, size)))",
           "count = max(1, n // max(1, size))",
           "even_pieces counts its pieces rounded down: pieces past the size asked for",
           ("tests/test_threads.py::test_even_pieces[130-64-44,44,42]",)),
    # ------------------------------------------------------------------------- gpuconv/nn/device.py
    Mutant("nn-device-asarray-keeps-strided-arrays", "gpuconv/nn/device.py",
           "return array if array.flags.c_contiguous else self.xp.ascontiguousarray(array)",
           "return array",
           "Device.asarray keeps a strided array (a Fortran-ordered member of a model file): "
           "the optimisers' flat in-place views of it are copies",
           ("tests/test_hostile_files.py::"
            "test_arrays_stored_in_another_layout_train_as_c_ordered_native_ones[fortran-order]",)),
    Mutant("nn-device-rng-keeps-first-seed-only", "gpuconv/nn/device.py",
           "np.random.SeedSequence(list(seed))",
           "np.random.SeedSequence(list(seed[:1]))",
           "a device random stream depends on the run's seed alone, not the epoch: the same "
           "draws every epoch",
           ("tests/test_nn_step.py::"
            "test_device_random_counter_seeds_are_fresh_per_call_and_set_by_the_whole_seed",)),
    Mutant("nn-device-counter-seed-constant", "gpuconv/nn/device.py",
           "seed[0] = self.integers(1 << 62, ())",
           "seed[0] = 1 << 40",
           "counter_seed's key is a constant: every step's dropout draws the same mask",
           ("tests/test_nn_step.py::"
            "test_device_random_counter_seeds_are_fresh_per_call_and_set_by_the_whole_seed",)),
]

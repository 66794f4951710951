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
    # ---------------------------------------------------------- gpuconv/backends/cupy_backend.py
    Mutant("cupy-context-without-tile-switches", "gpuconv/backends/cupy_backend.py",
           "(ex.current_device(), *autotune.switches()))", "(ex.current_device(),))",
           "CuPy's prepared-call context leaves out the tile switches: a call under a forced "
           "tile reuses the plan model's launches",
           ("tests/test_cupy_host.py::test_a_forced_tile_is_planned_anew",)),
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

    # -------------------------------------------------------------------- gpuconv/channelwise.py
    Mutant("channelwise-relu-epilogue-turns-nan-to-zero", "gpuconv/channelwise.py",
           "            np.maximum(block, np.zeros(block.shape[-1], block.dtype), out=block)",
           "            np.fmax(block, np.zeros(block.shape[-1], block.dtype), out=block)",
           "the fused conv + ReLU epilogue maps NaN to 0 (fmax) instead of keeping it",
           ("tests/test_conv_relu.py::test_conv_relu[direct-numpy-float64]",)),

    # ---------------------------------------------------------------------- kernels/cpu_numba.py
    Mutant("cpu-numba-max-pool-last-tie-wins", "kernels/cpu_numba.py",
           "        better = (v > best[q]) | (v != v)",
           "        better = (v >= best[q]) | (v != v)",
           "the compiled max pooling takes the last of tied maxima as the index, not the first",
           ("tests/test_cpu_kernels.py::test_max_pool_engines_agree_bit_for_bit_and_with_torch"
            "[2x2_disjoint-ties-float64]",)),

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

    # ---------------------------------------------------------------------- gpuconv/nn/losses.py
    Mutant("nn-softmax-without-max-shift", "gpuconv/nn/losses.py",
           "shifted = logits - logits.max(axis=-1, keepdims=True)",
           "shifted = logits",
           "log-softmax does not subtract the row maximum, so large logits overflow exp",
           ("tests/test_nn_maths.py::test_softmax_cross_entropy_is_pytorchs_mean_over_the_batch"
            "[1000.0]",)),
    # ------------------------------------------------------------------- gpuconv/nn/callbacks.py
    Mutant("nn-early-stopping-min-delta-not-strict", "gpuconv/nn/callbacks.py",
           "return current + self.min_delta < best",
           "return current + self.min_delta <= best",
           "EarlyStopping counts a loss improvement of exactly min_delta as an improvement",
           ("tests/test_keras.py::test_early_stopping_needs_an_improvement_by_more_than_min_delta"
            "[val_loss-1.0,0.5,0.25-0.5-0-2-0]",)),
]

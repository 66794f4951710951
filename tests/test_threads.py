"""The CPU thread pool (gpuconv.parallel) and the NumPy backend paths it runs: every case
against PyTorch in float64, and bit-identical float32 results at 1, 2 and 3 threads.

Tiny piece and chunk budgets make the small test arrays split into many pieces and batch
chunks, so the pool really hands pieces to other threads."""

from __future__ import annotations

import contextlib
import os
from unittest import mock

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import torch.nn.functional as TF  # noqa: E402

import gpuconv.functional as F  # noqa: E402
from gpuconv import nn, parallel  # noqa: E402
from gpuconv.backends import numpy_backend  # noqa: E402
from gpuconv.nn import Sequential  # noqa: E402

THREADS = (1, 2, 3)

# name, input shape, weight shape, keyword arguments (conv2d)
CONV_CASES = [
    ("depthwise_3x3", (3, 6, 9, 8), (6, 1, 3, 3), dict(padding=1, groups=6)),
    ("depthwise_5x5_s2_multiplier2", (2, 4, 11, 10), (8, 1, 5, 5),
     dict(stride=2, padding=2, groups=4)),
    ("depthwise_3x3_dilated", (2, 5, 10, 9), (5, 1, 3, 3), dict(padding=2, dilation=2, groups=5)),
    ("depthwise_5x5_multiplier3_unpadded", (2, 3, 9, 8), (9, 1, 5, 3), dict(groups=3)),
    ("pointwise_1x1", (3, 6, 7, 5), (10, 6, 1, 1), {}),
    ("pointwise_1x1_groups2_padded", (2, 6, 5, 6), (4, 3, 1, 1), dict(padding=1, groups=2)),
    ("conv_3x3_same", (4, 3, 9, 9), (5, 3, 3, 3), dict(padding=1)),
    ("conv_3x3_s2_dilated", (3, 4, 12, 11), (6, 4, 3, 3), dict(stride=2, padding=1, dilation=2)),
    ("conv_small_groups", (2, 8, 8, 7), (8, 2, 3, 3), dict(padding=1, groups=4)),
    # Winograd F(2x2, 3x3) (its rule lowered in _tiny_pieces), per dilation phase and group
    ("winograd_3x3_dilated_groups", (2, 32, 17, 16), (32, 16, 3, 3),
     dict(padding=2, dilation=2, groups=2)),
]
# name, input shape, weight shape (C_in, C_out/groups, kH, kW), keyword arguments
TRANSPOSE_CASES = [
    ("transpose_3x3_s2", (3, 6, 5, 6), (6, 4, 3, 3), dict(stride=2, padding=1, output_padding=1)),
    ("transpose_4x4_s2", (2, 8, 4, 5), (8, 3, 4, 4), dict(stride=2, padding=1)),
    ("transpose_1x1", (2, 5, 6, 4), (5, 7, 1, 1), {}),
    ("transpose_3x3_s2_depthwise", (2, 4, 5, 5), (4, 1, 3, 3), dict(stride=2, groups=4)),
    ("transpose_3x3_winograd", (2, 16, 9, 8), (16, 20, 3, 3), dict(padding=1)),
]
POOL_CASES = [
    ("max_2x2", "max_pool2d", dict(kernel_size=2)),
    ("max_3x3_s2_pad1", "max_pool2d", dict(kernel_size=3, stride=2, padding=1)),
    # windows that share no element (their gradients stored, not added), dilated and ceil_mode
    ("max_2x2_s3x4_dilated", "max_pool2d", dict(kernel_size=2, stride=(3, 4), dilation=(2, 3))),
    ("max_3x3_s3_pad1_ceil", "max_pool2d", dict(kernel_size=3, stride=3, padding=1,
                                                ceil_mode=True)),
    ("avg_3x3_s2_pad1", "avg_pool2d", dict(kernel_size=3, stride=2, padding=1)),
    ("avg_2x2", "avg_pool2d", dict(kernel_size=2)),
]


# im2col GEMMs per sample or batch-wide, in batch chunks of the whole batch or one sample
GEMM_LAYOUTS = {"per_sample_gemm": (0, None), "batch_gemm": (1 << 30, None),
                "per_sample_gemm_1_sample_chunks": (0, 1),
                "batch_gemm_1_sample_chunks": (1 << 30, 1)}


@contextlib.contextmanager
def _tiny_pieces(batch_gemm_pixels=numpy_backend.BATCH_GEMM_PIXELS, chunk_bytes=None):
    """One-byte piece budgets: every sample, channel, plane and Winograd tile row is a piece
    of its own, and the pool takes any piece, however small. Winograd's rule is lowered so
    that 16-channel cases take it."""
    with mock.patch.multiple(numpy_backend, FOLD_CHUNK_BYTES=1, CACHE_BLOCK_BYTES=1,
                             WINOGRAD_CHUNK_BYTES=1, WINOGRAD_MIN_MACS_PER_VALUE=4,
                             WINOGRAD_MIN_MACS_PER_VALUE_COMPILED=4, WINOGRAD_MIN_PIXELS=16,
                             BATCH_GEMM_PIXELS=batch_gemm_pixels,
                             CHUNK_BYTES=chunk_bytes or numpy_backend.CHUNK_BYTES), \
            mock.patch.multiple(parallel, MIN_PARALLEL_BYTES=0, PIECE_BYTES=1, PIECE_FLOPS=1,
                                SMALL_GEMM_FLOPS=0):
        before = parallel.num_threads()
        yield
        parallel.set_num_threads(before)


@pytest.fixture(params=list(GEMM_LAYOUTS))
def conv_pieces(request):
    """``_tiny_pieces`` with each im2col layout of ``GEMM_LAYOUTS``."""
    with _tiny_pieces(*GEMM_LAYOUTS[request.param]):
        yield


@pytest.fixture
def tiny_pieces():
    with _tiny_pieces():
        yield


def _arrays(shapes, seed, dtype):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(dtype) for s in shapes]


def _close(ours, ref, what):
    ref = ref.detach().numpy()
    assert ours.shape == ref.shape, what
    scale = max(1.0, float(np.abs(ref).max()))
    np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-10 * scale, err_msg=what)


def _conv_results(op, x, w, b, gy, kw):
    y = getattr(F, op)(x, w, b, **kw, backend="numpy")
    grads = getattr(F, f"{op}_backward")(gy, x, w, **kw, backend="numpy")
    return (y,) + tuple(grads)


def _conv_case(op, name, x_shape, w_shape, kw, threads, dtype, seed=0):
    parallel.set_num_threads(threads)
    out_channels = w_shape[0] if op == "conv2d" else w_shape[1] * kw.get("groups", 1)
    x, w, b = _arrays([x_shape, w_shape, (out_channels,)], seed, dtype)
    y = getattr(F, op)(x, w, b, **kw, backend="numpy")
    (gy,) = _arrays([y.shape], seed + 1, dtype)
    return x, w, b, gy, _conv_results(op, x, w, b, gy, kw)


def _check_against_torch(op, case):
    name, x_shape, w_shape, kw = case
    x, w, b, gy, (y, gx, gw, gb) = _conv_case(op, name, x_shape, w_shape, kw, 2, np.float64)
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    ref = getattr(TF, op)(xt, wt, bt, **kw)
    ref.backward(torch.tensor(gy))
    for ours, theirs, what in ((y, ref, "output"), (gx, xt.grad, "grad_input"),
                               (gw, wt.grad, "grad_weight"), (gb, bt.grad, "grad_bias")):
        _close(ours, theirs, f"{op} {name} {what}")


def _check_thread_counts(op, case):
    name, x_shape, w_shape, kw = case
    runs = [_conv_case(op, name, x_shape, w_shape, kw, t, np.float32)[-1] for t in THREADS]
    for threads, results in zip(THREADS[1:], runs[1:]):
        for what, ours, first in zip(("output", "grad_input", "grad_weight", "grad_bias"),
                                     results, runs[0]):
            assert np.array_equal(ours, first), f"{op} {name} {what}: {threads} threads differ"


@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: c[0])
def test_conv_matches_torch_in_pieces(conv_pieces, case):
    _check_against_torch("conv2d", case)


@pytest.mark.parametrize("case", TRANSPOSE_CASES, ids=lambda c: c[0])
def test_conv_transpose_matches_torch_in_pieces(conv_pieces, case):
    _check_against_torch("conv_transpose2d", case)


@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: c[0])
def test_conv_is_bit_identical_at_any_thread_count(conv_pieces, case):
    _check_thread_counts("conv2d", case)


@pytest.mark.parametrize("case", TRANSPOSE_CASES, ids=lambda c: c[0])
def test_conv_transpose_is_bit_identical_at_any_thread_count(conv_pieces, case):
    _check_thread_counts("conv_transpose2d", case)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("kw", [dict(padding=1), dict(stride=2, padding=(2, 1), dilation=2)],
                         ids=["padded", "strided_dilated"])
def test_depthwise_blocks_of_several_channels_and_a_shorter_last_one(threads, kw):
    """Each thread's depthwise buffers serve blocks of several channels and then a shorter
    last one, sample after sample (padded: 4 + 3 channels in the forward and the gather of
    grad-input, 6 + 1 in grad-weight): a block must not read what the thread's previous one
    left."""
    x, w, b = _arrays([(3, 7, 9, 8), (7, 1, 3, 3), (7,)], 2, np.float64)
    forward_channel = (3 * 3 + 1) * (9 + 2) * (8 + 2) * 8  # (taps + m) * padded plane * 8
    before = parallel.num_threads()
    parallel.set_num_threads(threads)
    try:
        with mock.patch.object(numpy_backend, "CACHE_BLOCK_BYTES", 4 * forward_channel):
            y = F.conv2d(x, w, b, groups=7, **kw, backend="numpy")
            (gy,) = _arrays([y.shape], 3, np.float64)
            gx, gw, gb = F.conv2d_backward(gy, x, w, groups=7, **kw, backend="numpy")
    finally:
        parallel.set_num_threads(before)
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    ref = TF.conv2d(xt, wt, bt, groups=7, **kw)
    ref.backward(torch.tensor(gy))
    for ours, theirs, what in ((y, ref, "output"), (gx, xt.grad, "grad_input"),
                               (gw, wt.grad, "grad_weight"), (gb, bt.grad, "grad_bias")):
        _close(ours, theirs, f"depthwise in uneven blocks: {what}")


@pytest.mark.parametrize("padding", [0, 1])
def test_depthwise_conv_of_a_strided_input(tiny_pieces, padding):
    """An input whose rows are not one run in memory (columns 2-7 of a wider one):
    stride-1 depthwise windows read as runs of a plane must not apply to it unpadded."""
    parallel.set_num_threads(2)
    wide, w = _arrays([(2, 3, 7, 12), (6, 1, 3, 2)], 0, np.float64)
    x = wide[:, :, :, 2:8]
    ours = F.conv2d(x, w, None, padding=padding, groups=3, backend="numpy")
    _close(ours, TF.conv2d(torch.tensor(x), torch.tensor(w), padding=padding, groups=3),
           "depthwise conv of a strided input")


def _pool_results(op, x, gy_seed, kw):
    if op == "max_pool2d":
        y, index = F.max_pool2d(x, **kw, return_indices=True, backend="numpy")
        (gy,) = _arrays([y.shape], gy_seed, x.dtype)
        return y, index, F.max_pool2d_backward(gy, x, index, **kw, backend="numpy")
    y = F.avg_pool2d(x, **kw, backend="numpy")
    (gy,) = _arrays([y.shape], gy_seed, x.dtype)
    return y, F.avg_pool2d_backward(gy, x, **kw, backend="numpy")


@pytest.mark.parametrize("case", POOL_CASES, ids=lambda c: c[0])
@pytest.mark.parametrize("threads", THREADS)
def test_pooling_in_pieces(tiny_pieces, case, threads):
    """Against torch in float64, and float32 results equal to one thread's."""
    name, op, kw = case
    results = {}
    for t in (1, threads):
        parallel.set_num_threads(t)
        (x,) = _arrays([(3, 4, 9, 8)], 0, np.float32)
        results[t] = _pool_results(op, x, 1, kw)
    for ours, first in zip(results[threads], results[1]):
        assert np.array_equal(ours, first), f"{name}: {threads} threads differ"
    (x,) = _arrays([(3, 4, 9, 8)], 0, np.float64)
    ours = _pool_results(op, x, 1, kw)
    xt = torch.tensor(x, requires_grad=True)
    ref = getattr(TF, op)(xt, **kw, **({"return_indices": True} if op == "max_pool2d" else {}))
    if op == "max_pool2d":
        ref, ref_index = ref
        assert np.array_equal(ours[1], ref_index.numpy()), name
    ref.backward(torch.tensor(_arrays([ref.shape], 1, np.float64)[0]))
    _close(ours[0], ref, f"{name} output")
    _close(ours[-1], xt.grad, f"{name} grad_input")


# --------------------------------------------------------------------------- the pool itself
def test_run_keeps_piece_order_and_runs_nested_calls_inline(tiny_pieces):
    parallel.set_num_threads(3)
    assert parallel.run(lambda i: i * i, range(10)) == [i * i for i in range(10)]
    nested = parallel.run(lambda i: parallel.run(lambda j: (i, j), range(3)), range(4))
    assert nested == [[(i, j) for j in range(3)] for i in range(4)]
    assert parallel.reduce(lambda i: np.float32(0.1) * i, range(7)) == \
        sum((np.float32(0.1) * i for i in range(1, 7)), np.float32(0.0))
    assert parallel.pieces(7, 3) == [slice(0, 3), slice(3, 6), slice(6, 7)]


@pytest.mark.parametrize("threads", [1, 2])
def test_sums_over_pieces_add_the_partial_sums_in_piece_order(tiny_pieces, threads):
    """reduce and sum_batch add their pieces' partial sums first piece first, whichever thread
    ran which piece: float32 partial sums of very different magnitudes, whose total depends
    on the order they are added in, equal the piece-order sum bit for bit."""
    parallel.set_num_threads(threads)
    rng = np.random.default_rng(45)
    parts = [(rng.standard_normal(32) * 10.0 ** rng.integers(-3, 6)).astype(np.float32)
             for _ in range(9)]
    want = parts[0]
    for part in parts[1:]:
        want = want + part
    got = parallel.reduce(lambda i: parts[i], range(len(parts)))
    assert np.array_equal(got, want), np.flatnonzero(got != want)
    x = (rng.standard_normal((9, 32)) * 10.0 ** rng.integers(-3, 6, (9, 1))).astype(np.float32)
    slices = parallel.pieces_by_bytes(len(x), x[0].nbytes)
    assert len(slices) > 2, slices
    want = x[slices[0]].sum(axis=0)
    for s in slices[1:]:
        want = want + x[s].sum(axis=0)
    got = parallel.sum_batch(lambda a: a.sum(axis=0), x)
    assert np.array_equal(got, want), np.flatnonzero(got != want)


def test_switching_thread_counts_keeps_the_pool(tiny_pieces):
    """The pool only grows: going down to one thread and back (the thread-scaling bench does
    it call by call) starts no new threads; more threads than it has gives a larger one."""
    import threading

    def helpers():
        return {t for t in threading.enumerate() if t.name.startswith("gpuconv")}
    parallel.set_num_threads(2)
    assert parallel.run(lambda i: i + 1, range(8)) == list(range(1, 9))
    pool, threads = parallel._pool(), helpers()
    for count in (1, 2, 1, 2):
        parallel.set_num_threads(count)
        assert parallel.run(lambda i: i + 1, range(8)) == list(range(1, 9))
    assert parallel._pool() is pool and helpers() == threads
    parallel.set_num_threads(parallel._state["pool_workers"] + 2)  # more than it holds
    assert parallel._pool() is not pool
    assert parallel.run(lambda i: i + 1, range(8)) == list(range(1, 9))


@contextlib.contextmanager
def _fresh_pool(spin_us: str):
    """A pool made for this block under ``GPUCONV_SPIN_US=spin_us``; the one before is put
    back after it (this one's threads end)."""
    saved = dict(parallel._state)
    parallel._state.update(pool=None, pool_workers=0)
    try:
        with mock.patch.dict(os.environ, {parallel.SPIN_ENV_VAR: spin_us}):
            yield
    finally:
        if parallel._state["pool"] is not None:
            parallel._state["pool"].retire()
        parallel._state.update(saved)


@pytest.mark.parametrize("spin_us", ["0", "200", "100000"])
def test_pool_gives_the_same_results_polling_or_asleep(tiny_pieces, spin_us):
    """Helpers that poll for their next job (or sleep at once, "0") run every piece once, in
    order, over many jobs back to back and jobs of a single piece."""
    parallel.set_num_threads(2)
    with _fresh_pool(spin_us):
        for n in (2, 3, 17, 1):
            for _ in range(50):
                assert parallel.run(lambda i: i * i, range(n)) == [i * i for i in range(n)]
        polls = parallel._pool().polls
    if spin_us == "0" or parallel._waits() is None or parallel._cores() < 2:
        assert polls == 0
    else:
        assert polls > 0


@pytest.mark.parametrize("spin_us", ["0", "200"])
def test_pool_lets_go_of_a_finished_job(tiny_pieces, spin_us):
    """A helper drops its job once done: held until the next one, it would keep the call's
    arrays alive (and the next call's arrays out of the caches)."""
    import time
    import weakref

    class Payload:
        pass
    parallel.set_num_threads(2)
    with _fresh_pool(spin_us):
        payload = Payload()
        held = weakref.ref(payload)
        assert parallel.run(lambda i, p=payload: i, range(8)) == list(range(8))
        del payload
        deadline = time.monotonic() + 2.0
        while held() is not None and time.monotonic() < deadline:
            time.sleep(0.001)
        assert held() is None, "the pool still holds a finished job"


def test_pool_does_not_poll_with_more_threads_than_cores():
    assert parallel._spin_polls(parallel._cores() + 1) == 0
    with mock.patch.dict(os.environ, {parallel.SPIN_ENV_VAR: "0"}):
        assert parallel._spin_polls(1) == 0


def test_compiled_waits_see_another_threads_store():
    """The polls read memory each time (a load hoisted out of the loop would never see the
    store and run out of polls) and run without the GIL (the storing thread needs it)."""
    import threading
    import time
    waits = pytest.importorskip("gpuconv._wait")
    polls = int(5e6 * waits.polls_per_microsecond())  # about 5 s

    def store_later(word, value):
        time.sleep(0.01)
        word[0] = value
    word, other = np.zeros(1, np.int64), np.zeros(1, np.int64)
    thread = threading.Thread(target=store_later, args=(word, 7))
    start = time.perf_counter()
    thread.start()
    assert waits.wait_while_equal(word, 0, polls) == 7
    word[0] = 1
    thread = threading.Thread(target=store_later, args=(word, 0))
    thread.start()
    assert waits.wait_until_zero(word, other, polls)
    assert time.perf_counter() - start < 2.0
    thread.join()
    assert waits.wait_while_equal(word, 0, 100) == 0  # ran out: the value it waited on
    other[0] = 1
    assert not waits.wait_until_zero(word, other, 100)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork here")
def test_forked_child_starts_its_own_pool(tiny_pieces):
    parallel.set_num_threads(2)
    assert parallel.run(lambda i: i, range(4)) == [0, 1, 2, 3]  # the parent has a pool
    pid = os.fork()
    if pid == 0:  # the child: exits 0 if it has no pool of the parent's and can make its own
        ok = parallel._state["pool"] is None and parallel.run(lambda i: i, range(4)) == [0, 1, 2, 3]
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert parallel._state["pool"] is not None


# a, b shapes: rows split, columns split, a stack, a broadcast stack, a stack of one
MATMUL_CASES = [((70, 9), (9, 5)), ((3, 9), (9, 70)), ((4, 2, 5, 6), (4, 2, 6, 3)),
                ((5, 6), (3, 6, 4)), ((1, 7, 8), (8, 9)), ((6,), (6, 4))]


@pytest.mark.parametrize("small_stack", [False, True], ids=["split", "small_stack_whole"])
@pytest.mark.parametrize("shapes", MATMUL_CASES, ids=str)
def test_matmul_in_pieces(tiny_pieces, shapes, small_stack):
    """Against NumPy in float64 (into ``out`` too), float32 equal at 1, 2 and 3 threads;
    split to single products and rows / columns, or a stack of small products whole."""
    if small_stack:
        parallel.SMALL_GEMM_FLOPS = 1 << 30  # undone by tiny_pieces
    a, b = _arrays(shapes, 4, np.float64)
    want = np.matmul(a, b)
    np.testing.assert_allclose(parallel.matmul(a, b), want, rtol=1e-12, atol=1e-12)
    out = np.full(want.shape, np.nan)
    assert parallel.matmul(a, b, out=out) is out
    np.testing.assert_allclose(out, want, rtol=1e-12, atol=1e-12)
    a, b = a.astype(np.float32), b.astype(np.float32)
    runs = []
    for threads in THREADS:
        parallel.set_num_threads(threads)
        runs.append(parallel.matmul(a, b))
    assert all(np.array_equal(run, runs[0]) for run in runs[1:])


@pytest.mark.parametrize("inside_piece", [False, True], ids=["called", "inside_a_piece"])
@pytest.mark.parametrize("small_stack", [False, True], ids=["split", "small_stack_whole"])
@pytest.mark.parametrize("shapes", MATMUL_CASES[:-1], ids=str)
def test_matmul_epilogue(tiny_pieces, shapes, small_stack, inside_piece):
    """The epilogue finishes every block of the result once, where matmul split it (rows,
    columns, products) or ran it whole (a stack of small products, a call inside a piece):
    here it adds a value per row of each product."""
    if small_stack:
        parallel.SMALL_GEMM_FLOPS = 1 << 30  # undone by tiny_pieces
    a, b = _arrays(shapes, 5, np.float64)
    want = np.matmul(a, b)
    offsets = np.random.default_rng(6).standard_normal(want.shape[:-1] + (1,))
    want += offsets

    def epilogue(block, at, rows):
        block += offsets[..., rows, :] if block.ndim > 2 else offsets[at][rows]
    parallel.set_num_threads(2)
    if inside_piece:
        got = parallel.run(lambda _: parallel.matmul(a, b, epilogue=epilogue), range(2))[0]
    else:
        got = parallel.matmul(a, b, epilogue=epilogue)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n, size, lengths", [
    (3136, 1920, [1600, 1536]),   # two even pieces of whole 64-row tiles, not 1920 + 1216
    (128, 80, [64, 64]),
    (100, 30, [25, 25, 25, 25]),  # under a tile: equal lengths
    (7, 100, [7]),
    (130, 64, [44, 44, 42]),      # pieces under a tile long stay even
    (0, 10, []),
])
def test_even_pieces(n, size, lengths):
    got = parallel.even_pieces(n, size, parallel.SIMD_ROWS)
    assert [s.stop - s.start for s in got] == lengths
    assert [s.start for s in got] == [sum(lengths[:i]) for i in range(len(lengths))]


def test_blas_is_held_at_one_thread_while_gpuconv_multiplies():
    """Nested holds keep one thread; the count comes back after the last (where NumPy's
    OpenBLAS can be asked)."""
    from gpuconv._blas import blas_threads, set_blas_threads
    if blas_threads() is None:
        pytest.skip("NumPy's BLAS cannot be asked for its thread count")
    before = blas_threads()
    set_blas_threads(2)
    try:
        with parallel.blas_at_one_thread():
            with parallel.blas_at_one_thread():
                assert blas_threads() == 1
            assert blas_threads() == 1
        assert blas_threads() == 2
    finally:
        set_blas_threads(before)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2", parallel.MAX_THREADS + 1, 10**30])
def test_set_num_threads_rejects_bad_counts(bad):
    """A count past MAX_THREADS started that many threads (or failed to) and hung."""
    with pytest.raises(ValueError, match="threads must be an integer from 1 to 1024"):
        parallel.set_num_threads(bad)


# (variable, its reader, value, what it gives: a number, None for the default, or ValueError)
ENV_CASES = [
    (parallel.ENV_VAR, "_threads_from_env", "3", 3),
    (parallel.ENV_VAR, "_threads_from_env", "1", 1),
    (parallel.ENV_VAR, "_threads_from_env", "", None),
    (parallel.ENV_VAR, "_threads_from_env", "zero", ValueError),
    (parallel.ENV_VAR, "_threads_from_env", "0", ValueError),
    (parallel.ENV_VAR, "_threads_from_env", "1025", ValueError),
    (parallel.ENV_VAR, "_threads_from_env", "99999999999999999999999", ValueError),
    (parallel.SPIN_ENV_VAR, "_spin_from_env", "50", 50),
    (parallel.SPIN_ENV_VAR, "_spin_from_env", "0", 0),
    (parallel.SPIN_ENV_VAR, "_spin_from_env", " ", None),
    (parallel.SPIN_ENV_VAR, "_spin_from_env", "-1", ValueError),
    (parallel.SPIN_ENV_VAR, "_spin_from_env", "fast", ValueError),
    (parallel.SPIN_ENV_VAR, "_spin_from_env", "99999999999999999999999", ValueError),
]
DEFAULTS = {"_threads_from_env": parallel._cores,
            "_spin_from_env": lambda: parallel.DEFAULT_SPIN_US}


@pytest.mark.parametrize("variable, reader, value, expected", ENV_CASES,
                         ids=lambda v: str(v) if not isinstance(v, type) else v.__name__)
def test_pool_settings_from_environment(variable, reader, value, expected):
    with mock.patch.dict(os.environ, {variable: value}):
        if expected is ValueError:
            with pytest.raises(ValueError, match=variable):
                getattr(parallel, reader)()
        else:
            want = DEFAULTS[reader]() if expected is None else expected
            assert getattr(parallel, reader)() == want


@pytest.mark.parametrize("spin_us", ["0", "200"])
def test_run_raises_a_piece_error_in_the_caller(tiny_pieces, spin_us):
    parallel.set_num_threads(2)

    def piece(i):
        if i == 5:
            raise ArithmeticError("piece 5")
        return i
    with _fresh_pool(spin_us):
        with pytest.raises(ArithmeticError, match="piece 5"):
            parallel.run(piece, range(8))
        assert parallel.run(piece, range(5)) == list(range(5))  # the pool still works


# --------------------------------------------------------------------------- nn layers on the pool
NN_CASES = [
    ("batch_norm", lambda: nn.BatchNorm2D(momentum=0.9, epsilon=1e-5),
     lambda: torch.nn.BatchNorm2d(4, eps=1e-5, momentum=0.1)),
    ("relu", lambda: nn.ReLU(), lambda: torch.nn.ReLU()),
    ("elu", lambda: nn.ELU(0.7), lambda: torch.nn.ELU(0.7)),
]


def _nn_run(make, dtype, threads):
    parallel.set_num_threads(threads)
    layer = make()
    Sequential([layer]).build((4, 6, 5), "cpu", 0, np.dtype(dtype).name)
    layer.need_input_grad = True
    x, gy = _arrays([(5, 4, 6, 5)] * 2, 3, dtype)
    x += 2.0  # a batch mean well away from zero
    y = layer.forward(x, training=True)
    return x, gy, y, layer.backward(gy), {k: v.copy() for k, v in layer.grads.items()}


@pytest.mark.parametrize("case", NN_CASES, ids=lambda c: c[0])
def test_nn_layer_in_pieces(tiny_pieces, case):
    """Training forward and backward in one-sample pieces: against torch in float64, and
    float32 results equal at 1, 2 and 3 threads."""
    name, make, make_torch = case
    first = _nn_run(make, np.float32, 1)
    for threads in THREADS[1:]:
        got = _nn_run(make, np.float32, threads)
        for ours, want in zip(got[2:4], first[2:4]):
            assert np.array_equal(ours, want), f"{name}: {threads} threads differ"
        for key in first[4]:
            assert np.array_equal(got[4][key], first[4][key]), f"{name} {key}: {threads} threads"
    x, gy, y, gx, grads = _nn_run(make, np.float64, 2)
    module = make_torch().double().train()
    xt = torch.tensor(x, requires_grad=True)
    ref = module(xt)
    ref.backward(torch.tensor(gy))
    _close(y, ref, f"{name} output")
    _close(gx, xt.grad, f"{name} grad_input")
    if name == "batch_norm":
        _close(grads["gamma"], module.weight.grad, "batch_norm grad gamma")
        _close(grads["beta"], module.bias.grad, "batch_norm grad beta")


def _fused_run(layers, threads):
    parallel.set_num_threads(threads)
    model = Sequential(layers).build((4, 6, 5), "cpu", 0)
    for layer in model.layers:
        layer.need_input_grad = True
    x, gy = _arrays([(5, 4, 6, 5)] * 2, 3, np.float32)
    out, grad = x, gy
    for layer in model.layers:
        out = layer.forward(out, training=True)
    for layer in reversed(model.layers):
        grad = layer.backward(grad)
    bn = model.layers[0]
    return [out, grad, bn.grads["gamma"], bn.grads["beta"]]


def test_batch_norm_runs_the_relu_after_it_on_the_cpu(tiny_pieces):
    """BatchNorm2D + ReLU as one layer's passes: bit for bit the two layers' numbers (a
    rate-0 Dropout in between keeps them apart), at 1, 2 and 3 threads."""
    fused = nn.BatchNorm2D(), nn.ReLU()
    got = [_fused_run(list(fused), threads) for threads in THREADS]
    assert fused[0].relu and fused[1].in_epilogue
    apart = [nn.BatchNorm2D(), nn.Dropout(0.0), nn.ReLU()]
    want = _fused_run(apart, 1)
    assert not apart[0].relu and not apart[2].in_epilogue
    for run in got:
        for ours, theirs in zip(run, want):
            assert np.array_equal(ours, theirs)


def _trained_weights(blas_threads, pool_threads):
    """A dense model trained a few steps with NumPy's BLAS and the pool at these counts
    (32x800 by 800x500 products: large enough for OpenBLAS to split over its threads)."""
    from gpuconv._blas import set_blas_threads
    set_blas_threads(blas_threads)
    parallel.set_num_threads(pool_threads)
    model = Sequential([nn.Flatten(), nn.Dense(500), nn.ReLU(), nn.Dense(10)])
    model.build((1, 20, 40), "cpu", 0, "float64")
    model.compile("adam")
    x, = _arrays([(64, 1, 20, 40)], 5, np.float64)
    model.fit(x, np.arange(64) % 10, epochs=1, batch_size=32, verbose=0)
    return model.get_weights()


def test_training_is_bit_identical_under_any_blas_and_pool_thread_count():
    from gpuconv._blas import blas_threads, set_blas_threads
    if blas_threads() is None:
        pytest.skip("NumPy's BLAS cannot be told its thread count")
    before, pool_before = blas_threads(), parallel.num_threads()
    try:
        runs = [_trained_weights(b, p) for b, p in ((1, 1), (2, 2), (2, 3))]
    finally:
        set_blas_threads(before)
        parallel.set_num_threads(pool_before)
    for run in runs[1:]:
        assert all(np.array_equal(ours, first) for ours, first in zip(run, runs[0]))

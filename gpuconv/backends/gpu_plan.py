"""Launch planning for both GPU backends, in pure Python (no CuPy, no Numba, no driver).

One place says what is launched:

- ``kernel_names()``: every kernel the CuPy backend compiles, as NVRTC name expressions (the
  source and its compile options live in ``cuda_source``).
- ``CONV_PARAMS`` / ``POOL_PARAMS`` / ``LAYER_PARAMS``: NumPy structured dtypes laid out as
  the ``ConvParams`` / ``PoolParams`` / ``LayerParams`` structs of common.cuh and layers.cu
  (every field 8 bytes, so no padding); a launch passes one of them by value (CuPy passes a
  size-1 NumPy array by value).
- ``*_plan`` functions: a ``Plan`` (launches with grid, block and struct fields, and the
  workspaces they need) from shapes, strides and specs. Pointer fields name buffers (``"x"``,
  ``"out"``, a workspace) that the executor resolves.
- ``numba_*_plan`` functions: the same plans for the Numba twins (their own conv tiles,
  ``NUMBA_TILES_FOR``, contiguous arrays); ``scalar_slots`` / ``scalars`` pack a struct's
  fields as the twins take them (device arrays, then one tuple of scalars).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np

from gpuconv.backends import PRECISIONS
from gpuconv.shapes import ConvSpec, PoolSpec

CTYPES = {"float32": "float", "float64": "double"}
PAD_MODES = {"zeros": 0, "reflect": 1, "replicate": 2, "circular": 3}
POOL_BLOCK = 256          # threads of every elementwise / gather kernel
MAX_GRID_Z = 65535
# CUDA's launch limits (every compute capability since 3.0): grid and block extents per axis,
# threads per block; every Launch is checked against them when it is made
MAX_GRID = (2**31 - 1, MAX_GRID_Z, MAX_GRID_Z)
MAX_BLOCK = (1024, 1024, 64)
MAX_BLOCK_THREADS = 1024
MAX_SPLITS = 4096         # split-K
SPLIT_WORKSPACE_BYTES = 256 << 20
DEFAULT_SM_COUNT = 132    # H100 SXM; the runtime passes the device's own count
LAYER_KERNELS = ("batch_norm2d_forward", "batch_norm2d_backward", "softmax_cross_entropy",
                 "relu_backward", "dropout")
LAYER_BLOCK = 256         # layers.cu's LAYER_BLOCK


# --------------------------------------------------------------------------- tiles
@dataclass(frozen=True)
class TileConfig:
    """An implicit-GEMM block tile of conv.cu: BM rows x BN columns, BK of the reduction per
    pipeline stage. CUDA cores (``terms`` 0): TM x TN outputs per thread, warps of 4 x 8 lanes.
    Tensor cores (``terms`` 1: TF32, 3: 3xTF32): warps of ``warp_m`` x ``warp_n`` outputs,
    BK 16; ``wgmma`` (TF32, sm_90a): warpgroups of 64 rows x all BN columns."""

    name: str
    bm: int
    bn: int
    bk: int = 8
    tm: int = 0
    tn: int = 0
    terms: int = 0
    direct: bool = False  # conv_direct: DIRECT_PIXELS columns a thread, all BM (<= 4) rows
    wgmma: bool = False   # conv_gemm_wgmma (its own sm_90a module: wgmma_kernel_names)

    @property
    def warp_m(self) -> int:
        """conv.cu's mma_warp_m: 32, or 64 for tiles past 8 warps of 32 x 64 (128 x 256)."""
        return 64 if (self.bm // 32) * (self.bn // 64) > 8 else 32

    @property
    def warp_n(self) -> int:
        """conv.cu's mma_warp_n: a tensor-core warp's columns, 64 where that still gives 4 warps."""
        return 64 if (self.bm // 32) * (self.bn // 64) >= 4 else 32

    @property
    def threads(self) -> int:
        if self.direct:
            return 256
        if self.wgmma:
            return self.bm // 64 * 128
        if self.terms:
            return (self.bm // self.warp_m) * (self.bn // self.warp_n) * 32
        return (self.bm // (4 * self.tm)) * (self.bn // (8 * self.tn)) * 32

    def blocks_per_sm(self, itemsize: int) -> int:
        """The resident blocks an SM its launch bounds ask for (conv.cu's mma_blocks_per_sm):
        THREADS_PER_SM threads (at most 128 registers each), but one block of 64 x 64 warps
        or of 256-column wgmma warpgroups, and conv_direct's own (DIRECT_BLOCKS_PER_SM)."""
        if self.direct:
            return DIRECT_BLOCKS_PER_SM[itemsize]
        if self.wgmma:  # 128 columns' accumulators fit 128 registers; 256 take one block an SM
            return 1 if self.bn > 128 else THREADS_PER_SM // self.threads
        return 1 if self.terms and self.warp_m == 64 else THREADS_PER_SM // self.threads

    def stage_bytes(self, itemsize: int) -> int:
        """One pipeline stage of the A and B tiles: k-major rows padded by 4 (CUDA cores), or
        rows of 16 unpadded reduction columns (tensor cores); conv.cu's KMajor, KInner, KPairs
        and CoreK; and B's small parts for 3xTF32 on wgmma."""
        pad = 0 if self.terms else 4
        b_tiles = 2 if self.wgmma and self.terms == 3 else 1
        return self.bk * ((self.bm + pad) + b_tiles * (self.bn + pad)) * itemsize

    @property
    def stages(self) -> int:
        """conv.cu's pipeline depth: STAGES, WGMMA_STAGES for the TF32 wgmma tiles."""
        return WGMMA_STAGES if self.wgmma and self.terms == 1 else PIPELINE_STAGES

    def smem_bytes(self, itemsize: int) -> int:
        """The launch's dynamic shared memory: conv.cu's pipeline stages of the A and B tiles
        (none for conv_direct)."""
        return 0 if self.direct else self.stages * self.stage_bytes(itemsize)

    def kernel(self, ctype: str, wgrad: bool, zero_pad: bool = True, index64: bool = False,
               vec_a: bool = False) -> str:
        """The kernel's name expression; ``vec_a`` (tensor-core tiles only): A copied 16 bytes
        at a time (``a_runs``)."""
        flags = f"{str(zero_pad).lower()}, {'long long' if index64 else 'int'}"
        if self.direct:
            return f"conv_direct<{ctype}, {self.bm}>"
        if self.wgmma:
            return (f"conv_gemm_wgmma<{self.terms}, {self.bm}, {self.bn}, {str(wgrad).lower()}, "
                    f"{str(vec_a).lower()}, {flags}>")
        if self.terms:
            return (f"conv_gemm_mma<{self.terms}, {self.bm}, {self.bn}, {str(wgrad).lower()}, "
                    f"{str(vec_a).lower()}, {flags}>")
        return (f"conv_gemm<{ctype}, {self.bm}, {self.bn}, {self.bk}, {self.tm}, {self.tn}, "
                f"{str(wgrad).lower()}, {flags}>")


DIRECT_PIXELS = 4  # conv.cu's: columns (pixels) a conv_direct thread owns
DIRECT_BLOCKS_PER_SM = {4: 3, 8: 2}  # conv_direct's launch bounds, by itemsize (float, double)
THREADS_PER_SM = 512  # __launch_bounds__(threads, 512 / threads): at most 128 registers
PIPELINE_STAGES = 3   # conv.cu's STAGES
WGMMA_STAGES = 4      # conv.cu's WGMMA_STAGES
TILES = {t.name: t for t in (
    TileConfig("128x128", 128, 128, 16, tm=8, tn=8),
    TileConfig("128x128x32", 128, 128, 32, tm=8, tn=8),
    TileConfig("64x128", 64, 128, 16, tm=8, tn=8),
    TileConfig("64x64", 64, 64, 16, tm=8, tn=8),
    TileConfig("32x64", 32, 64, tm=4, tn=4),
    TileConfig("64x64d", 64, 64, tm=8, tn=4),  # float64: 8 x 8 doubles would not fit in registers
    TileConfig("32x32", 32, 32, tm=4, tn=4),
    *(TileConfig(f"direct{rows}", rows, 256 * DIRECT_PIXELS, 1, direct=True)
      for rows in (1, 2, 3, 4)),
    TileConfig("tf32-128x256", 128, 256, 16, terms=1),
    TileConfig("tf32-128x128", 128, 128, 16, terms=1),
    TileConfig("tf32-64x128", 64, 128, 16, terms=1),
    TileConfig("tf32-64x64", 64, 64, 16, terms=1),
    TileConfig("tf32-32x128", 32, 128, 16, terms=1),
    TileConfig("tf32-64x32", 64, 32, 16, terms=1),
    TileConfig("wgmma-128x128", 128, 128, 16, terms=1, wgmma=True),
    TileConfig("wgmma-128x256", 128, 256, 16, terms=1, wgmma=True),
    TileConfig("tf32x3-128x256", 128, 256, 16, terms=3),
    TileConfig("tf32x3-128x128", 128, 128, 16, terms=3),
    TileConfig("tf32x3-64x128", 64, 128, 16, terms=3),
    TileConfig("tf32x3-64x64", 64, 64, 16, terms=3),
    TileConfig("tf32x3-32x128", 32, 128, 16, terms=3),
    TileConfig("tf32x3-64x32", 64, 32, 16, terms=3),
    TileConfig("wgmma-tf32x3-128x128", 128, 128, 16, terms=3, wgmma=True),
    TileConfig("wgmma-tf32x3-128x256", 128, 256, 16, terms=3, wgmma=True),
)}
# (dtype, precision) -> candidate tiles, the last the generic one: it alone is also built for
# reflect / replicate / circular padding and for 64-bit offsets (tensors past 2^31 elements).
# Tensor-core precisions take the "ieee" tiles there: FP32 products are at least as accurate.
TILES_FOR = {
    ("float32", "ieee"): ("128x128", "128x128x32", "64x128", "32x64", "32x32", "64x64"),
    ("float32", "tf32"): ("tf32-128x256", "tf32-128x128", "wgmma-128x256", "wgmma-128x128",
                           "tf32-64x128", "tf32-32x128", "tf32-64x32", "tf32-64x64"),
    ("float32", "tf32x3"): ("tf32x3-128x256", "tf32x3-128x128", "wgmma-tf32x3-128x256",
                             "wgmma-tf32x3-128x128", "tf32x3-64x128", "tf32x3-32x128",
                             "tf32x3-64x32", "tf32x3-64x64"),
    ("float64", "ieee"): ("32x64", "64x64d"),
}
# Relative FFMA (or MMA) issue efficiency of a tile's main loop: larger tiles amortise their
# loads over more products (from the sm_90 SASS hot loops, tests/test_cupy_compile.py; for
# conv_direct its segment layout's window loop, 3.0 to 1.6 instructions a multiply-add for 1
# to 4 rows against the 128x128 tile's 1.21, less its refill at each kernel row). The 128x256
# tensor-core tiles issue 0.68 of the 128x128 tiles' instructions an MMA (1.48x; 3xTF32 0.73),
# taken as 1.15x: one block of 8 warps an SM, not two, hides less latency (to be measured:
# gpuconv bench --tiles). The 64x32 tiles (two 32 x 32 warps: for grad-weights of few tap
# columns, the stem's 147) issue 10.4 instructions an MMA against 64x64's 9.9 (3xTF32 6.5, 6.3).
# 128x128x32 (k-tiles of 32: its loop's fixed costs over twice the FFMA) issues 1.175
# instructions an FFMA against 128x128's 1.212 (forward), but its 101 KiB of stages (two blocks
# an SM still) leave L1 about 26 KiB for the gathers' reuse across taps, against 128x128's
# 127: rated just under 128x128, so the plans keep the tile already measured until the tile
# sweep (gpuconv bench --tiles) says which is faster.
TILE_EFFICIENCY = {"128x128": 1.0, "128x128x32": 0.99, "64x128": 0.94, "64x64": 0.9, "32x64": 0.6,
                   "32x32": 0.58, "64x64d": 0.8, "direct1": 0.38, "direct2": 0.55, "direct3": 0.6, "direct4": 0.7,
                   "tf32-128x256": 1.15, "tf32x3-128x256": 1.15,
                   "tf32-128x128": 1.0, "tf32-64x128": 0.7, "tf32-64x64": 0.55, "tf32-32x128": 0.4,
                   "tf32-64x32": 0.52, "tf32x3-128x128": 1.0, "tf32x3-64x128": 0.85,
                   "tf32x3-64x64": 0.65, "tf32x3-32x128": 0.55, "tf32x3-64x32": 0.62,
                   "wgmma-128x128": 1.3, "wgmma-128x256": 1.5, "wgmma-tf32x3-128x128": 1.3,
                   "wgmma-tf32x3-128x256": 1.5}
# Tiles no GPU run has checked or timed yet: the plans and autotuning leave them out, and only
# a forced tile (the bench's tile sweep, which checks each result before timing it) runs one.
# wgmma-128x128 issues as many instructions a multiply-add as tf32-128x128 (164 a step for two
# 64x128x8 wgmmas a warpgroup; 178 for 32 mma.sync a warp), but wgmma has the tensor cores'
# full rate where mma.sync may reach part of it: rated 1.3 until measured; wgmma-128x256 0.70
# of its instructions a multiply-add (228 a step for four), one block an SM: 1.5.
# wgmma-tf32x3-128x128 (A from registers, B's small parts in shared memory): 269 instructions
# a step for six wgmmas, 128 registers; its three MMAs a product make it tensor-bound: 1.3;
# wgmma-tf32x3-128x256 400 for twelve (0.74 of it), 255 registers, one block an SM: 1.5.
UNMEASURED = frozenset({"wgmma-128x128", "wgmma-128x256", "wgmma-tf32x3-128x128",
                        "wgmma-tf32x3-128x256"})
MIN_SPLIT_STEPS = 4  # reduction steps per split: fewer leave the pipeline mostly filling
DIRECT_ROWS = (1, 2, 3, 4)  # conv_direct's instantiations: slices writing this many rows
DIRECT_ROWS_USED = DIRECT_ROWS  # what the planner sends there (tests empty it to force GEMMs)


def gemm_kernel_names(ctype: str, dtype: str, wgmma: bool = False) -> list[str]:
    """The GEMM kernels of ``dtype``'s tiles: those of the backend's module, or (``wgmma``)
    the wgmma tiles' (their sm_90a module)."""
    names = []
    for precision in PRECISIONS:
        for i, name in enumerate(tiles := TILES_FOR.get((dtype, precision), ())):
            t = TILES[name]
            if t.wgmma != wgmma:
                continue
            generic = i == len(tiles) - 1 and not t.terms
            variants = [(True, False)] + ([(False, False), (True, True), (False, True)] if generic else [])
            names += [t.kernel(ctype, wgrad, zero_pad, index64, vec_a)
                      for zero_pad, index64 in variants for wgrad in (False, True)
                      for vec_a in ((False, True) if t.terms else (False,))]
    return names


def wgmma_kernel_names() -> list[str]:
    """The wgmma tiles' kernels, NVRTC name expressions of the module built for sm_90a alone."""
    return gemm_kernel_names(CTYPES["float32"], "float32", wgmma=True)


def kernel_names() -> list[str]:
    """Every kernel of the backend's module (any GPU of compute capability 8.0 or newer; older
    ones launch no tensor-core kernel), as NVRTC name expressions; the wgmma kernels are
    ``wgmma_kernel_names``."""
    names = []
    for dtype, ctype in CTYPES.items():
        names += gemm_kernel_names(ctype, dtype)
        names += [f"conv_direct<{ctype}, {rows}>" for rows in DIRECT_ROWS]
        names += [f"{k}<{ctype}, {size}>" for k in ("conv_depthwise", "conv_depthwise_grad_weight")
                  for size in DW_SIZES + (0,)]
        names += [f"{k}<{ctype}>" for k in ("conv_splitk_reduce", "conv_grad_bias", "conv_pad_adjoint",
                                           "conv_fill_bias", "max_pool2d", "avg_pool2d",
                                           "pool2d_backward", "max_pool2d_backward")]
    names += [f"{k}<{ctype}>" for ctype in CTYPES.values() for k in LAYER_KERNELS]
    return names


# --------------------------------------------------------------------------- parameter structs
def _struct(fields: list[tuple[str, str]]) -> np.dtype:
    return np.dtype([(name, kind) if kind != "4" else (name, "<i8", (4,)) for name, kind in fields])


_PTR, _I64, _F64, _VEC4 = "<u8", "<i8", "<f8", "4"
CONV_FIELDS = ([(n, _PTR) for n in ("a", "b", "bias", "out")]
               + [("a_stride", _VEC4), ("b_stride", _VEC4)]
               + [(n, _I64) for n in ("batch", "b_h", "b_w", "out_c", "out_h", "out_w", "groups",
                                      "m", "kc", "kh", "kw", "sh", "sw", "dh", "dw", "pt", "pl",
                                      "q_h", "q_w", "lo_h", "lo_w", "len_h", "len_w", "mode",
                                      "transposed", "phases", "splits", "tiles_per_split", "relu",
                                      "total", "plane")])
POOL_FIELDS = ([(n, _PTR) for n in ("x", "gy", "y", "idx", "err")]
               + [("x_stride", _VEC4), ("g_stride", _VEC4)]
               + [(n, _I64) for n in ("n", "c", "h", "w", "out_h", "out_w", "kh", "kw", "sh", "sw",
                                      "ph", "pw", "dh", "dw", "adaptive", "op", "count_include_pad",
                                      "divisor_override", "lp_post")]
               + [("norm", _F64)])
INDEX_POINTERS = ("idx", "err")  # int64 pointer fields; the others point at the tensor's dtype
# LayerParams in layers.cu (the trainer's fused layer kernels).
LAYER_FIELDS = ([(n, _PTR) for n in ("x", "gy", "gamma", "beta", "y", "saved", "running_mean",
                                     "running_var", "grad_gamma", "grad_beta", "totals", "seed",
                                     "relu_y")]
                + [(n, _I64) for n in ("n", "c", "hw", "training", "stream", "threshold", "relu")]
                + [(n, _F64) for n in ("momentum", "epsilon", "scale")])
CONV_PARAMS = _struct(CONV_FIELDS)
POOL_PARAMS = _struct(POOL_FIELDS)
LAYER_PARAMS = _struct(LAYER_FIELDS)
POINTER_FIELDS = {name for name, kind in CONV_FIELDS + POOL_FIELDS + LAYER_FIELDS if kind == _PTR}


def pack(kernel: str, params: dict, pointer) -> np.ndarray:
    """The size-1 struct array for ``kernel``'s launch; ``pointer(name)`` resolves the buffer
    names of pointer fields (None stays a null pointer)."""
    dtype = (LAYER_PARAMS if is_layer_kernel(kernel) else POOL_PARAMS if is_pool_kernel(kernel)
             else CONV_PARAMS)
    out = np.zeros(1, dtype=dtype)
    for name, value in params.items():
        out[name] = (0 if value is None else pointer(value)) if name in POINTER_FIELDS else value
    return out


def is_pool_kernel(kernel: str) -> bool:
    return not kernel.startswith("conv_") and not is_layer_kernel(kernel)


def is_layer_kernel(kernel: str) -> bool:
    return kernel.split("<")[0] in LAYER_KERNELS


# --------------------------------------------------------------------------- plans
@dataclass(frozen=True)
class Launch:
    kernel: str
    grid: tuple[int, int, int]
    block: tuple[int, int, int]
    params: dict
    shared_mem: int = 0  # dynamic shared memory, bytes (the kernel opts in: static + dynamic > 48 KiB)

    def __post_init__(self):
        """Within CUDA's launch limits, which a GPU enforces and the CPU stand-ins (Numba's
        simulator, the host emulation) do not: a plan past them fails here, on any machine."""
        if (len(self.grid) != 3 or len(self.block) != 3
                or not all(1 <= g <= limit for g, limit in zip(self.grid, MAX_GRID))
                or not all(1 <= b <= limit for b, limit in zip(self.block, MAX_BLOCK))
                or math.prod(self.block) > MAX_BLOCK_THREADS):
            raise ValueError(f"{self.kernel}: a launch of grid {self.grid} and block {self.block} "
                             f"is past CUDA's limits (grid {MAX_GRID}, block {MAX_BLOCK}, "
                             f"{MAX_BLOCK_THREADS} threads)")


@dataclass
class Plan:
    launches: list[Launch]
    workspaces: dict[str, tuple[int, str]] = field(default_factory=dict)  # name -> (count, dtype)
    choice: "GemmChoice | None" = None  # a conv GEMM's tile and split, as the model saw them
    aligned: tuple[str, ...] = ()  # inputs the launches read 16 bytes at a time: the backend
    #                                hands them over 16-byte aligned (a copy where they are not)


def _blocks(count: int, per_block: int) -> int:
    return max(1, -(-count // per_block))


def _elementwise(kernel: str, count: int, params: dict) -> Launch:
    return Launch(kernel, (_blocks(count, POOL_BLOCK), 1, 1), (POOL_BLOCK, 1, 1), params)


def _typed_elementwise(kernel: str, count: int, params: dict, dtype: str) -> Launch:
    """_elementwise of the conv.cu template ``kernel`` instantiated for ``dtype``."""
    return _elementwise(f"{kernel}<{CTYPES[dtype]}>", count, params)


def _check_grid_z(z: int, what: str) -> int:
    if z > MAX_GRID_Z:
        raise ValueError(f"{what} needs {z} launch slices, more than CUDA's {MAX_GRID_Z}")
    return z


# --------------------------------------------------------------------------- the GEMM plan model
# Multiply-adds per second of an H100 / H200 (the model's time unit): FFMA at 67 TFLOP/s,
# dense TF32 mma.sync at about 495 TFLOP/s, 3xTF32 three of those per product.
PEAK_MACS = {0: 33.5e12, 1: 247e12, 3: 82e12}
BANDWIDTH = 4.0e12         # bytes/s, for the split-K partials' extra traffic


@dataclass(frozen=True)
class GemmShape:
    """One conv pass as a batch of GEMMs: ``slices`` launch slices (groups x stride phases) of
    ``rows`` x ``cols`` outputs over a reduction of ``k``."""

    rows: int
    cols: int
    k: int
    slices: int


@dataclass(frozen=True)
class GemmChoice:
    """A tile and split-K for a GemmShape, with what the plan model predicts of it."""

    tile: TileConfig
    splits: int
    steps_per_split: int
    blocks: int        # of the GEMM launch, splits included
    waves: float       # blocks / (SMs x resident blocks per SM)
    fill: float        # useful outputs / outputs the blocks compute
    mac_ratio: float   # issued / useful multiply-adds (tile edges and the reduction's tail)
    seconds: float     # the model's time: GEMM waves plus split-K partials traffic

    def row(self) -> dict:
        return dict(tile=self.tile.name, splits=self.splits, blocks=self.blocks,
                    waves=round(self.waves, 2), fill=round(self.fill, 3),
                    mac_ratio=round(self.mac_ratio, 3), model_us=round(1e6 * self.seconds, 2))


def gemm_choice(shape: GemmShape, tile: TileConfig, itemsize: int, sm_count: int,
                allow_split: bool = True) -> GemmChoice:
    """Split-K and the model's figures for one tile: split until the blocks fill a wave (each
    split keeping MIN_SPLIT_STEPS reduction steps), then time = waves x a block's work."""
    rb, cb = -(-shape.rows // tile.bm), -(-shape.cols // tile.bn)
    steps = -(-shape.k // tile.bk)
    base = rb * cb * shape.slices
    wave = sm_count * tile.blocks_per_sm(itemsize)
    splits = 1
    if allow_split and 0 < base < wave and steps:  # base 0: an empty batch, nothing to split
        out_bytes = shape.rows * shape.cols * shape.slices * itemsize
        splits = max(1, min(-(-wave // base), steps // MIN_SPLIT_STEPS, MAX_SPLITS,
                            MAX_GRID_Z // shape.slices, SPLIT_WORKSPACE_BYTES // max(1, out_bytes)))
    per_split = max(1, steps // splits) if steps else 0  # rounded down: at least `splits` splits
    splits = -(-steps // per_split) if per_split else 1
    blocks = base * splits
    useful = shape.rows * shape.cols
    fill = useful / (rb * tile.bm * cb * tile.bn) if useful else 1.0
    mac_ratio = (steps * tile.bk / shape.k if shape.k else 1.0) / fill
    block_macs = tile.bm * tile.bn * tile.bk * per_split / TILE_EFFICIENCY[tile.name]
    seconds = max(1.0, blocks / wave) * block_macs / (PEAK_MACS[tile.terms] / wave)
    if splits > 1:
        seconds += (splits + 1) * useful * shape.slices * itemsize / BANDWIDTH
    return GemmChoice(tile, splits, per_split, blocks, blocks / wave, fill, mac_ratio, seconds)


LAUNCH_THRESHOLDS = {"waves": 1.0, "fill": 0.5, "mac_ratio": 1.3}  # at least, at least, at most


def meets_thresholds(c: GemmChoice) -> bool:
    """A launch shape that keeps the GPU busy: a full wave of blocks (or all the work there
    is: no further split is possible), tiles at least half used, few wasted multiply-adds."""
    t = LAUNCH_THRESHOLDS
    full = c.waves >= t["waves"] or c.steps_per_split <= MIN_SPLIT_STEPS or c.tile.direct
    return full and c.fill >= t["fill"] and c.mac_ratio <= t["mac_ratio"]


def choose_gemm(shape: GemmShape, candidates, itemsize: int, sm_count: int = DEFAULT_SM_COUNT,
                allow_split: bool = True) -> GemmChoice:
    """The candidate tile (with its split-K) the model times fastest among those that meet the
    launch thresholds (among all, if none does); ties go to the larger tile."""
    tiles = [TILES[c] if isinstance(c, str) else c for c in candidates]  # names or TileConfigs
    choices = [gemm_choice(shape, t, itemsize, sm_count, allow_split and not t.direct)
               for t in tiles]
    good = [c for c in choices if meets_thresholds(c)] or choices
    return min(good, key=lambda c: (round(c.seconds, 12), -c.tile.bm * c.tile.bn))


def zero_padding(spec: ConvSpec) -> bool:
    """Whether a conv reads its input through zero padding's bounds alone (conv_gemm's
    ZERO_PAD instances): zeros, or no padding at all."""
    return spec.padding_mode == "zeros" or spec.padding == ((0, 0), (0, 0))


MASK_TAPS = 31      # conv.cu's: a pixel's in-bounds kernel taps (rows plus columns) are one mask
MASK_PIXELS = 1024  # conv.cu's: the tensor-core grad-weight's tables of them, per output row / column


def masks_fit(kernel_hw, pixels_hw=None) -> bool:
    """Whether the ZERO_PAD loader's tap masks (conv.cu's Bounds) serve a conv pass: its
    kernel taps, rows plus columns (a grad-input stride phase has no more), fit a mask, and
    for the tensor-core grad-weight (``pixels_hw``: the output's rows and columns, its
    reduction) the tables of them. Past that, forward and grad-input run the generic instance
    (zero padding through source_index), grad-weight the CUDA-core tiles (which test rows and
    columns)."""
    fits = kernel_hw[0] + kernel_hw[1] <= MASK_TAPS
    return fits and (pixels_hw is None or max(pixels_hw) <= MASK_PIXELS)


def _gemm_candidates(dtype: str, precision: str, zero_pad: bool, index64: bool,
                     tile: str | None, direct_rows: int = 0,
                     tensor_cores: bool = True) -> tuple[str, ...]:
    """Tiles built for this case (generic only off the fast path); ``tile`` forces one of the
    precision's tiles (autotuning tries each): the case's own tiles where it is not one of them
    (off the fast path, or a tensor-core precision that runs on CUDA cores there).
    ``direct_rows``: a forward or grad-input slice writing that few rows runs conv_direct;
    ``tensor_cores`` false: the case runs a tensor-core precision on CUDA cores, in FP32."""
    if direct_rows in DIRECT_ROWS_USED and zero_pad and not index64 and tile is None:
        return (f"direct{direct_rows}",)
    asked = TILES_FOR.get((dtype, precision)) or TILES_FOR[(dtype, "ieee")]
    if tile is not None and tile not in asked:
        raise ValueError(f"tile {tile!r} is not a {dtype} {precision!r} tile: {asked}")
    if dtype != "float32" or not zero_pad or index64 or not tensor_cores:
        precision = "ieee"
    tiles = TILES_FOR[(dtype, precision)]
    if not zero_pad or index64:
        tiles = tiles[-1:]
    return (tile,) if tile in tiles else tuned_tiles(tiles)


def tuned_tiles(tiles) -> tuple[str, ...]:
    """``tiles`` but the UNMEASURED ones: the tiles plans and autotuning choose among."""
    return tuple(t for t in tiles if t not in UNMEASURED)


# --------------------------------------------------------------------------- conv plans
def _conv_common(spec: ConvSpec, kernel_hw) -> dict:
    (pt, _), (pl, _) = spec.padding
    (sh, sw), (dh, dw) = spec.stride, spec.dilation
    return dict(kh=kernel_hw[0], kw=kernel_hw[1], sh=sh, sw=sw, dh=dh, dw=dw, pt=pt, pl=pl,
                groups=spec.groups, phases=1, splits=1)


def _span(shape, strides) -> int:
    """Elements between an array's first and last element, plus one (its offsets' range)."""
    return 1 + sum((n - 1) * abs(s) for n, s in zip(shape, strides)) if all(shape) else 0


INDEX64_FROM = 2 ** 31  # offsets from here on need the 64-bit instantiations


def _needs_index64(*counts: int) -> bool:
    return max(counts) >= INDEX64_FROM


def direct_columns(cols: int, pixel_rows: int) -> int:
    """The columns conv_direct's grid covers for ``cols`` pixels in ``pixel_rows`` output rows:
    in its segment layout a thread takes a run of DIRECT_PIXELS pixels of one row, and a row's
    last run may be short."""
    return cols + pixel_rows * (DIRECT_PIXELS - 1)


def _gemm_plan(shape: GemmShape, params: dict, dtype: str, precision: str, tile: str | None,
               sm_count: int, zero_pad: bool, index64: bool, wgrad: bool, out: str,
               reduce: dict, out_count: int, fills=(), pixel_rows: int = 0,
               vec_a: bool = False, tensor_cores: bool = True) -> Plan:
    """The GEMM launch of ``shape`` writing ``out`` (or split-K partials that
    conv_splitk_reduce sums into it, with ``reduce``'s bias / ReLU fields; ``fills``: see
    ``_split_plan``); ``pixel_rows``:
    the output rows its columns span (conv_direct's grid); ``vec_a``: A (params["a"]) runs
    on along the reduction (``a_runs``), for a tensor-core tile to copy 16 bytes at a time;
    ``tensor_cores`` false: a tensor-core precision runs on CUDA cores (``_gemm_candidates``)."""
    ctype, itemsize = CTYPES[dtype], np.dtype(dtype).itemsize
    candidates = _gemm_candidates(dtype, precision, zero_pad, index64, tile,
                                  0 if wgrad else shape.rows, tensor_cores)
    choice = choose_gemm(shape, candidates, itemsize, sm_count)
    t, splits = choice.tile, choice.splits
    params = dict(params, splits=splits, tiles_per_split=choice.steps_per_split,
                  out=out if splits == 1 else "partials")
    cols = direct_columns(shape.cols, pixel_rows) if t.direct else shape.cols
    grid = (_blocks(cols, t.bn), _blocks(shape.rows, t.bm),
            _check_grid_z(shape.slices * splits, "conv"))
    vec_a = vec_a and t.terms > 0
    gemm = Launch(t.kernel(ctype, wgrad, zero_pad, index64, vec_a), grid, (t.threads, 1, 1),
                  params, t.smem_bytes(itemsize))
    return _split_plan(choice, gemm, out, reduce, out_count, dtype,
                       functools.partial(_typed_elementwise, dtype=dtype), fills,
                       (params["a"],) if vec_a else ())


def _split_plan(choice: GemmChoice, gemm: Launch, out: str, reduce: dict, out_count: int,
                dtype: str, elementwise, fills=(), aligned=()) -> Plan:
    """The launches around a GEMM launch ``gemm`` of ``out_count`` outputs, in both backends'
    plans. Where ``choice`` splits the reduction (``gemm`` then writes "partials"): a
    partials workspace, and conv_splitk_reduce summing it into ``out`` with ``reduce``'s bias
    / ReLU fields. Before ``gemm``, conv_fill_bias for each of ``fills`` (its fields: the
    positions the GEMM does not write), or, split, zeros in all of the partials.
    ``elementwise(kernel, count, fields)``: the backend's launch of a conv-family kernel."""
    splits, launches, workspaces = choice.splits, [gemm], {}
    if splits > 1:
        workspaces["partials"] = (splits * out_count, dtype)
        launches.append(elementwise("conv_splitk_reduce", out_count,
                                    dict(reduce, b="partials", out=out, splits=splits,
                                         total=out_count)))
    for fill in fills:
        if splits > 1:
            fill = dict(out="partials", total=splits * out_count)
        launches.insert(0, elementwise("conv_fill_bias", fill["total"], fill))
    return Plan(launches, workspaces, choice, aligned)


A_RUN = 4  # float32 elements of a 16-byte copy (conv.cu's Loader::V)


def a_runs(a_shape, a_strides, run_axes: int) -> bool:
    """Whether a GEMM's A rows run on along its reduction in 16-byte aligned runs (conv.cu's
    VEC_A): A C-contiguous and its innermost ``run_axes`` axes, over which the reduction runs on
    contiguously (a forward's weight: C/G x kH x kW; a grad-weight's grad_out: a plane
    H_out x W_out), spanning a multiple of A_RUN elements. From a 16-byte aligned start (the
    plan's ``aligned``), every run of A_RUN reduction indices is then one aligned 16 bytes."""
    return (tuple(a_strides) == contiguous_strides(a_shape)
            and math.prod(a_shape[-run_axes:]) % A_RUN == 0)


@dataclass(frozen=True)
class ConvGemm:
    """What both backends' forward and grad-weight plans share: conv_gemm's fields, the GEMM's
    shape (a slice per group), conv_splitk_reduce's fields and the output's element count."""

    params: dict
    shape: GemmShape
    reduce: dict
    out_count: int


def forward_gemm(x_shape, x_strides, w_shape, w_strides, spec: ConvSpec, has_bias: bool,
                 relu: bool) -> ConvGemm:
    """The forward GEMM: rows O/G, columns N x H_out x W_out, reduction C/G x kH x kW."""
    n, _, h, w = x_shape
    o, cg, kh, kw = w_shape
    ho, wo = spec.output_shape((h, w), (kh, kw))
    params = dict(a="weight", b="x", bias="bias" if has_bias else None,
                  a_stride=w_strides, b_stride=x_strides, batch=n, b_h=h, b_w=w, out_c=o, out_h=ho,
                  out_w=wo, m=o // spec.groups, kc=cg, q_h=ho, q_w=wo, relu=int(relu),
                  mode=PAD_MODES[spec.padding_mode], **_conv_common(spec, (kh, kw)))
    return ConvGemm(params, GemmShape(o // spec.groups, n * ho * wo, cg * kh * kw, spec.groups),
                    dict(bias=params["bias"], relu=int(relu), out_c=o, plane=ho * wo),
                    n * o * ho * wo)


def conv_forward_plan(x_shape, x_strides, w_shape, w_strides, spec: ConvSpec, dtype: str,
                      has_bias: bool, precision: str = "ieee", tile: str | None = None,
                      sm_count: int = DEFAULT_SM_COUNT, relu: bool = False) -> Plan:
    """y (N, O, H_out, W_out) = conv2d(x, weight) + bias (then ReLU if ``relu``): rows O/G,
    columns N x H_out x W_out, reduction C/G x kH x kW, one slice per group."""
    if is_depthwise(w_shape, spec.groups):
        return depthwise_forward_plan(x_shape, x_strides, w_shape, w_strides, spec, dtype,
                                      has_bias, relu)
    gemm = forward_gemm(x_shape, x_strides, w_shape, w_strides, spec, has_bias, relu)
    zero_pad = zero_padding(spec) and masks_fit(w_shape[2:])
    index64 = _needs_index64(_span(x_shape, x_strides), _span(w_shape, w_strides),
                             gemm.out_count)
    return _gemm_plan(gemm.shape, gemm.params, dtype, precision, tile, sm_count, zero_pad,
                      index64, False, "out", gemm.reduce, gemm.out_count,
                      pixel_rows=x_shape[0] * gemm.params["out_h"],
                      vec_a=a_runs(w_shape, w_strides, 3))


def phase_axis(r: int, k: int, s: int, d: int, lo: int, length: int) -> tuple[int, int]:
    """(taps, pixels) of grad-input's stride phase r along one axis (conv.cu's phase_axis): the
    padded rows r + s*u in [lo, lo + length) and the kernel taps i with i*d = r (mod s)."""
    first = next((i for i in range(min(k, s)) if (i * d) % s == r), None)
    step = s // math.gcd(s, d)
    taps = 0 if first is None else -(-(k - first) // step)
    u0 = -(-(lo - r) // s)
    return taps, max(0, -(-(lo + length - r) // s) - u0)


@dataclass(frozen=True)
class GradInputSlices:
    """What both backends' grad-input plans share: the GEMM's fields (``phases``: the stride
    phases some tap reaches, a slice each per group), its shape over the largest live phase
    (None where no tap reaches the input) and the output rows its columns span, the
    target's element count, conv_fill_bias's fields where some position no tap reaches
    (else none) and the split reduce's fields."""

    params: dict
    shape: GemmShape | None
    pixel_rows: int
    out_count: int
    fills: list
    reduce: dict


def grad_input_slices(gy_shape, gy_strides, w_shape, w_strides, spec: ConvSpec, input_hw,
                      has_bias: bool) -> GradInputSlices:
    """grad-input's slices: the padded input's rows r + s*u of stride phase r gather the taps
    i with i*d = r (mod s) (``phase_axis``); zero padding writes "out", the other modes
    "padded" (conv_pad_adjoint folds it back, adding the bias)."""
    n, o, ho, wo = gy_shape
    _, cg, kh, kw = w_shape
    groups, c = spec.groups, cg * spec.groups
    zeros = spec.padding_mode == "zeros"
    lo_h, lo_w, len_h, len_w = _grad_input_target(spec, input_hw)
    (sh, sw), (dh, dw) = spec.stride, spec.dilation
    axes_h = [phase_axis(r, kh, sh, dh, lo_h, len_h) for r in range(sh)]
    axes_w = [phase_axis(r, kw, sw, dw, lo_w, len_w) for r in range(sw)]
    live = [(a, b) for a in axes_h if a[0] and a[1] for b in axes_w if b[0] and b[1]]
    target = "out" if zeros else "padded"
    params = dict(a="weight", b="grad_out", bias="bias" if has_bias and zeros else None,
                  out=target, a_stride=w_strides, b_stride=gy_strides, batch=n, b_h=ho, b_w=wo,
                  out_c=c, out_h=len_h, out_w=len_w, m=cg, kc=o // groups, q_h=ho, q_w=wo,
                  lo_h=lo_h, lo_w=lo_w, len_h=len_h, len_w=len_w, mode=0, transposed=1,
                  **_conv_common(spec, (kh, kw)))
    params["phases"] = len(live)
    out_count = n * c * len_h * len_w
    reached = sum(ah[1] * aw[1] for ah, aw in live)
    fills = [dict(out=target, bias=params["bias"], total=out_count, out_c=c,
                  plane=len_h * len_w)] if reached < len_h * len_w else []
    shape = GemmShape(cg, n * max(ah[1] * aw[1] for ah, aw in live),
                      o // groups * max(ah[0] * aw[0] for ah, aw in live),
                      groups * len(live)) if live else None
    return GradInputSlices(params, shape, n * max((ah[1] for ah, _ in live), default=0),
                           out_count, fills,
                           dict(bias=params["bias"], out_c=c, plane=len_h * len_w))


def _grad_input_plan(g: GradInputSlices, gemm, spec: ConvSpec, input_hw, has_bias: bool,
                     dtype: str, elementwise) -> Plan:
    """Both backends' grad-input plan from its slices ``g``: ``gemm()``'s plan of them (the
    bias, or zeros, filled in alone where no tap reaches the input), then, under reflect /
    replicate / circular padding, conv_pad_adjoint folding the padded gradient onto the input.
    ``elementwise``: the backend's launch of a conv-family kernel (``_split_plan``)."""
    plan = gemm() if g.shape is not None else Plan(
        [elementwise("conv_fill_bias", g.out_count, g.fills[0])])
    if spec.padding_mode == "zeros":
        return plan
    n, c = g.params["batch"], g.params["out_c"]
    adjoint = _pad_adjoint_params(n, c, tuple(input_hw), (g.params["len_h"], g.params["len_w"]),
                                  spec, has_bias)
    plan.launches.append(elementwise("conv_pad_adjoint", n * c * math.prod(input_hw), adjoint))
    plan.workspaces["padded"] = (g.out_count, dtype)
    return plan


def conv_grad_input_plan(gy_shape, gy_strides, w_shape, w_strides, spec: ConvSpec, input_hw,
                         dtype: str, has_bias: bool, precision: str = "ieee",
                         tile: str | None = None, sm_count: int = DEFAULT_SM_COUNT) -> Plan:
    """dx (N, C, H, W): the transposed conv of grad_out, one slice per group and stride phase
    that some tap reaches (conv_fill_bias first writes the bias, or zeros, to the rest, if any).
    Under reflect / replicate / circular padding the slices write the padded gradient, which
    conv_pad_adjoint folds back onto the input."""
    if is_depthwise(w_shape, spec.groups):
        return depthwise_grad_input_plan(gy_shape, gy_strides, w_shape, w_strides, spec, input_hw,
                                         dtype, has_bias)
    g = grad_input_slices(gy_shape, gy_strides, w_shape, w_strides, spec, input_hw, has_bias)

    def gemm() -> Plan:
        index64 = _needs_index64(_span(gy_shape, gy_strides), _span(w_shape, w_strides),
                                 g.out_count)
        return _gemm_plan(g.shape, g.params, dtype, precision, tile, sm_count,
                          masks_fit(w_shape[2:]), index64, False, g.params["out"], g.reduce,
                          g.out_count, g.fills, g.pixel_rows)
    return _grad_input_plan(g, gemm, spec, input_hw, has_bias, dtype,
                            functools.partial(_typed_elementwise, dtype=dtype))


def grad_weight_gemm(gy_shape, gy_strides, x_shape, x_strides, spec: ConvSpec,
                     kernel_hw) -> ConvGemm:
    """The grad-weight GEMM: rows O/G, columns C/G x kH x kW, reduction N x H_out x W_out."""
    n, o, ho, wo = gy_shape
    _, c, h, w = x_shape
    cg, (kh, kw), groups = c // spec.groups, kernel_hw, spec.groups
    params = dict(a="grad_out", b="x", a_stride=gy_strides, b_stride=x_strides, batch=n, b_h=h,
                  b_w=w, out_c=o, m=o // groups, kc=cg, q_h=ho, q_w=wo,
                  mode=PAD_MODES[spec.padding_mode], **_conv_common(spec, kernel_hw))
    return ConvGemm(params, GemmShape(o // groups, cg * kh * kw, n * ho * wo, groups),
                    dict(out_c=o, plane=1), o * cg * kh * kw)


def conv_grad_weight_plan(gy_shape, gy_strides, x_shape, x_strides, spec: ConvSpec, kernel_hw,
                          dtype: str, precision: str = "ieee", tile: str | None = None,
                          sm_count: int = DEFAULT_SM_COUNT) -> Plan:
    """dW (O, C/G, kH, kW): a GEMM of grad_out (rows O/G, reduction batch x pixels) with the
    gathered input (columns C/G x kH x kW), split-K partials summed by conv_splitk_reduce."""
    n, o, ho, wo = gy_shape
    _, c, h, w = x_shape
    groups = spec.groups
    if is_depthwise((o, c // groups), groups):
        return depthwise_grad_weight_plan(gy_shape, gy_strides, x_shape, x_strides, spec,
                                          kernel_hw, dtype, sm_count)
    gemm = grad_weight_gemm(gy_shape, gy_strides, x_shape, x_strides, spec, kernel_hw)
    index64 = _needs_index64(_span(gy_shape, gy_strides), _span(x_shape, x_strides))
    # past the tensor-core tiles' pixel-tap tables, CUDA cores (zero padding still: their
    # grad-weight tests rows and columns)
    return _gemm_plan(gemm.shape, gemm.params, dtype, precision, tile, sm_count,
                      zero_padding(spec), index64, True, "out", gemm.reduce, gemm.out_count,
                      vec_a=a_runs(gy_shape, gy_strides, 2),
                      tensor_cores=masks_fit(kernel_hw, (ho, wo)))


def conv_grad_bias_plan(gy_shape, gy_strides, dtype: str) -> Plan:
    n, o, ho, wo = gy_shape
    params = dict(a="grad_out", out="out", a_stride=gy_strides, batch=n, out_c=o, q_h=ho, q_w=wo)
    return Plan([Launch(f"conv_grad_bias<{CTYPES[dtype]}>", (o, 1, 1), (POOL_BLOCK, 1, 1), params)])


# --------------------------------------------------------------------------- depthwise plans
DW_V = 4                 # outputs per thread along a row (depthwise.cu's DW_V)
DW_TILE_BYTES = 32768    # shared source tile (depthwise.cu's DW_TILE_BYTES)
DW_SIZES = (3, 5, 7)     # square kernels compiled with their size as a template parameter


def is_depthwise(weight_shape, groups: int) -> bool:
    """Depthwise / channel-multiplier convs (one input channel per group): depthwise.cu."""
    return weight_shape[1] == 1 and groups > 1


def _dw_size(kernel_hw) -> int:
    """conv_depthwise's K: the kernel size when square and compiled for, else 0 (generic)."""
    kh, kw = kernel_hw
    return kh if kh == kw and kh in DW_SIZES else 0


def _dw_tile_bytes(bx: int, by: int, steps, dilation, kernel_hw, itemsize: int) -> int:
    """depthwise.cu's dw_tile: the source tile of a (by x bx*DW_V) output tile, rows padded
    to whole 16-byte vectors plus the alignment shift."""
    vec = 16 // itemsize
    rows = (by - 1) * steps[0] + (kernel_hw[0] - 1) * dilation[0] + 1
    cols = (bx * DW_V - 1) * steps[1] + (kernel_hw[1] - 1) * dilation[1] + 1 + vec - 1
    return rows * -(-cols // vec) * vec * itemsize


def _depthwise_launch(kernel: str, params: dict, planes: int, out_hw, steps, dilation, kernel_hw,
                      dtype: str) -> Launch:
    """Block (bx, by) of at most POOL_BLOCK threads over a by x bx*DW_V output tile whose
    source tile fits DW_TILE_BYTES (else the kernel takes its direct path); grid over tiles
    and planes (the kernel loops beyond the grid's limits)."""
    if planes >= 1 << 32:
        raise ValueError(f"depthwise conv on the GPU takes fewer than 2^32 planes, got {planes}")
    itemsize = np.dtype(dtype).itemsize
    out_h, out_w = out_hw
    bx = min(32, _pow2_at_least(-(-out_w // DW_V)))
    by = min(POOL_BLOCK // bx, _pow2_at_least(out_h))
    while by > 1 and _dw_tile_bytes(bx, by, steps, dilation, kernel_hw, itemsize) > DW_TILE_BYTES:
        by //= 2
    grid = (_blocks(out_w, bx * DW_V), min(_blocks(out_h, by), MAX_GRID_Z),
            min(_blocks(planes, 1), MAX_GRID_Z))  # an empty batch: one block with no plane
    return Launch(kernel, grid, (bx, by, 1), params)


def _grad_input_target(spec: ConvSpec, input_hw) -> tuple[int, int, int, int]:
    """(lo_h, lo_w, len_h, len_w): the region of the padded input that grad-input writes: the
    input itself under zero padding, else the whole padded input (folded by conv_pad_adjoint)."""
    (pt, pb), (pl, pr) = spec.padding
    h, w = input_hw
    return (pt, pl, h, w) if spec.padding_mode == "zeros" else (0, 0, h + pt + pb, w + pl + pr)


def _pad_adjoint_params(n, c, hw, len_hw, spec: ConvSpec, has_bias: bool) -> dict:
    """conv_pad_adjoint's fields: fold the padded gradient ("padded") back onto the input
    ("out"), adding the bias last."""
    (pt, _), (pl, _) = spec.padding
    return dict(b="padded", bias="bias" if has_bias else None, out="out", batch=n, out_c=c,
                out_h=hw[0], out_w=hw[1], len_h=len_hw[0], len_w=len_hw[1], pt=pt, pl=pl,
                mode=PAD_MODES[spec.padding_mode])


def _pad_adjoint(n, c, hw, len_hw, spec: ConvSpec, has_bias: bool, dtype: str) -> Launch:
    return _typed_elementwise("conv_pad_adjoint", n * c * hw[0] * hw[1],
                              _pad_adjoint_params(n, c, hw, len_hw, spec, has_bias), dtype)


def depthwise_forward_plan(x_shape, x_strides, w_shape, w_strides, spec: ConvSpec, dtype: str,
                           has_bias: bool, relu: bool = False) -> Plan:
    """y (N, O, H_out, W_out) = depthwise conv of x (N, C, H, W) with weight (O, 1, kH, kW)
    + bias (then ReLU if ``relu``)."""
    n, _, h, w = x_shape
    o, _, kh, kw = w_shape
    ho, wo = spec.output_shape((h, w), (kh, kw))
    params = dict(a="weight", b="x", bias="bias" if has_bias else None, out="out",
                  a_stride=w_strides, b_stride=x_strides, batch=n, b_h=h, b_w=w, out_c=o, out_h=ho,
                  out_w=wo, m=o // spec.groups, kc=1, q_h=ho, q_w=wo, relu=int(relu),
                  mode=PAD_MODES[spec.padding_mode], **_conv_common(spec, (kh, kw)))
    return Plan([_depthwise_launch(f"conv_depthwise<{CTYPES[dtype]}, {_dw_size((kh, kw))}>", params,
                                   n * o, (ho, wo), spec.stride, spec.dilation, (kh, kw), dtype)])


def depthwise_grad_input_plan(gy_shape, gy_strides, w_shape, w_strides, spec: ConvSpec, input_hw,
                              dtype: str, has_bias: bool) -> Plan:
    """dx (N, C, H, W) of a depthwise conv (also the depthwise transposed conv's forward, with
    its bias (C,)): a gather over the M output channels of each input channel; stride 1 runs
    the tiled path. Other padding modes write the padded gradient, then conv_pad_adjoint."""
    n, o, ho, wo = gy_shape
    _, _, kh, kw = w_shape
    c = spec.groups
    zeros = spec.padding_mode == "zeros"
    lo_h, lo_w, len_h, len_w = _grad_input_target(spec, input_hw)
    params = dict(a="weight", b="grad_out", bias="bias" if has_bias and zeros else None,
                  out="out" if zeros else "padded", a_stride=w_strides, b_stride=gy_strides,
                  batch=n, b_h=ho, b_w=wo, out_c=c, out_h=len_h, out_w=len_w, m=o // c, kc=1,
                  q_h=ho, q_w=wo, lo_h=lo_h, lo_w=lo_w, len_h=len_h, len_w=len_w, mode=0,
                  transposed=1, **_conv_common(spec, (kh, kw)))
    launch = _depthwise_launch(f"conv_depthwise<{CTYPES[dtype]}, {_dw_size((kh, kw))}>", params,
                               n * c, (len_h, len_w), (1, 1), spec.dilation, (kh, kw), dtype)
    if zeros:
        return Plan([launch])
    return Plan([launch, _pad_adjoint(n, c, tuple(input_hw), (len_h, len_w), spec, has_bias, dtype)],
                {"padded": (n * c * len_h * len_w, dtype)})


def depthwise_grad_weight_plan(gy_shape, gy_strides, x_shape, x_strides, spec: ConvSpec,
                               kernel_hw, dtype: str, sm_count: int = DEFAULT_SM_COUNT) -> Plan:
    """dW (O, 1, kH, kW): a block per (output channel, chunk of images) sums its taps in
    registers; with several chunks, conv_splitk_reduce adds their partials in chunk order."""
    n, o, ho, wo = gy_shape
    _, _, h, w = x_shape
    kh, kw = kernel_hw
    splits = max(1, min(n, MAX_SPLITS, -(-2 * sm_count // o)))
    per_split = max(1, -(-n // splits))
    splits = max(1, -(-n // per_split))
    params = dict(a="grad_out", b="x", out="out" if splits == 1 else "partials",
                  a_stride=gy_strides, b_stride=x_strides, batch=n, b_h=h, b_w=w, out_c=o,
                  m=o // spec.groups, kc=1, q_h=ho, q_w=wo, mode=PAD_MODES[spec.padding_mode],
                  **_conv_common(spec, kernel_hw))
    params.update(splits=splits, tiles_per_split=per_split)
    kernel = f"conv_depthwise_grad_weight<{CTYPES[dtype]}, {_dw_size(kernel_hw)}>"
    launch = Launch(kernel, (o, _check_grid_z(splits, "grad-weight"), 1), (POOL_BLOCK, 1, 1), params)
    if splits == 1:
        return Plan([launch])
    reduce = dict(b="partials", out="out", out_c=o, plane=1, splits=splits, total=o * kh * kw)
    return Plan([launch, _elementwise(f"conv_splitk_reduce<{CTYPES[dtype]}>", o * kh * kw, reduce)],
                {"partials": (splits * o * kh * kw, dtype)})


# --------------------------------------------------------------------------- pooling plans
AVG, LP, LP_GRAD_SCALE = 0, 1, 2   # avg_pool2d's op
POOL_V = 4                         # elements per thread along a row (pool.cu's POOL_V)


def _pow2_at_least(n: int) -> int:
    return 1 << max(0, n - 1).bit_length()


def _pool_launch(kernel: str, rows: int, cols: int, planes: int, params: dict) -> Launch:
    """pool.cu version 1: a block of POOL_BLOCK threads at most as (column chunks of POOL_V,
    rows, planes), sized to the problem so small planes still fill it, up to CUDA's 64 planes
    (a block of 64 threads: 32 resident blocks fill an SM); the kernels loop over rows and
    planes beyond the grid."""
    chunks = -(-cols // POOL_V)
    bx = min(32, _pow2_at_least(chunks))
    by = min(POOL_BLOCK // bx, _pow2_at_least(rows))
    bz = min(POOL_BLOCK // (bx * by), _pow2_at_least(planes), MAX_BLOCK[2])
    grid = (_blocks(chunks, bx), min(_blocks(rows, by), MAX_GRID_Z), min(_blocks(planes, bz), MAX_GRID_Z))
    return Launch(kernel, grid, (bx, by, bz), params)


def _global_launch(kernel: str, plane_len: int, planes: int, params: dict) -> Launch:
    """pool.cu version 4: lanes per plane (a power of two, about one 16-byte load each),
    POOL_BLOCK / lanes planes per block, at most CUDA's 64."""
    lanes = min(32, _pow2_at_least(max(1, plane_len // 8)))
    bz = min(POOL_BLOCK // lanes, _pow2_at_least(planes), MAX_BLOCK[2])
    return Launch(kernel, (1, 1, min(_blocks(planes, bz), MAX_GRID_Z)), (lanes, 1, bz), params)


def pool32(x_shape, out_hw, adaptive: bool) -> None:
    """The pooling kernels decode planes and adaptive windows in 32-bit arithmetic (64-bit
    division is a subroutine call on the GPU): fewer than 2^32 planes, and adaptive sizes
    with n * (out + 1) < 2^32."""
    n, c, h, w = x_shape
    if n * c >= 1 << 32:
        raise ValueError(f"pooling on the GPU takes fewer than 2^32 planes (N*C), got {n * c}")
    if adaptive and any(size * (out + 1) >= 1 << 32 for size, out in zip((h, w), out_hw)):
        raise ValueError(f"adaptive pooling of {(h, w)} to {tuple(out_hw)} on the GPU needs "
                         f"size * (output + 1) < 2^32 per axis")


def _pool_fields(x_shape, out_hw, spec: PoolSpec | None) -> dict:
    pool32(x_shape, out_hw, spec is None)
    n, c, h, w = x_shape
    fields = dict(n=n, c=c, h=h, w=w, out_h=out_hw[0], out_w=out_hw[1], adaptive=int(spec is None))
    if spec is not None:
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = spec.kernel_size, spec.stride, spec.padding, spec.dilation
        fields.update(kh=kh, kw=kw, sh=sh, sw=sw, ph=ph, pw=pw, dh=dh, dw=dw)
    return fields


def _out_hw(x_shape, spec: PoolSpec | None, out_hw):
    return tuple(out_hw) if spec is None else spec.output_shape(x_shape[2:])


def _forward_launch(kernel: str, x_shape, spec: PoolSpec | None, out_hw, params: dict) -> Launch:
    planes = x_shape[0] * x_shape[1]
    if spec is None and tuple(out_hw) == (1, 1):
        return _global_launch(kernel, x_shape[2] * x_shape[3], planes, params)
    return _pool_launch(kernel, out_hw[0], out_hw[1], planes, params)


def max_pool_plan(x_shape, x_strides, spec: PoolSpec | None, dtype: str, return_indices: bool,
                  out_hw=None) -> Plan:
    """Max pooling; ``spec=None`` with ``out_hw``: adaptive max pooling."""
    out_hw = _out_hw(x_shape, spec, out_hw)
    params = dict(x="x", y="out", idx="indices" if return_indices else None, x_stride=x_strides,
                  **_pool_fields(x_shape, out_hw, spec))
    return Plan([_forward_launch(f"max_pool2d<{CTYPES[dtype]}>", x_shape, spec, out_hw, params)])


def avg_pool_plan(x_shape, x_strides, spec: PoolSpec | None, dtype: str, count_include_pad=True,
                  divisor_override=None, out_hw=None, norm: float | None = None) -> Plan:
    """Average pooling (adaptive with ``spec=None``), or Lp pooling with ``norm``."""
    out_hw = _out_hw(x_shape, spec, out_hw)
    params = dict(x="x", y="out", x_stride=x_strides, op=AVG if norm is None else LP,
                  count_include_pad=int(count_include_pad or norm is not None),
                  divisor_override=divisor_override or 0, norm=norm or 0.0,
                  **_pool_fields(x_shape, out_hw, spec))
    return Plan([_forward_launch(f"avg_pool2d<{CTYPES[dtype]}>", x_shape, spec, out_hw, params)])


def _backward_launch(kernel: str, x_shape, params: dict) -> Launch:
    n, c, h, w = x_shape
    return _pool_launch(kernel, h, w, n * c, params)


def avg_pool_backward_plan(gy_shape, gy_strides, spec: PoolSpec | None, input_hw, dtype: str,
                           count_include_pad=True, divisor_override=None) -> Plan:
    x_shape = tuple(gy_shape[:2]) + tuple(input_hw)
    params = dict(gy="grad_out", y="out", g_stride=gy_strides,
                  count_include_pad=int(count_include_pad), divisor_override=divisor_override or 0,
                  **_pool_fields(x_shape, gy_shape[2:], spec))
    return Plan([_backward_launch(f"pool2d_backward<{CTYPES[dtype]}>", x_shape, params)])


def lp_pool_backward_plan(gy_shape, gy_strides, x_shape, x_strides, spec: PoolSpec, dtype: str,
                          norm: float) -> Plan:
    """The per-window scale of numpy_backend.lp_pool2d_backward into a workspace, then
    the average-pooling gather of it times p * x^(p-1)."""
    out_hw = tuple(gy_shape[2:])
    fields = _pool_fields(x_shape, out_hw, spec)
    scale = dict(x="x", gy="grad_out", y="scale", x_stride=x_strides, g_stride=gy_strides,
                 op=LP_GRAD_SCALE, count_include_pad=1, norm=norm, **fields)
    count = math.prod(gy_shape)
    contiguous = (out_hw[0] * out_hw[1] * x_shape[1], out_hw[0] * out_hw[1], out_hw[1], 1)
    gather = dict(x="x", gy="scale", y="out", x_stride=x_strides, g_stride=contiguous,
                  count_include_pad=1, lp_post=1, norm=norm, **fields)
    return Plan([_pool_launch(f"avg_pool2d<{CTYPES[dtype]}>", out_hw[0], out_hw[1],
                              x_shape[0] * x_shape[1], scale),
                 _backward_launch(f"pool2d_backward<{CTYPES[dtype]}>", x_shape, gather)],
                {"scale": (count, dtype)})


def max_pool_backward_plan(gy_shape, gy_strides, input_hw, spec: PoolSpec | None, dtype: str) -> Plan:
    """Max backward (``spec=None``: adaptive max): one gather, each input element visiting the
    windows that may hold it in closed form. ``indices`` must be contiguous; an index outside
    the input plane sets the device's error word ``"err"``."""
    x_shape = tuple(gy_shape[:2]) + tuple(input_hw)
    params = dict(gy="grad_out", idx="indices", err="err", y="out", g_stride=gy_strides,
                  **_pool_fields(x_shape, gy_shape[2:], spec))
    return Plan([_backward_launch(f"max_pool2d_backward<{CTYPES[dtype]}>", x_shape, params)])


# --------------------------------------------------------------------------- Numba plans
# The Numba twins take the struct as arguments: its pointer fields as device arrays, in the
# struct's order, then one tuple of its scalar fields in the struct's order (a 4-vector field
# fills 4 slots). ``scalar_slots`` says where each field starts, ``scalars`` packs the tuple.
# Numba runs each conv kernel in two index widths, as conv.cu: 32-bit unsigned offsets, and
# int64 ones from INDEX64_FROM elements on (the kernel name's last argument).
# Numba's CUDA simulator runs one OS thread per CUDA thread and pays for every syncthreads:
# few, wide blocks (32 threads of 2x4 outputs, a whole small reduction per k-tile) and a
# 32-thread grad-bias tree.
NUMBA_SIMULATOR_TILE = TileConfig("numba-sim", 8, 32, 32, tm=2, tn=4)
NUMBA_SIMULATOR_BLOCK = 32
# Numba's conv_gemm tiles, the last the generic one (int64 offsets): what compiles within
# 128 registers without spills (tests/test_numba_sm90.py). float32: 8 x 4 outputs per thread
# (128 x 64: 256 threads, 64 x 64: 128), so that FMAs are at least half of the k-tile loop;
# 32 x 128 (4 x 8, 128 threads) for 32-row outputs, which a 64-row tile fills half (58% FMAs,
# where 32 x 64's 4 x 4 gets 48%); 64 x 32 (8 x 4, 64 threads; 57%) for 32-column ends,
# such as the stem's grad-weight (147 tap columns: 0.92 filled, 64 columns 0.77; its 16-deep
# k-tile spills); float64 accumulators take twice the registers: 4 x 4
# (256 threads). k-tiles 16 deep where the registers allow (the loop's fixed costs over twice
# the FMAs: 128 x 64 65% -> 71% of it, 64 x 64 61% -> 67%); the generic 64 x 64 keeps 8 (its
# int64 instances spill at 16). Their forward FMA shares (the SASS hot loops of the 32-bit
# zero padding instances) x NUMBA_EFFICIENCY_PER_FMA_SHARE give the plan model's efficiencies.
_NUMBA_TALL = TileConfig("numba-128x64", 128, 64, 16, tm=8, tn=4)
_NUMBA_FLAT = TileConfig("numba-32x128", 32, 128, tm=4, tn=8)
_NUMBA_SQUARE_DEEP = TileConfig("numba-64x64x16", 64, 64, 16, tm=8, tn=4)
_NUMBA_SQUARE = TileConfig("numba-64x64", 64, 64, tm=8, tn=4)
_NUMBA_NARROW = TileConfig("numba-64x32", 64, 32, tm=8, tn=4)
_NUMBA_SQUARE_F64 = TileConfig("numba-64x64d", 64, 64, tm=4, tn=4)
NUMBA_TILES_FOR = {"float32": (_NUMBA_TALL, _NUMBA_FLAT, _NUMBA_SQUARE_DEEP, _NUMBA_NARROW,
                               _NUMBA_SQUARE),
                   "float64": (_NUMBA_SQUARE_F64,)}
NUMBA_EFFICIENCY_PER_FMA_SHARE = 1.12
TILE_EFFICIENCY.update({"numba-128x64": 0.79, "numba-32x128": 0.65, "numba-64x64x16": 0.75,
                        "numba-64x64": 0.69, "numba-64x32": 0.64, "numba-64x64d": 0.55,
                        "numba-sim": 1.0})


def scalar_slots(fields) -> dict[str, int]:
    """field name -> its first slot in the scalar tuple (pointer fields have none)."""
    slots, at = {}, 0
    for name, kind in fields:
        if kind != _PTR:
            slots[name] = at
            at += 4 if kind == _VEC4 else 1
    return slots


def pointer_names(fields) -> list[str]:
    return [name for name, kind in fields if kind == _PTR]


def scalars(fields, params: dict) -> tuple:
    """The scalar tuple of a Numba launch: ``params``' values (0 where absent) in struct order."""
    out = []
    for name, kind in fields:
        if kind == _PTR:
            continue
        if kind == _VEC4:
            out += [int(v) for v in params.get(name, (0,) * 4)]
        else:
            out.append(float(params.get(name, 0)) if kind == _F64 else int(params.get(name, 0)))
    return tuple(out)


def numba_gemm_kernel(tile: TileConfig, wgrad: bool, zero_pad: bool, wide: bool) -> str:
    """The Numba conv_gemm instance for ``tile``: reduction over taps (forward, grad-input) or
    over pixels (``wgrad``), zero padding's bounds only (``zero_pad``, as conv.cu's ZERO_PAD)
    or every padding mode, 32-bit or int64 (``wide``) offsets."""
    flags = (str(wgrad).lower(), str(zero_pad).lower(), "i64" if wide else "u32")
    return f"conv_gemm<{tile.name}, {', '.join(flags)}>"


def numba_direct_kernel(rows: int) -> str:
    """The Numba conv_direct instance for slices writing ``rows`` <= 4 rows."""
    return f"conv_direct<{rows}>"


def _numba_direct(rows: int, cols: int, pixel_rows: int, k: int, slices: int, dtype: str,
                  zero_pad: bool, wide: bool, simulator: bool):
    """(kernel, grid, block, choice) of conv_direct for a forward or grad-input whose slices
    write ``rows`` rows of ``cols`` columns in ``pixel_rows`` output rows, where it applies (as
    conv.cu's: zero padding, 32-bit offsets), else None."""
    if rows not in DIRECT_ROWS_USED or not zero_pad or wide:
        return None
    block = NUMBA_SIMULATOR_BLOCK if simulator else TILES[f"direct{rows}"].threads
    choice = choose_gemm(GemmShape(rows, cols, k, slices), (f"direct{rows}",),
                         np.dtype(dtype).itemsize)
    return (numba_direct_kernel(rows),
            (_blocks(direct_columns(cols, pixel_rows), block * DIRECT_PIXELS), 1, slices),
            (block, 1, 1), choice)


def contiguous_strides(shape) -> tuple[int, ...]:
    """Element strides of a C-contiguous array of ``shape``."""
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step)
        step *= size
    return tuple(reversed(strides))


def _numba_choice(shape: GemmShape, dtype: str, simulator: bool, zero_pad: bool, wide: bool,
                  allow_split: bool = False, sm_count: int = DEFAULT_SM_COUNT) -> GemmChoice:
    """The plan model's tile and split-K among the Numba tiles (other padding modes and int64
    offsets: the generic tile only)."""
    tiles = NUMBA_TILES_FOR[dtype]
    tiles = (NUMBA_SIMULATOR_TILE,) if simulator else tiles if zero_pad and not wide else tiles[-1:]
    return choose_gemm(shape, tiles, np.dtype(dtype).itemsize, sm_count, allow_split)


def numba_gemm_instances(dtype: str, simulator: bool = False
                         ) -> list[tuple[TileConfig, bool, bool, bool]]:
    """(tile, wgrad, zero_pad, wide) of every conv_gemm instance the Numba plans can launch:
    as gemm_kernel_names, zero padding with 32-bit offsets on every tile, the other padding
    modes and int64 offsets on the generic one only."""
    tiles = (NUMBA_SIMULATOR_TILE,) if simulator else NUMBA_TILES_FOR[dtype]
    return [(t, wgrad, zero_pad, wide) for t in tiles
            for zero_pad, wide in ((True, False),) + (
                ((False, False), (True, True), (False, True)) if t is tiles[-1] else ())
            for wgrad in (False, True)]


def _wide(*shapes) -> bool:
    """Whether a tensor of ``shapes`` (Numba's arrays are contiguous) needs int64 offsets."""
    return _needs_index64(*(math.prod(s) for s in shapes))


def _numba_elementwise(kernel: str, count: int, params: dict, simulator: bool) -> Launch:
    block = NUMBA_SIMULATOR_BLOCK if simulator else POOL_BLOCK
    return Launch(kernel, (_blocks(count, block), 1, 1), (block, 1, 1), params)


def _numba_gemm_plan(shape: GemmShape, params: dict, dtype: str, simulator: bool, zero_pad: bool,
                     wide: bool, wgrad: bool, out: str, reduce: dict, out_count: int, fills=(),
                     sm_count: int = DEFAULT_SM_COUNT) -> Plan:
    """_gemm_plan's Numba twin: conv_gemm on the plan model's Numba tile (``_numba_choice``),
    writing ``out`` or split-K partials (``_split_plan``)."""
    choice = _numba_choice(shape, dtype, simulator, zero_pad, wide, True, sm_count)
    t, splits = choice.tile, choice.splits
    params = dict(params, splits=splits, tiles_per_split=choice.steps_per_split,
                  out=out if splits == 1 else "partials")
    gemm = Launch(numba_gemm_kernel(t, wgrad, zero_pad, wide),
                  (_blocks(shape.cols, t.bn), _blocks(shape.rows, t.bm),
                   _check_grid_z(shape.slices * splits, "conv")), (t.threads, 1, 1), params)
    return _split_plan(choice, gemm, out, reduce, out_count, dtype,
                       functools.partial(_numba_elementwise, simulator=simulator), fills)


def numba_conv_forward_plan(x_shape, w_shape, spec: ConvSpec, dtype: str, has_bias: bool,
                            simulator: bool = False, relu: bool = False) -> Plan:
    """y (N, O, H_out, W_out) = conv2d(x, weight) + bias (then ReLU if ``relu``) on
    C-contiguous arrays: conv_gemm's forward, split-K as the plan model says (conv_direct's
    where a group writes at most 4 channels), one launch slice per group."""
    if is_depthwise(w_shape, spec.groups):
        return numba_depthwise_forward_plan(x_shape, w_shape, spec, dtype, has_bias, simulator,
                                            relu)
    gemm = forward_gemm(x_shape, contiguous_strides(x_shape), w_shape,
                        contiguous_strides(w_shape), spec, has_bias, relu)
    n, o, ho = x_shape[0], w_shape[0], gemm.params["out_h"]
    wide = _wide(x_shape, w_shape, (n, o, ho, gemm.params["out_w"]))
    zero_pad, shape = zero_padding(spec), gemm.shape
    _check_grid_z(shape.slices, "conv")
    direct = _numba_direct(shape.rows, shape.cols, n * ho, shape.k, shape.slices, dtype,
                           zero_pad, wide, simulator)
    if direct is not None:
        kernel, grid, block, choice = direct
        return Plan([Launch(kernel, grid, block, dict(gemm.params, out="out"))], choice=choice)
    return _numba_gemm_plan(shape, gemm.params, dtype, simulator, zero_pad, wide, False, "out",
                            gemm.reduce, gemm.out_count)


def numba_conv_grad_input_plan(gy_shape, w_shape, spec: ConvSpec, input_hw, dtype: str,
                               has_bias: bool, simulator: bool = False) -> Plan:
    """dx (N, C, H, W): conv_gemm's transposed conv (conv_direct's for at most 4 channels a
    group), one slice per group and stride phase that some tap reaches, split-K as the plan
    model says (conv_fill_bias first writes the bias, or zeros, to the rest, if any); other
    padding modes write the padded gradient, which conv_pad_adjoint folds back (bias added
    there, last)."""
    if is_depthwise(w_shape, spec.groups):
        return numba_depthwise_grad_input_plan(gy_shape, w_shape, spec, input_hw, dtype, has_bias,
                                               simulator)
    g = grad_input_slices(gy_shape, contiguous_strides(gy_shape), w_shape,
                          contiguous_strides(w_shape), spec, input_hw, has_bias)
    elementwise = functools.partial(_numba_elementwise, simulator=simulator)

    def gemm() -> Plan:
        _check_grid_z(g.shape.slices, "grad-input")
        wide = _wide(gy_shape, w_shape, (g.out_count,))
        # grad_out's bounds are zeros whatever the padding (conv_pad_adjoint folds the rest)
        direct = _numba_direct(g.shape.rows, g.shape.cols, g.pixel_rows, g.shape.k,
                               g.shape.slices, dtype, True, wide, simulator)
        if direct is None:
            return _numba_gemm_plan(g.shape, g.params, dtype, simulator, True, wide, False,
                                    g.params["out"], g.reduce, g.out_count, g.fills)
        kernel, grid, block, choice = direct
        return _split_plan(choice, Launch(kernel, grid, block, g.params), g.params["out"],
                           g.reduce, g.out_count, dtype, elementwise, g.fills)
    return _grad_input_plan(g, gemm, spec, input_hw, has_bias, dtype, elementwise)


def numba_conv_grad_weight_plan(gy_shape, x_shape, spec: ConvSpec, kernel_hw, dtype: str,
                                simulator: bool = False, sm_count: int = DEFAULT_SM_COUNT) -> Plan:
    """dW (O, C/G, kH, kW): conv_gemm's grad-weight (rows O/G, columns C/G x kH x kW, reduction
    batch x pixels in BK-deep steps), split-K as the plan model says, partials summed in split
    order by conv_splitk_reduce."""
    n, o, ho, wo = gy_shape
    _, c, h, w = x_shape
    groups = spec.groups
    if is_depthwise((o, c // groups), groups):
        return numba_depthwise_grad_weight_plan(gy_shape, x_shape, spec, kernel_hw, dtype,
                                                simulator, sm_count)
    gemm = grad_weight_gemm(gy_shape, contiguous_strides(gy_shape), x_shape,
                            contiguous_strides(x_shape), spec, kernel_hw)
    # the partials hold at most MAX_SPLITS copies of dW
    wide = _wide(gy_shape, x_shape, (min(MAX_SPLITS, n * ho * wo), o, gemm.shape.cols))
    return _numba_gemm_plan(gemm.shape, gemm.params, dtype, simulator, zero_padding(spec), wide,
                            True, "out", gemm.reduce, gemm.out_count, sm_count=sm_count)


def numba_conv_grad_bias_plan(gy_shape, dtype: str, simulator: bool = False) -> Plan:
    """db (O,): conv_grad_bias, a block per channel and a fixed tree of the block's size."""
    n, o, ho, wo = gy_shape
    block = NUMBA_SIMULATOR_BLOCK if simulator else POOL_BLOCK
    params = dict(a="grad_out", out="out", a_stride=contiguous_strides(gy_shape), batch=n,
                  out_c=o, q_h=ho, q_w=wo)
    return Plan([Launch("conv_grad_bias", (o, 1, 1), (block, 1, 1), params)])


def _numba_launch(launch: Launch, simulator: bool) -> Launch:
    """A launch of a CUDA plan as the Numba twin takes it: the kernel name without its dtype
    (``conv_depthwise<float, 3>`` -> ``conv_depthwise<3>``, ``conv_splitk_reduce<float>`` ->
    ``conv_splitk_reduce``); in the simulator, blocks of at most NUMBA_SIMULATOR_BLOCK threads
    for the conv kernels (conv_depthwise loops its rows by the grid, the others cover their
    elements anew; the pooling kernels keep theirs)."""
    name, _, args = launch.kernel.partition("<")
    args = args.rstrip(">").split(", ")[1:]
    kernel = f"{name}<{', '.join(args)}>" if args else name
    grid, block = launch.grid, launch.block
    if simulator and name == "conv_depthwise":
        block = (block[0], max(1, min(block[1], NUMBA_SIMULATOR_BLOCK // block[0])), 1)
    elif simulator and name.startswith("conv_"):
        block = (NUMBA_SIMULATOR_BLOCK, 1, 1)
        if name != "conv_depthwise_grad_weight":  # one thread per element
            grid = (_blocks(grid[0] * launch.block[0], NUMBA_SIMULATOR_BLOCK), 1, 1)
    return Launch(kernel, grid, block, launch.params)


def numba_plan(cuda_plan: Plan, simulator: bool = False) -> Plan:
    """A CUDA plan (pooling, depthwise) as the Numba twins take it (``_numba_launch``)."""
    return Plan([_numba_launch(step, simulator) for step in cuda_plan.launches],
                cuda_plan.workspaces, cuda_plan.choice)


def numba_depthwise_forward_plan(x_shape, w_shape, spec: ConvSpec, dtype: str, has_bias: bool,
                                 simulator: bool = False, relu: bool = False) -> Plan:
    """depthwise_forward_plan on C-contiguous arrays, for depthwise_numba's conv_depthwise."""
    return numba_plan(depthwise_forward_plan(x_shape, contiguous_strides(x_shape), w_shape,
                                              contiguous_strides(w_shape), spec, dtype, has_bias,
                                              relu), simulator)


def numba_depthwise_grad_input_plan(gy_shape, w_shape, spec: ConvSpec, input_hw, dtype: str,
                                    has_bias: bool, simulator: bool = False) -> Plan:
    """depthwise_grad_input_plan on C-contiguous arrays (then conv_pad_adjoint)."""
    return numba_plan(depthwise_grad_input_plan(gy_shape, contiguous_strides(gy_shape), w_shape,
                                                 contiguous_strides(w_shape), spec,
                                                 tuple(input_hw), dtype, has_bias), simulator)


def numba_depthwise_grad_weight_plan(gy_shape, x_shape, spec: ConvSpec, kernel_hw, dtype: str,
                                     simulator: bool = False,
                                     sm_count: int = DEFAULT_SM_COUNT) -> Plan:
    """depthwise_grad_weight_plan on C-contiguous arrays (then conv_splitk_reduce)."""
    return numba_plan(depthwise_grad_weight_plan(gy_shape, contiguous_strides(gy_shape), x_shape,
                                                  contiguous_strides(x_shape), spec,
                                                  tuple(kernel_hw), dtype, sm_count), simulator)


# --------------------------------------------------------------------------- layers (trainer)
# The fused kernels of kernels/layers.cu. Every tensor is contiguous; the pointer fields name
# the buffers of gpuconv.nn's layers ("x", "y", "gamma", ...).
def batch_norm2d_forward_plan(x_shape, dtype: str, training: bool, momentum: float,
                              epsilon: float, relu: bool = False) -> Plan:
    """One block per channel: batch (training) or running statistics, y (then ReLU if
    ``relu``), running update."""
    n, c, h, w = x_shape
    params = dict(x="x", gamma="gamma", beta="beta", y="y", running_mean="running_mean",
                  running_var="running_var", saved="saved" if training else None, n=n, c=c,
                  hw=h * w, training=int(training), momentum=momentum, epsilon=epsilon,
                  relu=int(relu))
    return Plan([Launch(f"batch_norm2d_forward<{CTYPES[dtype]}>", (c, 1, 1), (LAYER_BLOCK, 1, 1),
                        params)])


def batch_norm2d_backward_plan(x_shape, dtype: str, need_input_grad: bool,
                               relu: bool = False) -> Plan:
    """One block per channel; with a fused ``relu``, grad_out masked by the forward's output
    ("relu_y") > 0 first."""
    n, c, h, w = x_shape
    params = dict(x="x", gy="grad_out", gamma="gamma", saved="saved",
                  relu_y="relu_y" if relu else None,
                  y="grad_x" if need_input_grad else None, grad_gamma="grad_gamma",
                  grad_beta="grad_beta", n=n, c=c, hw=h * w)
    return Plan([Launch(f"batch_norm2d_backward<{CTYPES[dtype]}>", (c, 1, 1),
                        (LAYER_BLOCK, 1, 1), params)])


def softmax_cross_entropy_plan(rows: int, classes: int, dtype: str) -> Plan:
    """One block: every row's loss gradient, the batch's loss sum and correct count added to
    ``totals`` in a fixed order."""
    params = dict(x="logits", gy="labels", y="grad", totals="totals", n=rows, c=classes)
    return Plan([Launch(f"softmax_cross_entropy<{CTYPES[dtype]}>", (1, 1, 1), (LAYER_BLOCK, 1, 1),
                        params)])


def relu_backward_plan(count: int, dtype: str) -> Plan:
    """One element per thread: grad_x = grad_out * (y > 0)."""
    params = dict(x="grad_out", gy="y", y="grad_x", n=count)
    return Plan([Launch(f"relu_backward<{CTYPES[dtype]}>", (_blocks(count, LAYER_BLOCK), 1, 1),
                        (LAYER_BLOCK, 1, 1), params)])


def dropout_plan(count: int, dtype: str, threshold: int, scale: float, stream: int) -> Plan:
    """Four elements per thread (one Philox call); ``seed`` is a device int64 [key, step]."""
    params = dict(x="x", y="y", seed="seed", n=count, threshold=threshold, scale=scale,
                  stream=stream)
    return Plan([Launch(f"dropout<{CTYPES[dtype]}>", (_blocks(count, 4 * LAYER_BLOCK), 1, 1),
                        (LAYER_BLOCK, 1, 1), params)])

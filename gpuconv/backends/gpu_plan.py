"""Launch planning for both GPU backends, in pure Python (no CuPy, no Numba, no driver).

One place says what is launched:

- ``kernel_names()``: every kernel the CuPy backend compiles, as NVRTC name expressions (the
  source and its compile options live in ``cuda_source``).
- ``CONV_PARAMS`` / ``POOL_PARAMS``: NumPy structured dtypes laid out as the ``ConvParams`` /
  ``PoolParams`` structs of common.cuh (every field 8 bytes, so no padding); a launch passes
  one of them by value (CuPy passes a size-1 NumPy array by value).
- ``*_plan`` functions: a ``Plan`` (launches with grid, block and struct fields, and the
  workspaces they need) from shapes, strides and specs. Pointer fields name buffers (``"x"``,
  ``"out"``, a workspace) that the executor resolves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from gpuconv.shapes import ConvSpec, PoolSpec

CTYPES = {"float32": "float", "float64": "double"}
PAD_MODES = {"zeros": 0, "reflect": 1, "replicate": 2, "circular": 3}
POOL_BLOCK = 256          # threads of every elementwise / gather kernel
MAX_GRID_Z = 65535
MAX_SPLITS = 64           # grad-weight split-K
SPLIT_WORKSPACE_BYTES = 256 << 20
DEFAULT_SM_COUNT = 132    # H100 SXM; the runtime passes the device's own count


# --------------------------------------------------------------------------- tiles
@dataclass(frozen=True)
class TileConfig:
    """An implicit-GEMM block tile: BM rows x BN columns, BK reduction per stage, TM x TN
    outputs per thread (CUDA cores), or a WMMA tile (``tf32``)."""

    name: str
    bm: int
    bn: int
    bk: int
    tm: int
    tn: int
    threads: int
    tf32: bool = False

    def smem_bytes(self, itemsize: int) -> int:
        """Static shared memory: two stages of A and B (rows padded by 4), and the WMMA
        epilogue tile."""
        stages = 2 * self.bk * ((self.bm + 4) + (self.bn + 4)) * itemsize
        return stages + (self.bm * (self.bn + 4) * itemsize if self.tf32 else 0)

    def vec_ok(self, itemsize: int) -> bool:
        """Whether the 16-byte B-tile path covers the tile: BN*BK/threads >= 16/itemsize."""
        return self.bn * self.bk // self.threads >= 16 // itemsize

    def kernel(self, ctype: str, wgrad: bool) -> str:
        flag = "true" if wgrad else "false"
        if self.tf32:
            return f"conv_gemm_tf32<{flag}>"
        return f"conv_gemm<{ctype}, {self.bm}, {self.bn}, {self.bk}, {self.tm}, {self.tn}, {flag}>"


TILES = {
    "large": TileConfig("large", 128, 128, 8, 8, 8, 256),
    "medium": TileConfig("medium", 64, 64, 8, 4, 4, 256),
    "small": TileConfig("small", 32, 32, 8, 2, 2, 256),
}
TF32_TILE = TileConfig("tf32", 64, 64, 16, 0, 0, 128, tf32=True)
# float64 has twice the registers per accumulator: 8 x 8 would spill.
TILES_FOR = {"float32": ("large", "medium", "small"), "float64": ("medium", "small")}


def choose_tile(rows: int, cols: int, dtype: str) -> TileConfig:
    """Heuristic tile for a GEMM of ``rows`` x ``cols`` (autotune may override it): the largest
    tile whose rows are mostly used and that still leaves a few blocks per SM."""
    names = TILES_FOR[dtype]
    for name in names[:-1]:
        t = TILES[name]
        if rows >= 0.75 * t.bm and cols >= 8 * t.bn:
            return t
    return TILES[names[-1]]


def kernel_names() -> list[str]:
    """Every kernel the backend can launch, as NVRTC name expressions."""
    names = []
    for dtype, ctype in CTYPES.items():
        for tile in TILES_FOR[dtype]:
            names += [TILES[tile].kernel(ctype, wgrad) for wgrad in (False, True)]
        names += [f"{k}<{ctype}>" for k in ("conv_direct", "conv_splitk_reduce", "conv_grad_bias",
                                           "conv_pad_adjoint", "max_pool2d", "avg_pool2d",
                                           "pool2d_backward")]
    names += [TF32_TILE.kernel("float", wgrad) for wgrad in (False, True)]
    return names + ["max_index_bounds", "max_index_members"]


# --------------------------------------------------------------------------- parameter structs
def _struct(fields: list[tuple[str, str]]) -> np.dtype:
    return np.dtype([(name, kind) if kind != "4" else (name, "<i8", (4,)) for name, kind in fields])


_PTR, _I64, _F64, _VEC4 = "<u8", "<i8", "<f8", "4"
CONV_FIELDS = ([(n, _PTR) for n in ("a", "b", "bias", "out")]
               + [("a_stride", _VEC4), ("b_stride", _VEC4)]
               + [(n, _I64) for n in ("batch", "b_h", "b_w", "out_c", "out_h", "out_w", "groups",
                                      "m", "kc", "kh", "kw", "sh", "sw", "dh", "dw", "pt", "pl",
                                      "q_h", "q_w", "lo_h", "lo_w", "len_h", "len_w", "mode",
                                      "transposed", "splits", "tiles_per_split", "vec_b")])
POOL_FIELDS = ([(n, _PTR) for n in ("x", "gy", "aux", "y", "idx")]
               + [("x_stride", _VEC4), ("g_stride", _VEC4)]
               + [(n, _I64) for n in ("n", "c", "h", "w", "out_h", "out_w", "kh", "kw", "sh", "sw",
                                      "ph", "pw", "dh", "dw", "adaptive", "op", "count_include_pad",
                                      "divisor_override", "lp_post")]
               + [("norm", _F64)])
CONV_PARAMS = _struct(CONV_FIELDS)
POOL_PARAMS = _struct(POOL_FIELDS)
POINTER_FIELDS = {name for name, kind in CONV_FIELDS + POOL_FIELDS if kind == _PTR}


def pack(kernel: str, params: dict, pointer) -> np.ndarray:
    """The size-1 struct array for ``kernel``'s launch; ``pointer(name)`` resolves the buffer
    names of pointer fields (None stays a null pointer)."""
    dtype = POOL_PARAMS if is_pool_kernel(kernel) else CONV_PARAMS
    out = np.zeros(1, dtype=dtype)
    for name, value in params.items():
        out[name] = (0 if value is None else pointer(value)) if name in POINTER_FIELDS else value
    return out


def is_pool_kernel(kernel: str) -> bool:
    return not kernel.startswith("conv_")


# --------------------------------------------------------------------------- plans
@dataclass(frozen=True)
class Launch:
    kernel: str
    grid: tuple[int, int, int]
    block: tuple[int, int, int]
    params: dict


@dataclass
class Plan:
    launches: list[Launch]
    workspaces: dict[str, tuple[int, str]] = field(default_factory=dict)  # name -> (count, dtype)


def _blocks(count: int, per_block: int) -> int:
    return max(1, -(-count // per_block))


def _elementwise(kernel: str, count: int, params: dict) -> Launch:
    return Launch(kernel, (_blocks(count, POOL_BLOCK), 1, 1), (POOL_BLOCK, 1, 1), params)


def _check_grid_z(z: int, what: str) -> int:
    if z > MAX_GRID_Z:
        raise ValueError(f"{what} needs {z} launch slices, more than CUDA's {MAX_GRID_Z}")
    return z


def _gemm_tile(rows: int, cols: int, dtype: str, precision: str, tile: str | None) -> TileConfig:
    if precision == "tf32" and dtype == "float32":
        return TF32_TILE
    return TILES[tile] if tile is not None else choose_tile(rows, cols, dtype)


def _conv_common(spec: ConvSpec, kernel_hw) -> dict:
    (pt, _), (pl, _) = spec.padding
    (sh, sw), (dh, dw) = spec.stride, spec.dilation
    return dict(kh=kernel_hw[0], kw=kernel_hw[1], sh=sh, sw=sw, dh=dh, dw=dw, pt=pt, pl=pl,
                groups=spec.groups, splits=1)


def is_direct(weight_shape, groups: int) -> bool:
    """Depthwise / channel-multiplier convs (one input channel per group) run conv_direct."""
    return weight_shape[1] == 1 and groups > 1


def conv_forward_plan(x_shape, x_strides, w_shape, w_strides, spec: ConvSpec, dtype: str,
                      has_bias: bool, precision: str = "ieee", tile: str | None = None,
                      vec_aligned: bool = False) -> Plan:
    """y (N, O, H_out, W_out) = conv2d(x, weight) + bias. ``vec_aligned``: x's data pointer is
    16-byte aligned (the executor knows)."""
    n, _, h, w = x_shape
    o, cg, kh, kw = w_shape
    ho, wo = spec.output_shape((h, w), (kh, kw))
    params = dict(a="weight", b="x", bias="bias" if has_bias else None, out="out",
                  a_stride=w_strides, b_stride=x_strides, batch=n, b_h=h, b_w=w, out_c=o, out_h=ho,
                  out_w=wo, m=o // spec.groups, kc=cg, q_h=ho, q_w=wo,
                  mode=PAD_MODES[spec.padding_mode], **_conv_common(spec, (kh, kw)))
    cols, z = n * ho * wo, spec.groups
    if is_direct(w_shape, spec.groups):
        kernel = f"conv_direct<{CTYPES[dtype]}>"  # a thread per pixel, looping over the batch
        return Plan([Launch(kernel, (_blocks(ho * wo, POOL_BLOCK), o // spec.groups,
                                     _check_grid_z(z, "conv")), (POOL_BLOCK, 1, 1), params)])
    t = _gemm_tile(o // spec.groups, cols, dtype, precision, tile)
    params["vec_b"] = int(vec_aligned and _vec_b_ok(t, dtype, x_shape, x_strides, (kh, kw), spec))
    return Plan([Launch(t.kernel(CTYPES[dtype], False),
                        (_blocks(cols, t.bn), _blocks(o // spec.groups, t.bm), _check_grid_z(z, "conv")),
                        (t.threads, 1, 1), params)])


def _vec_b_ok(t: TileConfig, dtype: str, x_shape, x_strides, kernel_hw, spec: ConvSpec) -> bool:
    """16-byte B loads: a 1x1 unpadded stride-1 conv over (H, W)-contiguous planes whose
    vectors never straddle two images."""
    vec = 16 // np.dtype(dtype).itemsize
    n, c, h, w = x_shape
    return (t.vec_ok(np.dtype(dtype).itemsize) and tuple(kernel_hw) == (1, 1)
            and spec.stride == (1, 1) and spec.padding == ((0, 0), (0, 0))
            and x_strides[3] == 1 and x_strides[2] == w and (h * w) % vec == 0
            and x_strides[0] % vec == 0 and x_strides[1] % vec == 0)


def conv_grad_input_plan(gy_shape, gy_strides, w_shape, w_strides, spec: ConvSpec, input_hw,
                         dtype: str, has_bias: bool, precision: str = "ieee",
                         tile: str | None = None) -> Plan:
    """dx (N, C, H, W): the transposed conv of grad_out, one slice per group and stride phase.
    Under reflect / replicate / circular padding the slices write the padded gradient, which
    conv_pad_adjoint folds back onto the input."""
    n, o, ho, wo = gy_shape
    _, cg, kh, kw = w_shape
    groups, c = spec.groups, cg * spec.groups
    (pt, pb), (pl, pr) = spec.padding
    h, w = input_hw
    zeros = spec.padding_mode == "zeros"
    lo_h, lo_w, len_h, len_w = (pt, pl, h, w) if zeros else (0, 0, h + pt + pb, w + pl + pr)
    params = dict(a="weight", b="grad_out", bias="bias" if has_bias and zeros else None,
                  out="out" if zeros else "padded", a_stride=w_strides, b_stride=gy_strides,
                  batch=n, b_h=ho, b_w=wo, out_c=c, out_h=len_h, out_w=len_w, m=cg, kc=o // groups,
                  q_h=ho, q_w=wo, lo_h=lo_h, lo_w=lo_w, len_h=len_h, len_w=len_w, mode=0,
                  transposed=1, **_conv_common(spec, (kh, kw)))
    sh, sw = spec.stride
    pixels = -(-len_h // sh) * -(-len_w // sw)  # of the largest phase
    cols = n * pixels
    z = _check_grid_z(groups * sh * sw, "grad-input")
    if is_direct(w_shape, groups):
        launch = Launch(f"conv_direct<{CTYPES[dtype]}>", (_blocks(pixels, POOL_BLOCK), cg, z),
                        (POOL_BLOCK, 1, 1), params)
    else:
        t = _gemm_tile(cg, cols, dtype, precision, tile)
        launch = Launch(t.kernel(CTYPES[dtype], False), (_blocks(cols, t.bn), _blocks(cg, t.bm), z),
                        (t.threads, 1, 1), params)
    if zeros:
        return Plan([launch])
    adjoint = dict(b="padded", bias="bias" if has_bias else None, out="out", batch=n, out_c=c,
                   out_h=h, out_w=w, len_h=len_h, len_w=len_w, pt=pt, pl=pl,
                   mode=PAD_MODES[spec.padding_mode])
    return Plan([launch, _elementwise(f"conv_pad_adjoint<{CTYPES[dtype]}>", n * c * h * w, adjoint)],
                {"padded": (n * c * len_h * len_w, dtype)})


def split_k(blocks: int, tiles: int, groups: int, partial_bytes: int,
            sm_count: int = DEFAULT_SM_COUNT) -> tuple[int, int]:
    """(splits, tiles per split) for grad-weight: enough blocks for two waves, no empty split,
    the grid's z limit and a bounded partials workspace."""
    want = -(-2 * sm_count // max(1, blocks))
    limit = min(tiles, MAX_SPLITS, MAX_GRID_Z // groups,
                max(1, SPLIT_WORKSPACE_BYTES // max(1, partial_bytes)))
    splits = max(1, min(want, limit))
    per_split = -(-tiles // splits)
    if per_split == 0:  # an empty batch: one split that writes zeros
        return 1, 0
    return -(-tiles // per_split), per_split


def conv_grad_weight_plan(gy_shape, gy_strides, x_shape, x_strides, spec: ConvSpec, kernel_hw,
                          dtype: str, precision: str = "ieee", tile: str | None = None,
                          sm_count: int = DEFAULT_SM_COUNT) -> Plan:
    """dW (O, C/G, kH, kW): a GEMM of grad_out (rows O/G, reduction batch x pixels) with the
    gathered input (columns C/G x kH x kW), split-K partials summed by conv_splitk_reduce."""
    n, o, ho, wo = gy_shape
    _, c, h, w = x_shape
    groups = spec.groups
    cg, (kh, kw) = c // groups, kernel_hw
    taps, rows = cg * kh * kw, o // groups
    t = _gemm_tile(rows, taps, dtype, precision, tile)
    tiles = n * -(-(ho * wo) // t.bk)
    blocks = _blocks(taps, t.bn) * _blocks(rows, t.bm) * groups
    splits, per_split = split_k(blocks, tiles, groups, o * taps * np.dtype(dtype).itemsize, sm_count)
    params = dict(a="grad_out", b="x", out="out" if splits == 1 else "partials",
                  a_stride=gy_strides, b_stride=x_strides, batch=n, b_h=h, b_w=w, out_c=o, m=rows,
                  kc=cg, q_h=ho, q_w=wo, mode=PAD_MODES[spec.padding_mode],
                  **_conv_common(spec, kernel_hw))
    params.update(splits=splits, tiles_per_split=per_split)
    gemm = Launch(t.kernel(CTYPES[dtype], True),
                  (_blocks(taps, t.bn), _blocks(rows, t.bm), _check_grid_z(groups * splits, "grad-weight")),
                  (t.threads, 1, 1), params)
    if splits == 1:
        return Plan([gemm])
    reduce = dict(b="partials", out="out", out_c=o, kc=cg, kh=kh, kw=kw, splits=splits)
    return Plan([gemm, _elementwise(f"conv_splitk_reduce<{CTYPES[dtype]}>", o * taps, reduce)],
                {"partials": (splits * o * taps, dtype)})


def conv_grad_bias_plan(gy_shape, gy_strides, dtype: str) -> Plan:
    n, o, ho, wo = gy_shape
    params = dict(a="grad_out", out="out", a_stride=gy_strides, batch=n, out_c=o, q_h=ho, q_w=wo)
    return Plan([Launch(f"conv_grad_bias<{CTYPES[dtype]}>", (o, 1, 1), (POOL_BLOCK, 1, 1), params)])


# --------------------------------------------------------------------------- pooling plans
AVG, LP, LP_GRAD_SCALE = 0, 1, 2   # avg_pool2d's op
BWD_AVG, BWD_MAX = 0, 1            # pool2d_backward's op


def _pool_fields(x_shape, out_hw, spec: PoolSpec | None) -> dict:
    n, c, h, w = x_shape
    fields = dict(n=n, c=c, h=h, w=w, out_h=out_hw[0], out_w=out_hw[1], adaptive=int(spec is None))
    if spec is not None:
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = spec.kernel_size, spec.stride, spec.padding, spec.dilation
        fields.update(kh=kh, kw=kw, sh=sh, sw=sw, ph=ph, pw=pw, dh=dh, dw=dw)
    return fields


def _out_hw(x_shape, spec: PoolSpec | None, out_hw):
    return tuple(out_hw) if spec is None else spec.output_shape(x_shape[2:])


def max_pool_plan(x_shape, x_strides, spec: PoolSpec | None, dtype: str, return_indices: bool,
                  out_hw=None) -> Plan:
    """Max pooling; ``spec=None`` with ``out_hw``: adaptive max pooling."""
    out_hw = _out_hw(x_shape, spec, out_hw)
    params = dict(x="x", y="out", idx="indices" if return_indices else None, x_stride=x_strides,
                  **_pool_fields(x_shape, out_hw, spec))
    count = x_shape[0] * x_shape[1] * out_hw[0] * out_hw[1]
    return Plan([_elementwise(f"max_pool2d<{CTYPES[dtype]}>", count, params)])


def avg_pool_plan(x_shape, x_strides, spec: PoolSpec | None, dtype: str, count_include_pad=True,
                  divisor_override=None, out_hw=None, norm: float | None = None) -> Plan:
    """Average pooling (adaptive with ``spec=None``), or Lp pooling with ``norm``."""
    out_hw = _out_hw(x_shape, spec, out_hw)
    params = dict(x="x", y="out", x_stride=x_strides, op=AVG if norm is None else LP,
                  count_include_pad=int(count_include_pad or norm is not None),
                  divisor_override=divisor_override or 0, norm=norm or 0.0,
                  **_pool_fields(x_shape, out_hw, spec))
    count = x_shape[0] * x_shape[1] * out_hw[0] * out_hw[1]
    return Plan([_elementwise(f"avg_pool2d<{CTYPES[dtype]}>", count, params)])


def avg_pool_backward_plan(gy_shape, gy_strides, spec: PoolSpec | None, input_hw, dtype: str,
                           count_include_pad=True, divisor_override=None) -> Plan:
    x_shape = tuple(gy_shape[:2]) + tuple(input_hw)
    params = dict(gy="grad_out", y="out", g_stride=gy_strides, op=BWD_AVG,
                  count_include_pad=int(count_include_pad), divisor_override=divisor_override or 0,
                  **_pool_fields(x_shape, gy_shape[2:], spec))
    return Plan([_elementwise(f"pool2d_backward<{CTYPES[dtype]}>", math.prod(x_shape), params)])


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
    gather = dict(x="x", gy="scale", y="out", x_stride=x_strides, g_stride=contiguous, op=BWD_AVG,
                  count_include_pad=1, lp_post=1, norm=norm, **fields)
    return Plan([_elementwise(f"avg_pool2d<{CTYPES[dtype]}>", count, scale),
                 _elementwise(f"pool2d_backward<{CTYPES[dtype]}>", math.prod(x_shape), gather)],
                {"scale": (count, dtype)})


def max_pool_backward_plan(gy_shape, gy_strides, input_hw, dtype: str) -> Plan:
    """Max (and adaptive max) backward from the indices alone: candidate-window tables
    (max_index_bounds, max_index_members), then the gather. ``indices`` must be contiguous."""
    n, c, ho, wo = gy_shape
    h, w = input_hw
    params = dict(gy="grad_out", aux="tables", idx="indices", y="out", g_stride=gy_strides,
                  n=n, c=c, h=h, w=w, out_h=ho, out_w=wo, op=BWD_MAX)
    return Plan([Launch("max_index_bounds", (ho + wo, 1, 1), (POOL_BLOCK, 1, 1), params),
                 _elementwise("max_index_members", h + w, params),
                 _elementwise(f"pool2d_backward<{CTYPES[dtype]}>", n * c * h * w, params)],
                {"tables": (2 * (ho + wo + h + w), "int64")})

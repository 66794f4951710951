"""CuPy backend: every 2-D kernel of ``gpuconv.backends.KERNELS`` as raw CUDA C++ kernels
(``kernels/conv.cu``, ``kernels/depthwise.cu``, ``kernels/pool.cu``; the trainer's layers:
``kernels/layers.cu`` through ``cupy_layers``), compiled once per process into one
``cupy.RawModule`` and launched on the caller's current device and stream; the wgmma tiles'
kernels, on Hopper, from a second module built for sm_90a (``_sm90a_module``).

Checked against the NumPy backend: on the CPU through the CUDA C host emulation
(tests/test_cupy_host.py runs these very functions with a NumPy executor), on a GPU through
the golden suite (tests/test_golden.py).

What runs where is planned in pure Python (``gpu_plan``): this module only allocates the
outputs and workspaces a plan names, packs each launch's parameter struct and launches it.
The pooling entry points are both GPU backends' (``gpu_pooling``), bound to this executor.
Tile choice follows ``gpu_plan.choose_gemm`` unless autotuning is on (``set_autotune(True)``,
or ``GPUCONV_AUTOTUNE=1`` when a call signature is first prepared; see ``autotune``) or a tile
is forced (``autotune.forced_tile``: the bench's tile sweep).

Host overhead (issue 13): everything that depends only on a call's signature (shapes,
strides, dtypes, spec, precision, device, autotune switches) is prepared once: the plan, the
RawKernel handles, grids and each launch's parameter struct with every scalar filled in. A
call allocates its outputs, patches their pointers into a copy of the struct and launches:
no planning, no device attribute reads, no host transfer, no synchronisation. A conv's
backward (``conv2d_backward``: its grad-input, grad-weight and grad-bias) is prepared as one
call, the parts sharing their workspaces. Bad max-pool indices set a device-side error word
instead of a blocking check (``gpuconv.check_errors``).
"""

from __future__ import annotations

import contextlib
import operator
import struct
import sys
from dataclasses import dataclass, replace

import numpy as np

from gpuconv import backends
from gpuconv._files import atomic_write
from gpuconv.backends import autotune, cuda_source, gpu_plan as plan, gpu_pooling, signature
from gpuconv.backends.autotune import set_autotune  # noqa: F401  (public switch)
from gpuconv.shapes import ConvSpec

NAME = "cupy"
PRECISIONS = plan.PRECISIONS  # "tf32", "tf32x3": mma.sync tensor cores, float32 accumulation
LIFTS_1D = True  # takes a 1-D op's arrays as they are (signature.lift)


class CupyExecutor:
    """Runs plans with CuPy: one RawModule per process (CuPy loads it once per device), one
    RawKernel handle per kernel, and the prepared launches of every call signature met."""

    def __init__(self):
        import cupy
        self.xp = cupy
        self.current_device = cupy.cuda.runtime.getDevice  # a C function: no Python frame
        self.pointer = operator.attrgetter("data.ptr")
        self.prepared: dict[tuple, _Prepared] = {}  # call signature -> its launches
        self.error_words: dict[int, object] = {}    # device -> its int64 error word
        self._module = None
        self._wgmma = None  # (RawModule, {name expression: mangled name})
        self._options = ()
        self._functions: dict[str, object] = {}
        self._sm_counts: dict[int, int] = {}

    def _get_module(self):
        if self._module is None:
            code, self._options, names = cuda_source.module_source()
            self._module = self.xp.RawModule(code=code, options=self._options,
                                             name_expressions=names)
        return self._module

    @property
    def tensor_cores(self) -> bool:
        """mma.sync TF32 needs compute capability 8.0 (Ampere) or newer."""
        return int(self.xp.cuda.Device().compute_capability) >= 80

    @property
    def wgmma(self) -> bool:
        """wgmma needs compute capability 9.0 exactly (sm_90a code runs on Hopper alone)."""
        return self.xp.cuda.Device().compute_capability == "90"

    def _get_wgmma_module(self):
        """The wgmma kernels' module (cuda_source.wgmma_source), built for sm_90a. CuPy's
        compiler takes numeric architectures only, so NVRTC builds it here (once per source
        text: the cubin and its kernels' mangled names are kept under the autotune cache
        directory), and CuPy loads the cubin as a RawModule."""
        if self._wgmma is None:
            if not self.wgmma:
                raise RuntimeError("the wgmma tiles need a Hopper GPU (compute capability 9.0)")
            self._wgmma = _sm90a_module(self.xp)
        return self._wgmma

    def function(self, kernel: str):
        """The RawKernel of ``kernel``, fetched once (it loads itself on each device); called as
        ``f(grid, block, (params,))``, a size-1 NumPy struct passed by value."""
        if kernel not in self._functions:
            if kernel.startswith("conv_gemm_wgmma"):
                module, mangled = self._get_wgmma_module()
                self._functions[kernel] = module.get_function(mangled[kernel])
            else:
                self._functions[kernel] = self._get_module().get_function(kernel)
        return self._functions[kernel]

    def elementwise_kernel(self, in_params: str, out_params: str, operation: str, name: str):
        """A cupy.ElementwiseKernel (CuPy compiles it per dtype and device at its first call)."""
        return self.xp.ElementwiseKernel(in_params, out_params, operation, name)

    def sm_count(self) -> int:
        device = self.current_device()
        if device not in self._sm_counts:
            self._sm_counts[device] = self.xp.cuda.Device(device).attributes["MultiProcessorCount"]
        return self._sm_counts[device]

    def device_name(self) -> str:
        props = self.xp.cuda.runtime.getDeviceProperties(self.current_device())
        return props["name"].decode()

    def time_ms(self, run) -> float:
        """Mean time of ``run`` over a few repetitions after a warm-up, by CUDA events."""
        run()
        start, end = self.xp.cuda.Event(), self.xp.cuda.Event()
        start.record()
        for _ in range(3):
            run()
        end.record()
        end.synchronize()
        return self.xp.cuda.get_elapsed_time(start, end) / 3


def _sm90a_module(cupy):
    """(RawModule, {name expression: mangled name}) of cuda_source.wgmma_source compiled by
    NVRTC for sm_90a, the cubin cached on disk by a hash of the source, options and NVRTC
    version."""
    import hashlib
    import json

    from cupy_backends.cuda.libs import nvrtc

    code, options, names = cuda_source.wgmma_source()
    options = (*options, f"-arch={cuda_source.WGMMA_ARCH}")
    stamp = repr((code, options, nvrtc.getVersion())).encode()
    folder = autotune.cache_dir() / "wgmma"
    cubin = folder / f"{hashlib.sha256(stamp).hexdigest()[:24]}.cubin"
    index = cubin.with_suffix(".json")
    if not (cubin.exists() and index.exists()):
        program = nvrtc.createProgram(code, "gpuconv_wgmma.cu", (), ())
        try:
            for name in names:
                nvrtc.addNameExpression(program, name)
            try:
                nvrtc.compileProgram(program, list(options))
            except nvrtc.NVRTCError as exc:
                raise RuntimeError(f"NVRTC could not build the wgmma kernels:\n"
                                   f"{nvrtc.getProgramLog(program)}") from exc
            binary = nvrtc.getCUBIN(program)
            mangled = {name: nvrtc.getLoweredName(program, name) for name in names}
        finally:
            nvrtc.destroyProgram(program)
        for path, data in ((cubin, binary), (index, json.dumps(mangled).encode())):
            atomic_write(path, lambda f, data=data: f.write(data))  # whole files only
    return cupy.RawModule(path=str(cubin)), json.loads(index.read_text())


_EXECUTOR = None


def _executor():
    global _EXECUTOR
    if _EXECUTOR is None:
        _EXECUTOR = CupyExecutor()
    return _EXECUTOR


# --------------------------------------------------------------------------- array helpers
def from_foreign(array):
    """Another library's CUDA array as a CuPy array, without a copy (DLPack, or the CUDA
    array interface); DLPack orders the producer's stream before CuPy's current one."""
    xp = _executor().xp
    return xp.from_dlpack(array) if hasattr(array, "__dlpack__") else xp.asarray(array)


@contextlib.contextmanager
def on_stream(device: int, stream):
    """Run the launches inside on CUDA device ``device`` and on ``stream``, another library's
    stream object (CUDA stream protocol: ``__cuda_stream__``), PyTorch's current one say."""
    xp = _executor().xp
    with xp.cuda.Device(device), xp.cuda.Stream.from_external(stream):
        yield


def flip_kernel(weight):
    """The kernel axes reversed (a view): the kernels read any strides."""
    return backends.kernel_flipped(weight)



def _strides(array) -> tuple[int, ...]:
    return tuple(s // array.itemsize for s in array.strides)


# --------------------------------------------------------------------------- prepared launches
@dataclass(frozen=True)
class _Prepared:
    """Everything one call signature needs, computed once: ``steps`` (RawKernel, grid, block,
    dynamic shared memory bytes, the struct's bytes with every scalar filled in, the struct
    dtype, and (byte offset, buffer slot) for each pointer, last), the ``outputs`` to allocate
    ((shape, dtype), or None for an output not asked for), the ``workspaces`` ((count, dtype)),
    the input ``copies`` (slots a kernel needs contiguous) and the ``aligned`` inputs (slots a
    kernel reads 16 bytes at a time: copied when a call's array is not 16-byte aligned). Buffer
    slots: inputs, outputs, workspaces, in that order."""

    steps: tuple
    outputs: tuple
    workspaces: tuple = ()
    copies: tuple = ()
    aligned: tuple = ()

    def without_unit_axis(self) -> "_Prepared":
        """This entry for a 1-D op's call (``signature.lift``): its results allocated without
        the unit axis."""
        return replace(self, outputs=tuple(
            None if out is None else (signature.unit_axis_dropped(out[0]), out[1])
            for out in self.outputs))


def _error_word(ex):
    """The current device's int64 error word (zero until a kernel flags bad input), allocated
    once: its address is part of the prepared structs."""
    device = ex.current_device()
    if device not in ex.error_words:
        ex.error_words[device] = ex.xp.zeros((1,), "int64")
    return ex.error_words[device]


def take_errors() -> list[int]:
    """The error words that kernels set since the last call, each cleared (a read on the host:
    this waits for the current stream). Max-pool backward stores its plane size H*W there
    for an index outside [0, H*W), -H*W for one outside its window (BadPoolIndex)."""
    found = []
    for word in (_EXECUTOR.error_words.values() if _EXECUTOR is not None else ()):
        value = int(word[0])
        if value:
            found.append(value)
            word.fill(0)
    return found


def _prepare(ex, p: plan.Plan, names: tuple, outputs: tuple, copies: tuple = ()) -> _Prepared:
    """Bind plan ``p`` to kernel handles and prefilled structs; ``names``: the buffer name of
    each input and output slot, in order. The error word's address is filled in here."""
    slots = {name: i for i, name in enumerate(names + tuple(p.workspaces))}
    steps = []
    for launch in p.launches:
        params = plan.pack(launch.kernel, launch.params,
                           lambda name: ex.pointer(_error_word(ex)) if name == "err" else 0)
        pointers = tuple((params.dtype.fields[field][1], slots[value])
                         for field, value in launch.params.items()
                         if field in plan.POINTER_FIELDS and value not in (None, "err"))
        function = ex.function(launch.kernel)
        if launch.shared_mem:  # the opt-in (past 48 KiB with the static part), on this device
            function.max_dynamic_shared_size_bytes = launch.shared_mem
        steps.append((function, tuple(launch.grid), tuple(launch.block), launch.shared_mem,
                      params.tobytes(), params.dtype, pointers))
    return _Prepared(tuple(steps), outputs, tuple(p.workspaces.values()), copies,
                     tuple(slots[name] for name in p.aligned))


_put_pointer = struct.Struct("<Q").pack_into  # (buffer, byte offset, address)


def _execute(ex, prepared: _Prepared, buffers: list) -> None:
    """Allocate ``prepared``'s outputs and workspaces after the inputs in ``buffers``, patch
    their pointers into copies of the prefilled structs and launch (nothing else per call)."""
    xp, pointer = ex.xp, ex.pointer
    for slot in prepared.copies:
        buffers[slot] = xp.ascontiguousarray(buffers[slot])
    for slot in prepared.aligned:  # C-contiguous (gpu_plan.a_runs): a copy keeps the strides
        if pointer(buffers[slot]) % 16:
            buffers[slot] = buffers[slot].copy()
            if pointer(buffers[slot]) % 16:
                raise RuntimeError("the array allocator returned memory that is not 16-byte "
                                   "aligned; the tensor-core kernels read it 16 bytes at a time")
    for out in prepared.outputs:
        buffers.append(None if out is None else xp.ndarray(*out))
    for count, dtype in prepared.workspaces:
        buffers.append(xp.ndarray((count,), dtype))
    pointers = []
    for buffer in buffers:
        pointers.append(0 if buffer is None else pointer(buffer))
    for function, grid, block, shared_mem, template, layout, fields in prepared.steps:
        params = bytearray(template)  # a copy per launch: concurrent calls share the template
        for offset, slot in fields:
            _put_pointer(params, offset, pointers[slot])
        function(grid, block, (np.frombuffer(params, layout),), shared_mem=shared_mem)


def _call(build, arrays: tuple, options: tuple):
    """Run the op that ``build(ex, *arrays, *options)`` prepares, preparing it only the first
    time its signature is met (``signature.prepared``: the arrays' types, shapes, strides and
    dtypes, the options, the device and ``autotune.switches``). Returns the outputs' slots."""
    recording = signature.recorder()
    if recording is not None:  # a part of a composite op (see _build_composite)
        recording.append((build, arrays, options))
        return [len(recording) - 1]
    ex = _EXECUTOR or _executor()
    prepared = signature.prepared(ex.prepared, build, ex, arrays, options,
                                  (ex.current_device(), *autotune.switches()))
    buffers = list(arrays)
    _execute(ex, prepared, buffers)
    return buffers[len(arrays):len(arrays) + len(prepared.outputs)]


def _composite(ex, arrays: tuple, compose, *args) -> _Prepared:
    """One prepared call of the ops of this module that ``compose(*args)`` calls, each with one
    output (``signature.record``): their launches in order, their inputs found among ``arrays``
    by identity, the outputs in the order compose returns them (None: not computed)."""
    calls, results = signature.record(compose, *args)
    parts = [build(ex, *part_arrays, *options) for build, part_arrays, options in calls]
    workspaces, part_slots = signature.composite_slots(arrays, calls, results,
                                                       [p.workspaces for p in parts])
    steps, copies, aligned = [], set(), set()
    for part, slots in zip(parts, part_slots):
        copies.update(slots[slot] for slot in part.copies)
        aligned.update(slots[slot] for slot in part.aligned)
        steps += [(*step[:-1], tuple((offset, slots[slot]) for offset, slot in step[-1]))
                  for step in part.steps]
    outputs = tuple(None if r is None else parts[r].outputs[0] for r in results)
    return _Prepared(tuple(steps), outputs, tuple(workspaces), tuple(sorted(copies)),
                     tuple(sorted(aligned)))


def _run(p: plan.Plan, buffers: dict) -> None:
    """Launch plan ``p`` once on named buffers (its outputs among them), prepared afresh: for
    plans no op asks for (tests)."""
    ex = _EXECUTOR or _executor()
    _execute(ex, _prepare(ex, p, tuple(buffers), ()), list(buffers.values()))


def tile_runs(tile: str) -> bool:
    """Whether the current device runs ``tile`` (gpu_plan.TILES): the wgmma tiles need
    Hopper; the others run wherever their precision does."""
    return not plan.TILES[tile].wgmma or (_EXECUTOR or _executor()).wgmma


def _precision(ex, precision: str, dtype: str) -> str:
    """Tensor-core precisions apply to float32 only (PyTorch's allow_tf32 rule), on sm_80+."""
    if precision == "ieee" or dtype != "float32":
        return "ieee"
    if not ex.tensor_cores:
        raise RuntimeError(f"precision={precision!r} needs tensor cores with TF32 (compute "
                           f"capability 8.0 or newer); use precision='ieee'")
    return precision


def _contiguous_copies(arrays: tuple, slots) -> tuple:
    """The slots among ``slots`` whose array is not C-contiguous (kernels index it flat)."""
    copies = []
    for slot in slots:
        array = arrays[slot]
        if array is not None and _strides(array) != plan.contiguous_strides(array.shape):
            copies.append(slot)
    return tuple(copies)


def _conv_prepared(ex, op: str, make_plan, names: tuple, arrays: tuple, out_shape, dtype: str,
                   precision: str, problem, copies: tuple = ()) -> _Prepared:
    """A conv plan's launches: of the forced tile (``autotune.forced_tile``), else with
    autotuning on, first time each candidate tile for it."""
    outputs = ((tuple(out_shape), dtype),)
    tile = autotune.forced()
    if tile is None and autotune.enabled():
        def time_tile(t):
            prepared = _prepare(ex, make_plan(t), names, outputs, copies)
            return ex.time_ms(lambda: _execute(ex, prepared, list(arrays)))
        key = autotune.make_key(ex.device_name(), op, problem, f"{dtype}-{precision}")
        tile = autotune.best_tile(key, plan.tuned_tiles(plan.TILES_FOR[(dtype, precision)]),
                                  time_tile)
    return _prepare(ex, make_plan(tile), names, outputs, copies)


# --------------------------------------------------------------------------- convolution
def _build_conv2d(ex, x, weight, bias, spec: ConvSpec, precision: str, relu: bool):
    dtype = str(x.dtype)
    precision = _precision(ex, precision, dtype)
    out_shape = (x.shape[0], weight.shape[0]) + spec.output_shape(x.shape[2:], weight.shape[2:])
    sm_count = ex.sm_count()

    def make(tile):
        return plan.conv_forward_plan(x.shape, _strides(x), weight.shape, _strides(weight), spec,
                                      dtype, bias is not None, precision, tile, sm_count, relu)
    return _conv_prepared(ex, "conv2d", make, ("x", "weight", "bias", "out"), (x, weight, bias),
                          out_shape, dtype, precision, (x.shape, weight.shape, spec),
                          _contiguous_copies((x, weight, bias), (2,)))


def conv2d(x, weight, bias, spec: ConvSpec, precision: str = "ieee", relu: bool = False):
    """y (N, O, H_out, W_out) = x (N, C, H, W) correlated with weight (O, C/G, kH, kW) + bias,
    then max(y, 0) if ``relu`` (in the same kernel's epilogue, or split-K's reduce)."""
    return _call(_build_conv2d, (x, weight, bias), (spec, precision, relu))[0]


def _build_conv2d_grad_input(ex, grad_out, weight, bias, spec: ConvSpec, input_hw,
                             precision: str):
    dtype = str(grad_out.dtype)
    precision = _precision(ex, precision, dtype)
    out_shape = (grad_out.shape[0], weight.shape[1] * spec.groups) + tuple(input_hw)
    sm_count = ex.sm_count()

    def make(tile):
        return plan.conv_grad_input_plan(grad_out.shape, _strides(grad_out), weight.shape,
                                         _strides(weight), spec, tuple(input_hw), dtype,
                                         bias is not None, precision, tile, sm_count)
    return _conv_prepared(ex, "conv2d_grad_input", make, ("grad_out", "weight", "bias", "out"),
                          (grad_out, weight, bias), out_shape, dtype, precision,
                          (grad_out.shape, weight.shape, spec, tuple(input_hw)),
                          _contiguous_copies((grad_out, weight, bias), (2,)))


def conv2d_grad_input(grad_out, weight, spec: ConvSpec, input_hw, bias=None,
                      precision: str = "ieee"):
    """dL/dx (N, C, H, W), also conv_transpose2d's forward (with its ``bias`` (C,))."""
    return _call(_build_conv2d_grad_input, (grad_out, weight, bias),
                (spec, tuple(input_hw), precision))[0]


def _build_conv2d_grad_weight(ex, grad_out, x, spec: ConvSpec, kernel_hw, precision: str):
    dtype = str(x.dtype)
    precision = _precision(ex, precision, dtype)
    out_shape = (grad_out.shape[1], x.shape[1] // spec.groups) + tuple(kernel_hw)
    sm_count = ex.sm_count()

    def make(tile):
        return plan.conv_grad_weight_plan(grad_out.shape, _strides(grad_out), x.shape, _strides(x),
                                          spec, tuple(kernel_hw), dtype, precision, tile, sm_count)
    return _conv_prepared(ex, "conv2d_grad_weight", make, ("grad_out", "x", "out"), (grad_out, x),
                          out_shape, dtype, precision,
                          (grad_out.shape, x.shape, spec, tuple(kernel_hw)))


def conv2d_grad_weight(grad_out, x, spec: ConvSpec, kernel_hw, precision: str = "ieee"):
    """dL/dW (O, C/G, kH, kW) from grad_out (N, O, H_out, W_out) and x (N, C, H, W)."""
    return _call(_build_conv2d_grad_weight, (grad_out, x), (spec, tuple(kernel_hw), precision))[0]


def _build_conv2d_grad_bias(ex, grad_out):
    dtype = str(grad_out.dtype)
    return _prepare(ex, plan.conv_grad_bias_plan(grad_out.shape, _strides(grad_out), dtype),
                    ("grad_out", "out"), (((grad_out.shape[1],), dtype),))


def conv2d_grad_bias(grad_out):
    """dL/db (O,) = sum of grad_out over batch and pixels."""
    return _call(_build_conv2d_grad_bias, (grad_out,), ())[0]


def _build_conv2d_backward(ex, grad_out, x, weight, spec: ConvSpec, output_mask,
                           precision: str, transposed: bool):
    return _composite(ex, (grad_out, x, weight), backends.conv_backward, sys.modules[__name__],
                      grad_out, x, weight, spec, output_mask, precision, transposed)


def conv2d_backward(grad_out, x, weight, spec: ConvSpec, output_mask, precision: str = "ieee",
                    transposed: bool = False):
    """(dx, dW, db) of a conv or transposed conv (``backends.conv_backward`` over this module's
    kernels), prepared and launched as one call."""
    return tuple(_call(_build_conv2d_backward, (grad_out, x, weight),
                       (spec, tuple(output_mask), precision, transposed)))


# --------------------------------------------------------------------------- pooling
# the pooling entries of KERNELS (max_pool2d, avg_pool2d, ..., their backwards and
# checks_index_values) from gpu_pooling, run by this module's executor
gpu_pooling.bind(
    globals(), _call,
    lambda ex, p, arrays, names, outputs, contiguous: _prepare(
        ex, p, names, outputs, _contiguous_copies(arrays, contiguous)),
    _strides)

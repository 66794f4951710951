"""Counter-based random draws for dropout: Philox4x32-10 of (element / 4, step, stream) under a
64-bit key, so a mask is a pure function of numbers that live on the device and a replayed
CUDA graph draws a fresh mask every step. ``dropout_keep`` is the NumPy twin of the ``dropout``
kernel in kernels/layers.cu (same words, same threshold rule: bit-identical masks)."""

from __future__ import annotations

import numpy as np

_M0, _M1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
_W0, _W1 = np.uint32(0x9E3779B9), np.uint32(0xBB67AE85)
_LOW = np.uint64(0xFFFFFFFF)
DRAW_BITS = 24  # each 32-bit word keeps its top 24 bits: a uniform draw on [0, 2^24)


def philox4x32_10(c0, c1, c2, c3, k0: int, k1: int) -> np.ndarray:
    """Philox4x32-10 (Salmon et al., SC'11) of uint32 counter arrays c0..c3 (broadcast) under
    the key (k0, k1): an array (..., 4) of uint32 words."""
    c = [np.asarray(v, dtype=np.uint32) for v in np.broadcast_arrays(c0, c1, c2, c3)]
    k0, k1 = np.uint32(k0), np.uint32(k1)
    with np.errstate(over="ignore"):
        for _ in range(10):
            p0 = _M0 * c[0].astype(np.uint64)
            p1 = _M1 * c[2].astype(np.uint64)
            hi0, lo0 = (p0 >> np.uint64(32)).astype(np.uint32), (p0 & _LOW).astype(np.uint32)
            hi1, lo1 = (p1 >> np.uint64(32)).astype(np.uint32), (p1 & _LOW).astype(np.uint32)
            c = [hi1 ^ c[1] ^ k0, lo1, hi0 ^ c[3] ^ k1, lo0]
            k0, k1 = k0 + _W0, k1 + _W1
    return np.stack(c, axis=-1)


def dropout_threshold(rate: float) -> int:
    """Keep an element when its 24-bit draw is >= this: probability 1 - rate, up to 2^-24."""
    return int(np.ceil(rate * (1 << DRAW_BITS)))


def dropout_keep(seed, stream: int, count: int, threshold: int) -> np.ndarray:
    """The keep mask (bool, ``count`` elements) of the dropout call ``stream`` under ``seed``,
    an int64 pair [key, step]; element i uses word i % 4 of counter i // 4."""
    key, step = (int(v) for v in np.asarray(seed, dtype=np.int64))
    groups = np.arange(-(-count // 4), dtype=np.uint64)
    words = philox4x32_10((groups & _LOW).astype(np.uint32),
                          (groups >> np.uint64(32)).astype(np.uint32),
                          np.uint32(step & 0xFFFFFFFF), np.uint32(stream & 0xFFFFFFFF),
                          key & 0xFFFFFFFF, (key >> 32) & 0xFFFFFFFF)
    return (words.reshape(-1)[:count] >> np.uint32(32 - DRAW_BITS)) >= threshold

"""The slides' worked examples, as data: used by ``gpuconv demo`` and by the oracle,
which turns them into golden cases. Slide numbering is 1-based; arrays are 0-based.
"""

from __future__ import annotations

import numpy as np


def two_channel_example() -> dict[str, np.ndarray]:
    """The slides' multi-channel convolution: I (2x4x4), W (2x2x2x2, nOutputPlane x
    nInputPlane x kH x kW) and b = (0.1, 0.2) give O (2x3x3), valid correlation.

    ``printed_output`` is O as the slides print it. The slides show O[1][1, 1] as -3.1;
    the maths gives +3.1 (W[1,1] * I[1] = 2, W[1,2] * I[2] = 1, plus 0.1), which every
    other printed number confirms, so the computed value is the reference.
    """
    image = np.array([
        [[1, -2, 2, 2], [2, 1, 3, -2], [-2, 3, -3, 1], [-1, 2, -4, 2]],
        [[3, 0, 0, 0], [-2, -2, 1, -1], [2, -1, 3, 1], [5, -2, 0, 1]],
    ], dtype=np.float64)
    weight = np.array([
        [[[1, -2], [-2, 1]], [[1, 0], [0, 1]]],
        [[[3, 1], [2, 2]], [[0, 0], [0, 4]]],
    ], dtype=np.float64)
    bias = np.array([0.1, 0.2])
    printed_output = np.array([
        [[-3.1, -3.9, -10.9], [4.1, -12.9, 16.1], [-3.9, 0.1, 9.1]],
        [[-0.8, 8.2, 6.2], [5.2, 18.2, 7.2], [-8.8, 2.2, -7.8]],
    ])
    return {"input": image, "weight": weight, "bias": bias, "printed_output": printed_output}


def one_d_example() -> dict[str, np.ndarray]:
    """The slides' 1-D example: I = 1 2 3 4, W = 1 2 3, upstream gradient dL/dO = 1 2.

    Correlation gives O = 14 20, true convolution (W flipped) 10 16;
    dL/dW = Correlation(I, dL/dO) = 5 8 11 and dL/dI = Correlation(W_pad, dL/dO_flip)
    = 1 4 7 6. (The slides' OCR shows "O: 1 2 5", a garbled fragment; the formulas
    printed beside it give the values above.)
    """
    return {
        "input": np.array([1.0, 2.0, 3.0, 4.0]),
        "weight": np.array([1.0, 2.0, 3.0]),
        "grad_out": np.array([1.0, 2.0]),
        "correlation": np.array([14.0, 20.0]),
        "true_convolution": np.array([10.0, 16.0]),
        "grad_weight": np.array([5.0, 8.0, 11.0]),
        "grad_input": np.array([1.0, 4.0, 7.0, 6.0]),
    }

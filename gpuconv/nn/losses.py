"""Softmax cross-entropy from logits, and accuracy."""

from __future__ import annotations


def log_softmax(logits, xp):
    """Stable log-softmax over the last axis: subtracting the row maximum keeps exp finite."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=-1, keepdims=True))


def softmax(logits, xp):
    return xp.exp(log_softmax(logits, xp))


class SoftmaxCrossEntropy:
    """Mean over the batch of ``-log softmax(logits)[label]`` (Keras'
    ``SparseCategoricalCrossentropy(from_logits=True)``); labels are class indices."""

    name = "sparse_categorical_crossentropy"

    def __call__(self, logits, labels, xp):
        """(loss as a 0-d array, d loss / d logits)."""
        log_p = log_softmax(logits, xp)
        rows = xp.arange(logits.shape[0])
        loss = -log_p[rows, labels].mean()
        grad = xp.exp(log_p)
        grad[rows, labels] -= 1
        return loss, grad / logits.shape[0]

    def gradient_and_totals(self, logits, labels, totals, device):
        """d loss / d logits, adding the batch's loss sum and correct count to ``totals``
        (float64 [loss sum, correct] on the device): one kernel on the GPU, no read-back."""
        fused = device.layer_kernels
        if fused is not None:
            return fused.softmax_cross_entropy(logits, labels, totals)
        loss, grad = self(logits, labels, device.xp)
        totals[0] += loss * logits.shape[0]
        totals[1] += correct_count(logits, labels)
        return grad


def correct_count(logits, labels):
    """How many rows' largest logit is at the label (a 0-d array on the logits' device)."""
    return (logits.argmax(axis=-1) == labels).sum()


LOSSES = {SoftmaxCrossEntropy.name: SoftmaxCrossEntropy}

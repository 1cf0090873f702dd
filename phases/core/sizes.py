"""Rough memory needs of the models the phases build, from their options alone (no torch): what
`phases.core.options.check_memory` compares with the machine's memory before anything is allocated. Estimates
are of the dominant terms only; they catch sizes that cannot fit (an extra zero or three), not tight budgets."""

from __future__ import annotations

FLOAT = 4  # bytes: float32 weights and activations
TRAINED = 4 * FLOAT  # bytes per trained parameter: the weight, its gradient and Adam's two moments
CHAR_VOCAB = 256  # char-level corpora have at most a few hundred symbols


def gpt_terms(n_layer: int, n_embd: int, block_size: int, batch_size: int) -> dict[str, int]:
    """A nanoGPT-style model trained with Adam: its blocks' weights, its embeddings and a batch's activations
    (per layer about 16 floats per token and channel; attention is fused, so no T x T matrix is kept)."""
    return {
        f"--n-layer {n_layer} x --n-embd {n_embd} (the model's weights)": n_layer * 12 * n_embd ** 2 * TRAINED,
        f"--block-size {block_size} x --n-embd {n_embd} (the embeddings)":
            (block_size + CHAR_VOCAB) * n_embd * TRAINED,
        f"--batch-size {batch_size} x --block-size {block_size} x --n-embd {n_embd} x --n-layer {n_layer} "
        "(a batch's activations)":
            batch_size * block_size * (n_layer * 16 * n_embd + CHAR_VOCAB) * FLOAT,
    }

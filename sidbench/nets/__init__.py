"""Network architectures and weight adaptations that several detectors share, written from the official
code of the methods that use them: vision transformers and CNN trunks in the key names of their official
checkpoints, LoRA and SVD-residual merges, position-embedding resizing.

Built-in and third-party detector plugins may import this package (as well as ``sidbench.api`` and
``sidbench.data``). It imports only ``sidbench.api`` and imports torch lazily, inside functions, so
listing plugins stays fast.
"""

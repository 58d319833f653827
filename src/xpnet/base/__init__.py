"""The ground floor: what every other part of xpnet may use, and nothing of theirs.

- :mod:`~xpnet.base.atomic`: atomic file writes (a reader sees the old file or the new);
- :mod:`~xpnet.base.codec`: the one NaN <-> None codec of stored metrics;
- :mod:`~xpnet.base.inputs`: checks of what users hand over (numbers, per-model values,
  ``(X, y)`` pairs);
- :mod:`~xpnet.base.npz`: ``.npz`` files read with every size checked before anything is
  inflated (checkpoints are a security boundary).

Imports: :mod:`xpnet.errors`.
"""

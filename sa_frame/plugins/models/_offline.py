"""The one message for pretrained weights that are neither cached nor downloadable."""

from __future__ import annotations

from pathlib import Path

from sa_frame import UsageError


def offline_weights_error(model_name: str, file_name: str, directory: Path, how: str = "") -> UsageError:
    """The message for pretrained weights that are neither cached nor downloadable."""
    hint = f" ({how})" if how else ""
    return UsageError(f"ImageNet weights for {model_name} are not cached and could not be downloaded: place "
                      f"{file_name} in {directory}{hint}, or use --weights random / a state-dict file")

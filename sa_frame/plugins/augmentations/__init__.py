"""Built-in augmentations and the sets A1 and A2 of the paper (Table A.1).

Implementation modules are imported inside the hooks, so loading this plugin is cheap.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer  # light, and already loaded by the CLI; needed at module level for typer's annotations

from sa_frame import UsageError, hookimpl

A1 = ["erasing", "sharpness", "rolling", "grayscale", "gaussian_blur"]
A2 = ["brightness", "contrast", "saturation", "hue", "hflip", "rotation", "elliptic_blur"]


@hookimpl
def register_augmentations(register: Callable[[Any], None]) -> None:
    from sa_frame.plugins.augmentations.blur import EllipticBlur, GaussianBlur
    from sa_frame.plugins.augmentations.geometric import Erasing, HorizontalFlip, Rolling, Rotation
    from sa_frame.plugins.augmentations.photometric import Brightness, Contrast, Grayscale, Hue, Saturation, Sharpness

    for aug in (Erasing(), Sharpness(), Rolling(), Grayscale(), GaussianBlur(), Brightness(), Contrast(),
                Saturation(), Hue(), HorizontalFlip(), Rotation(), EllipticBlur()):
        register(aug)


@hookimpl
def register_augmentation_sets(register: Callable[[str, list[str]], None]) -> None:
    register("a1", A1)
    register("a2", A2)


@hookimpl
def register_commands(app: Any) -> None:
    @app.command("augment")
    def augment(
        aug: Annotated[str, typer.Option("--aug", help="Set (a1, a2) and/or augmentation names, comma-separated.")]
        = "a1",
        image: Annotated[Path | None, typer.Option("--image", help="An image file (default: a test card).")]
        = None,
        data: Annotated[str | None, typer.Option("--data", help="'demo': an image of the embedded demo set "
                                                 "(its class chosen by --seed).")] = None,
        n: Annotated[int, typer.Option("--n", min=1, max=64, help="Simultaneous chains to show.")] = 8,
        seed: Annotated[int, typer.Option("--seed")] = 0,
        scheme: Annotated[int, typer.Option("--scheme", min=1, max=2, help="1: always on (switch if "
                                            "parameter-free); 2: every augmentation switched.")] = 2,
        out: Annotated[Path, typer.Option("--out", help="PNG file to write.")] = Path("augmentations.png"),
    ) -> None:
        """Preview augmentations: original, its H/S/V channels, each alone, simultaneous chains."""
        from sa_frame.plugins.augmentations._preview import demo_image, load_image, preview, save_grid, test_card

        if image is not None and data is not None:
            raise UsageError("give either --image or --data, not both")
        if data is not None:
            img = demo_image(data, seed)
        else:
            img = load_image(image) if image is not None else test_card()
        tiles, titles, columns = preview(aug, img, n, seed, scheme)
        save_grid(tiles, titles, columns, out, f"sa-frame augment --aug {aug} --seed {seed}")
        typer.echo(f"wrote {out} ({len(tiles)} images)")

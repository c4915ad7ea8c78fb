"""Attribution baselines on the same regions and scores, through Captum (extra
``sa-frame[baselines]``): KernelSHAP and LIME with the regions as the feature mask and the
fully masked image as the baseline, and Integrated Gradients summed over each region."""

from __future__ import annotations

from typing import Any

import numpy as np

from sa_frame import Progress, UsageError

BASELINES = ("kernelshap", "lime", "ig")
IG_STEPS = 50  # Captum's default


def baseline_rankings(runner: Any, methods: list[str], samples: int, seed: int,
                      progress: Progress) -> dict[str, np.ndarray]:
    """{method: (M, L) region attributions} of each image's target score. Captum explains one
    image per call (its API), so this loops over images."""
    try:
        import captum.attr as attr
    except ImportError:
        raise UsageError(f"rankings {', '.join(methods)} need Captum: pip install 'sa-frame[baselines]'") from None
    import torch

    setup, spec = runner.setup, runner.run.spec
    opts = setup.perturbation_options
    masked = setup.perturbation.masked(opts)
    target = runner.base()["target"]
    m, n = setup.n_images, setup.n_regions

    def forward(x: torch.Tensor) -> torch.Tensor:
        return runner.score(runner.net(spec.normalize(x)))

    explainers = {"kernelshap": attr.KernelShap(forward), "lime": attr.Lime(forward),
                  "ig": attr.IntegratedGradients(forward)}
    out = {method: np.zeros((m, n)) for method in methods}
    advance = progress("baseline attributions", m * len(methods))
    for i in range(m):  # Captum attributes one example per call
        image, labels = setup.images[i:i + 1], setup.labels[i:i + 1]
        empty_values = torch.full((1, n), masked, dtype=torch.float64)
        reference = setup.perturbation.apply(image, labels, empty_values, opts)
        mask = labels[:, None]  # (1, 1, H, W): broadcast over the colour channels
        one_hot = torch.nn.functional.one_hot(labels[0], n).to(torch.float64)  # (H, W, L)
        for method in methods:
            torch.manual_seed(seed + i)
            if method == "ig":
                with torch.enable_grad():
                    a = explainers[method].attribute(image, baselines=reference, target=int(target[i]),
                                                     n_steps=IG_STEPS)
                per_pixel = a[0].sum(0).double()  # summed over channels, then over each region
                out[method][i] = torch.einsum("hw,hwl->l", per_pixel, one_hot).detach().cpu().numpy()
            else:
                with torch.no_grad():
                    a = explainers[method].attribute(image, baselines=reference, target=int(target[i]),
                                                     feature_mask=mask, n_samples=samples)
                # every pixel of a region carries the region's coefficient: its mean over the region
                size = one_hot.sum((0, 1)).clamp(min=1)
                out[method][i] = (torch.einsum("hw,hwl->l", a[0, 0].double(), one_hot) / size).cpu().numpy()
            advance(1)
    return out

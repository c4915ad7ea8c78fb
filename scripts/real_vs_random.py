"""The figure and tables of docs/real-network.md: a trained network against the same network
with random weights, on the same data and design.

    sa-frame run --model efficientnet-lite0 --data photos --quick --out real.h5
    sa-frame run --model efficientnet-lite0 --weights random --data photos --quick --out random.h5
    sa-frame analyze real.h5 accuracy -o per_class=4 ; sa-frame analyze random.h5 accuracy -o per_class=4
    sa-frame analyze real.h5 masking -o per_class=2 -o n_inner=1        # optional: the masking panel
    python scripts/real_vs_random.py real.h5 random.h5 docs/figures/real-vs-random.png
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

import sa_frame
from sa_frame import ResultsFile, maps


def mean_by_row(results: ResultsFile, value: str) -> tuple[list[str], list[str], np.ndarray]:
    """(rows, checkpoints, (rows, checkpoints) mean index as analyses read it)."""
    rows, checkpoints = maps.map_rows(results), maps.checkpoints(results)
    table = np.stack([maps.sensitivity(results, value, c).reshape(len(rows), -1).mean(1) for c in checkpoints], 1)
    return rows, checkpoints, table


def main(real_path: str, random_path: str, out: str) -> None:
    import matplotlib

    from sa_frame.results.report import save_figure

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    real, rand = ResultsFile(real_path), ResultsFile(random_path)
    rows, checkpoints, s1_real = mean_by_row(real, "S1")
    _, _, s1_rand = mean_by_row(rand, "S1")
    analyses = {name: r.read("analyses") for name, r in (("real", real), ("random", rand))}
    masking = analyses["real"].get("masking")
    panels = 3 + (masking is not None)
    fig, axes = plt.subplots(1, panels, figsize=(5.2 * panels, 4.2))
    depth = np.arange(len(checkpoints))
    c = rows.index("class")
    axes[0].plot(depth, s1_real[c], "o-", label="ImageNet weights")
    axes[0].plot(depth, s1_rand[c], "s--", label="random weights")
    axes[0].set_xticks(depth, checkpoints, rotation=45, ha="right", fontsize=8)
    axes[0].set_ylabel("mean S1 of the class variable")
    axes[0].set_title("class share by depth")
    axes[0].legend(fontsize=8)
    augs = [r for r in rows if r not in ("class", "partition", "permutation")]
    idx = [rows.index(a) for a in augs]
    last = len(checkpoints) - 2  # the global pool
    width = 0.38
    x = np.arange(len(augs))
    axes[1].bar(x - width / 2, s1_real[idx, last], width, label="ImageNet weights")
    axes[1].bar(x + width / 2, s1_rand[idx, last], width, label="random weights")
    axes[1].set_xticks(x, augs, rotation=45, ha="right", fontsize=8)
    axes[1].set_title(f"augmentations' mean S1 at {checkpoints[last]}")
    axes[1].legend(fontsize=8)
    for name, style in (("real", "o-"), ("random", "s--")):
        accuracy = analyses[name].get("accuracy")
        if accuracy is not None:
            inputs = [str(i) for i in accuracy["inputs"]]
            axes[2].plot(range(len(inputs)), accuracy["top5"], style, label=f"{name}: top-5")
            axes[2].plot(range(len(inputs)), accuracy["top1"], style, alpha=0.5, label=f"{name}: top-1")
            axes[2].set_xticks(range(len(inputs)), inputs, rotation=45, ha="right", fontsize=8)
    axes[2].set_ylim(-0.02, 1.02)
    axes[2].set_title("accuracy, each augmentation alone (valid views)")
    axes[2].legend(fontsize=7)
    if masking is not None:
        pattern = np.asarray(masking["pattern"], dtype=float)
        image = axes[3].imshow(pattern, cmap="coolwarm", vmin=-1, vmax=1)
        axes[3].set_xticks(range(pattern.shape[1]), [str(v) for v in masking["variables"]], rotation=45,
                           ha="right", fontsize=7)
        axes[3].set_yticks(range(pattern.shape[0]), [str(i) for i in masking["inputs"][1:]], fontsize=7)
        axes[3].set_title("guided masking: augmented+mask vs original+mask", fontsize=9)
        fig.colorbar(image, ax=axes[3], fraction=0.046)
    fig.suptitle(f"{real.attrs()['model']}: ImageNet weights vs random weights, {real.config()['data']}, "
                 f"{real.attrs()['n_rows']:,} rows each")
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, Path(out))
    print(f"wrote {out}\n")
    print("| checkpoint | class S1, ImageNet | class S1, random |\n|---|---|---|")
    for k, name in enumerate(checkpoints):
        print(f"| `{name}` | {s1_real[c, k]:.3f} | {s1_rand[c, k]:.3f} |")
    print(f"\n| augmentation | S1 at {checkpoints[last]}, ImageNet | random |\n|---|---|---|")
    for a, i in zip(augs, idx):
        print(f"| {a} | {s1_real[i, last]:.3f} | {s1_rand[i, last]:.3f} |")
    print(f"\nsa-frame {sa_frame.__version__}")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])

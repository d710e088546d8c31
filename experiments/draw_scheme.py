"""Draw readmeFiles/clustNetScheme.png: the model (encoder, CN, gate, DNs, loss)."""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "code"))

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

from clustnet.plots import save_figure  # noqa: E402

BOXES = {  # name: (x, y, width, height, text, colour)
    "image": (0.2, 2.6, 1.3, 0.8, "image\n(28x28 digit)", "#eeeeee"),
    "encoder": (2.0, 2.5, 1.8, 1.0, "shared conv\nencoder", "#c6dbef"),
    "cn": (4.6, 4.1, 1.9, 1.0, "clustering net (CN)\nclnblayers dense\n-> softmax p", "#fdd0a2"),
    "gate": (7.2, 4.1, 2.2, 1.0, "gate h = one-hot\ntrain: sample from p\neval: argmax p", "#fdae6b"),
    "dns": (4.6, 0.6, 1.9, 2.4, "", "#c7e9c0"),
    "mix": (7.3, 1.4, 2.0, 0.8, "sum_k h_k DN_k(z)", "#dadaeb"),
    "loss": (9.8, 1.4, 1.9, 0.8, "log_softmax -> NLL\nwith binary target\n(P: 0-4, N: 5-9)", "#fcbba1"),
}


def centre(name, side):
    x, y, w, h = BOXES[name][:4]
    return {"left": (x, y + h / 2), "right": (x + w, y + h / 2), "top": (x + w / 2, y + h),
            "bottom": (x + w / 2, y)}[side]


def arrow(axis, start, end, text="", colour="black", dashed=False, text_offset=0.12):
    axis.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=14, color=colour,
                                   linestyle="--" if dashed else "-", linewidth=1.4))
    if text:
        axis.text((start[0] + end[0]) / 2, (start[1] + end[1]) / 2 + text_offset, text, ha="center", fontsize=8,
                  color=colour)


def main():
    figure, axis = plt.subplots(figsize=(12, 5.6))
    for name, (x, y, w, h, text, colour) in BOXES.items():
        axis.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.05", facecolor=colour,
                                      edgecolor="#444444"))
        axis.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=9)
    for k, label in enumerate(["DN 1", "DN 2", "...", "DN K"]):
        axis.text(5.55, 2.7 - 0.6 * k, label + ("" if label == "..." else ": dense -> 2 logits"),
                  ha="center", va="center", fontsize=8.5)
    axis.text(5.55, 0.35, "detecting nets (experts),\nlow capacity (denblayers = 1: linear)",
              ha="center", va="top", fontsize=8)
    arrow(axis, centre("image", "right"), centre("encoder", "left"))
    arrow(axis, centre("encoder", "right"), centre("cn", "left"), "z")
    arrow(axis, centre("encoder", "right"), centre("dns", "left"), "z")
    arrow(axis, centre("cn", "right"), centre("gate", "left"), "p")
    arrow(axis, centre("gate", "bottom"), centre("mix", "top"), "h (selects one DN)", text_offset=-0.5)
    arrow(axis, centre("dns", "right"), centre("mix", "left"), "DN_k(z)")
    arrow(axis, centre("mix", "right"), centre("loss", "left"))
    arrow(axis, (7.9, 3.8), (5.9, 3.8), "backward: straight-through (h treated as p)", colour="#b30000",
          dashed=True, text_offset=-0.3)
    axis.set_xlim(0, 12)
    axis.set_ylim(0, 5.6)
    axis.axis("off")
    axis.set_title("ClustNet: a mixture of experts with a hard gate, trained on a binary target only")
    out = Path(__file__).resolve().parents[1] / "readmeFiles" / "clustNetScheme.png"
    save_figure(figure, out)
    print(f"wrote {out}")


if __name__ == "__main__":
    argparse.ArgumentParser(description=__doc__).parse_args()
    main()

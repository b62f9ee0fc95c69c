"""Our parameter counts per layer beside the paper's Tables I and II.

`python -m keras_dkg.train.architecture` prints the comparison (for each `--upsample`); tests/test_networks.py checks it.
The paper's rows are transcribed from Tables I–II (kernel weights only, no biases).
Where they differ (docs/architecture.md):
* Residual blocks: the paper counts one 3×3 64→64 conv per block (6 × 36,864 = 221,184);
  a residual block (He et al., and CycleGAN) has two, so we have 442,368.
* "Up Convolution3" (7×7 16→3): the paper lists 2,352 but its running total drops to
  198,240 — a typo; the paper's 269,616 total omits this row (271,968 with it).
* Discriminator State5: the paper's row reads "4×4+1, 128→128, 278,528"; Table II's text
  and PatchGAN end in a 4×4 128→1 convolution (2,048 weights), which we use.
* Our totals also include instance-norm gamma/beta and the biases of convolutions not
  followed by a norm.
"""

from __future__ import annotations

from dataclasses import dataclass

PAPER_GENERATOR_ROWS = [
    ("Down Convolution1 7x7 3->16", 2352, ["down1_conv"]),
    ("Down Convolution2 3x3 16->32", 4608, ["down2_conv"]),
    ("Down Convolution3 3x3 32->64", 18432, ["down3_conv"]),
    ("Residual block x6 3x3 64->64", 221184, [f"res{b}_conv{c}" for b in range(1, 7) for c in (1, 2)]),
    ("Up Convolution1 3x3 64->32", 18432, ["up1_conv"]),
    ("Up Convolution2 3x3 32->16", 4608, ["up2_conv"]),
    ("Up Convolution3 7x7 16->3", 2352, ["up3_conv"]),
]
PAPER_GENERATOR_TOTAL = 269616
PAPER_DISCRIMINATOR_ROWS = [
    ("State1 4x4 3->16", 768, ["state1_conv"]),
    ("State2 4x4 16->32", 8192, ["state2_conv"]),
    ("State3 4x4 32->64", 32768, ["state3_conv"]),
    ("State4 4x4 64->128", 131072, ["state4_conv"]),
    ("State5 4x4+1 128->128 (ours: 4x4 128->1)", 278528, ["state5_conv"]),
]
PAPER_DISCRIMINATOR_TOTAL = 451328


@dataclass
class Row:
    paper_row: str
    paper_params: int
    our_kernel_params: int
    our_all_params: int  # kernels + biases + the norms that follow these convolutions


def _layer_params(model, names: list[str]) -> tuple[int, int]:
    kernels = sum(int(model.get_layer(n).kernel.numpy().size) for n in names)
    total = 0
    for name in names:
        total += model.get_layer(name).count_params()
        norm = name.replace("_conv", "_norm")
        if norm != name and any(layer.name == norm for layer in model.layers):
            total += model.get_layer(norm).count_params()
    return kernels, total


def parameter_table(generator, discriminator) -> dict[str, list[Row]]:
    """Rows for G and D: paper count, our kernel count, our count with biases and norms."""
    tables = {}
    for label, model, rows in (("generator", generator, PAPER_GENERATOR_ROWS),
                               ("discriminator", discriminator, PAPER_DISCRIMINATOR_ROWS)):
        tables[label] = [Row(text, paper, *_layer_params(model, names)) for text, paper, names in rows]
    return tables


def format_table(tables: dict[str, list[Row]]) -> str:
    lines = []
    for label, rows in tables.items():
        paper_total = PAPER_GENERATOR_TOTAL if label == "generator" else PAPER_DISCRIMINATOR_TOTAL
        lines.append(f"{label}: {'paper row':44s} {'paper':>9s} {'ours(kernel)':>13s} {'ours(all)':>10s}")
        for row in rows:
            lines.append(f"  {row.paper_row:52s} {row.paper_params:9d} {row.our_kernel_params:13d} {row.our_all_params:10d}")
        lines.append(f"  {'total (paper as reported / sum of its rows)':52s} {paper_total:9d} "
                     f"{sum(r.our_kernel_params for r in rows):13d} {sum(r.our_all_params for r in rows):10d}")
        lines.append(f"  {'sum of the paper rows':52s} {sum(r.paper_params for r in rows):9d}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Print the table for G with each upsampling kind (`fit --upsample`): the weight counts agree."""
    import argparse

    from keras_dkg.train.config import UPSAMPLE_KINDS
    from keras_dkg.train.networks import build_discriminator, build_generator

    parser = argparse.ArgumentParser(prog="python -m keras_dkg.train.architecture", description=__doc__.splitlines()[0])
    parser.add_argument("--upsample", choices=UPSAMPLE_KINDS, nargs="+", default=list(UPSAMPLE_KINDS))
    for kind in parser.parse_args(argv).upsample:
        print(f"# upsample={kind}")
        print(format_table(parameter_table(build_generator(upsample=kind), build_discriminator())))


if __name__ == "__main__":
    main()

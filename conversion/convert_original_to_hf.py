"""Command line for `modeling_s2mae.conversion.convert_checkpoint`: an original-format .pth -> an S2MAE folder.

The checks (safe loading, architecture inference, key mapping, parity with the reference implementation before
anything is written) are described in `modeling_s2mae/conversion/original.py`.

Usage (with the package installed, e.g. `pip install -e .`):
    python conversion/convert_original_to_hf.py S2MAE-ViT-B.pth converted/s2mae-vit-b --preset vit-b
    python -m conversion.convert_original_to_hf finetuned.pth converted/eurosat --preset vit-b --num-channels 12
    python conversion/convert_original_to_hf.py ckpt.pth out --num-heads 12 --band-names B02 B03 B04 B08 B11 B12 \
        --push_to_hub my-org/s2mae-custom
"""

import argparse
import sys
from collections.abc import Sequence

from modeling_s2mae import S2MAE_PRESETS
from modeling_s2mae.conversion import ConversionError, convert_checkpoint


def build_parser() -> argparse.ArgumentParser:
    """Options named like `convert_checkpoint`'s arguments; those not given keep its defaults."""
    parser = argparse.ArgumentParser(
        description="Convert an original-format S2MAE checkpoint (.pth) into a Transformers folder, with a parity check.",
        argument_default=argparse.SUPPRESS,
    )
    parser.add_argument(
        "checkpoint_path", metavar="checkpoint", help="Original .pth ({'model': state_dict, ...} or a state_dict)."
    )
    parser.add_argument("output_dir", help="Folder to write (must be empty or absent unless --overwrite).")
    parser.add_argument("--preset", choices=sorted(S2MAE_PRESETS), help="Encoder size, for the head count.")
    parser.add_argument("--num-heads", type=int, help="Encoder attention heads (instead of --preset).")
    parser.add_argument("--decoder-num-heads", type=int, help="Decoder attention heads (default 16).")
    parser.add_argument("--band-names", nargs="+", help="Names of the checkpoint's bands, in its order.")
    parser.add_argument("--num-channels", type=int, help="Band count (checked against the checkpoint).")
    parser.add_argument("--image-size", type=int, help="Image side in pixels (needed for some classifiers).")
    parser.add_argument("--num-labels", type=int, help="Label count of a classifier (checked against its head).")
    parser.add_argument("--tolerance", type=float, help="Max accepted abs difference to the reference (default 1e-4).")
    parser.add_argument("--model-name", help="Title of the model card.")
    parser.add_argument("--license", help="Licence id for the model card (default 'other': the original's licence).")
    parser.add_argument("--overwrite", action="store_true", help="Replace files in a non-empty output folder.")
    parser.add_argument("--push_to_hub", "--push-to-hub", metavar="REPO_ID", help="Upload the folder to the Hub.")
    parser.add_argument("--private", action="store_true", help="Create the Hub repository as private.")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the conversion; 0 on success, 1 (with the reason on stderr) when the checkpoint was refused."""
    args = build_parser().parse_args(argv)
    try:
        convert_checkpoint(**vars(args), log=print)
    except ConversionError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

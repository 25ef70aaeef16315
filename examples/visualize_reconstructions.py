r"""Plot S2MAE reconstructions: original / masked / reconstructed, in true colour and a false-colour composite.

Usage (any pretraining checkpoint folder and any raster the processor can read):

    python examples/visualize_reconstructions.py --model outputs/s2mae-sample \
        --image sample_data/eurosat_ms/Forest/Forest_1.tif --output recon.png
"""

import argparse
from pathlib import Path

from modeling_s2mae import S2MAEForPreTraining, S2MAEImageProcessor
from modeling_s2mae.data import Sample, SampleTransform, read_raster
from modeling_s2mae.visualization import plot_reconstructions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="S2MAEForPreTraining checkpoint folder or Hub repo id")
    parser.add_argument("--image", required=True, help="A multiband raster (GeoTIFF, JPEG2000, ENVI)")
    parser.add_argument("--band_names", nargs="+", help="Names of the file's bands, if the file does not say")
    parser.add_argument("--output", default="reconstructions.png")
    args = parser.parse_args()

    model = S2MAEForPreTraining.from_pretrained(args.model).eval()
    processor = S2MAEImageProcessor.from_pretrained(args.model)
    sample = Sample(id=Path(args.image).name, raster=read_raster(args.image, args.band_names))
    pixel_values = SampleTransform(processor, min_valid_fraction=0.0)(sample)["pixel_values"]
    path = plot_reconstructions(model, pixel_values, args.output, title=Path(args.image).name)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

r"""Plot S2MAE reconstructions: original / masked / reconstructed, in true colour and a false-colour composite.

Usage (any pretraining checkpoint folder and any raster the processor can read):

    python examples/visualize_reconstructions.py --model outputs/s2mae-sample \
        --image sample_data/eurosat_ms/Forest/Forest_1.tif --output recon.png
"""

import argparse
from pathlib import Path

from modeling_s2mae import S2MAEConfig, S2MAEForPreTraining, S2MAEImageProcessor
from modeling_s2mae.data import Sample, SampleTransform, read_raster
from modeling_s2mae.training import check_model_name_or_path
from modeling_s2mae.visualization import plot_reconstructions


def load_pretraining_checkpoint(path: str) -> tuple[S2MAEForPreTraining, S2MAEImageProcessor]:
    """The checkpoint's pretraining model and image processor.

    Raises:
        ValueError: the folder does not exist, holds another model than a pretraining one (its decoder would be
            random: the plots would show noise, not reconstructions) or has no image processor.
    """
    check_model_name_or_path(path)
    architectures = S2MAEConfig.from_pretrained(path).architectures or []
    if "S2MAEForPreTraining" not in architectures:
        raise ValueError(
            f"{path} holds {architectures or 'no recorded architecture'}, not an S2MAEForPreTraining checkpoint: it "
            "has no trained decoder, so there is no reconstruction to plot. Pass a pretraining checkpoint "
            "(examples/run_pretrain.py's --output_dir)."
        )
    model = S2MAEForPreTraining.from_pretrained(path).eval()
    try:
        processor = S2MAEImageProcessor.from_pretrained(path)
    except OSError as error:
        raise ValueError(
            f"{path} has no image processor (preprocessor_config.json): save the one the model was trained with "
            "next to it (processor.save_pretrained(folder))."
        ) from error
    return model, processor


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="S2MAEForPreTraining checkpoint folder or Hub repo id")
    parser.add_argument("--image", required=True, help="A multiband raster (GeoTIFF, JPEG2000, ENVI)")
    parser.add_argument("--band_names", nargs="+", help="Names of the file's bands, if the file does not say")
    parser.add_argument("--output", default="reconstructions.png")
    args = parser.parse_args(argv)
    if Path(args.output).is_dir():
        raise ValueError(f"--output {args.output} is a folder: give the path of the image to write (.png).")
    if not Path(args.image).exists():
        raise ValueError(f"--image {args.image} does not exist.")

    model, processor = load_pretraining_checkpoint(args.model)
    sample = Sample(id=Path(args.image).name, raster=read_raster(args.image, args.band_names))
    pixel_values = SampleTransform(processor, min_valid_fraction=0.0)(sample)["pixel_values"]
    path = plot_reconstructions(model, pixel_values, args.output, title=Path(args.image).name)
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()

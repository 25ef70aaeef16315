"""Command-line converters from foreign checkpoint formats; the logic lives in `modeling_s2mae.conversion`."""

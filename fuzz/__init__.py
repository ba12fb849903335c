"""A differential fuzz of wengert against PyTorch: random programs of tape's public operations
(`generate`), run by both (`backends`), every transform compared (`check`), and edge values
(`edges`). Run it with `make fuzz` or `python -m fuzz`."""

"""Built-in procedural phantoms: mammogram-like DICOM films and Pap-smear-like cell images.

The phantoms are the pipeline's default data set: they let every stage run (and every test pass)
without downloading a real data set, and they are deliberately *awkward* to read so the real readers
get exercised. Everything is drawn from ``numpy.random.default_rng([seed, stream, index])``, so the
output is bitwise identical for a given :class:`~pipeline.config.PhantomConfig` and does not depend
on the order in which films or cells are drawn.

Two public writers::

    write_mammography_phantoms(out_dir, cfg)   out_dir/films/phantom_0001_LEFT_CC.dcm ... + labels.csv
    write_cell_phantoms(out_dir, cfg)           out_dir/<class>/slide001_cell001.png ...

Mammography films are drawn in a *canonical* frame (chest wall at column 0, nipple towards the right)
in a display-brightness domain (0 = black background, 1 = the brightest calcification) and only then
mirrored and encoded; cell images are drawn with a Beer-Lambert stain model (light through absorbing
dyes), which is what makes overlapping cytoplasm and nucleus look translucent rather than painted.
"""
from __future__ import annotations

from pipeline.data.phantoms.cells import write_cell_phantoms
from pipeline.data.phantoms.mammography import write_mammography_phantoms

__all__ = ["write_mammography_phantoms", "write_cell_phantoms"]

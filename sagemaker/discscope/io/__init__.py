"""Reading studies into one canonical volume, one reader per format, and writing masks back on the
input grid.

`registry` picks the reader from the first bytes; `metaimage`, `nifti`, `dicom`, `raster` and
`archive` each read one format whole or refuse it with an InputError (a code from
:mod:`discscope.errors`) decided from the header before any large allocation; `volume` holds the
canonical volume, the limits and the checks shared by every format.
"""

from .archive import natural_key
from .registry import read_study, read_study_bytes, sniff
from .volume import ASSUMED_FOV_MM, DEFAULT_LIMITS, Limits, Volume, write_mask

__all__ = ["ASSUMED_FOV_MM", "DEFAULT_LIMITS", "Limits", "Volume", "natural_key", "read_study", "read_study_bytes",
           "sniff", "write_mask"]

"""DiscScope: lumbar disc detection, level naming and herniation scoring on sagittal MRI."""

__version__ = "0.1.0"

"""Typed errors: every refusal carries a stable machine-readable code and a human message."""

from __future__ import annotations


class DiscScopeError(Exception):
    """Base error with a code that APIs return verbatim (`{"error_code", "message"}`)."""

    code = "INTERNAL_ERROR"
    http_status = 500

    def __init__(self, message: str, code: str | None = None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code

    def to_dict(self) -> dict[str, str]:
        return {"error_code": self.code, "message": self.message}


class InputError(DiscScopeError):
    """The study file itself is unusable; retrying will not help."""

    code = "INVALID_INPUT"
    http_status = 400


# Codes used with InputError, in one place so clients can rely on them.
EMPTY_FILE = "EMPTY_FILE"
TRUNCATED_FILE = "TRUNCATED_FILE"
CORRUPT_FILE = "CORRUPT_FILE"
NOT_AN_IMAGE = "NOT_AN_IMAGE"
UNSUPPORTED_FORMAT = "UNSUPPORTED_FORMAT"
FILE_TOO_LARGE = "FILE_TOO_LARGE"
IMAGE_TOO_LARGE = "IMAGE_TOO_LARGE"
INCONSISTENT_SLICES = "INCONSISTENT_SLICES"
UNSUPPORTED_DIMENSIONS = "UNSUPPORTED_DIMENSIONS"
UNSUPPORTED_PIXEL_TYPE = "UNSUPPORTED_PIXEL_TYPE"
UNSAFE_ARCHIVE = "UNSAFE_ARCHIVE"
IMAGE_TOO_SMALL = "IMAGE_TOO_SMALL"
INVALID_SPACING = "INVALID_SPACING"
INVALID_GEOMETRY = "INVALID_GEOMETRY"
NON_FINITE_VOXELS = "NON_FINITE_VOXELS"
EXTERNAL_REFERENCE = "EXTERNAL_REFERENCE"
NO_SPINE_FOUND = "NO_SPINE_FOUND"

INPUT_ERROR_CODES = frozenset(
    {
        EMPTY_FILE,
        TRUNCATED_FILE,
        CORRUPT_FILE,
        NOT_AN_IMAGE,
        UNSUPPORTED_FORMAT,
        FILE_TOO_LARGE,
        IMAGE_TOO_LARGE,
        INCONSISTENT_SLICES,
        UNSUPPORTED_DIMENSIONS,
        UNSUPPORTED_PIXEL_TYPE,
        UNSAFE_ARCHIVE,
        IMAGE_TOO_SMALL,
        INVALID_SPACING,
        INVALID_GEOMETRY,
        NON_FINITE_VOXELS,
        EXTERNAL_REFERENCE,
        NO_SPINE_FOUND,
    }
)


class NoSpineFound(InputError):
    """The study reads as an image, but the model finds no intervertebral disc in it."""

    code = NO_SPINE_FOUND
    http_status = 422  # the request was well-formed; its content is not a lumbar spine

    def __init__(self, message: str = "no intervertebral disc was found: the image does not look like a sagittal "
                                      "lumbar spine MRI"):
        super().__init__(message)


class ModelError(DiscScopeError):
    """The model artifact is missing or malformed."""

    code = "MODEL_ERROR"
    http_status = 500

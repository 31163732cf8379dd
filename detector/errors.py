"""User-facing errors. Their messages are shown verbatim in the CLI, the API and the UI."""
from __future__ import annotations

__all__ = ["DetectorError", "InputError", "NoFaceError", "WeightsError"]


class DetectorError(Exception):
    """Base class for errors whose message is meant for the user."""

    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InputError(DetectorError, ValueError):
    """The uploaded file cannot be analysed (not an image, truncated, too large...)."""

    def __init__(self, message: str, code: str = "bad_input") -> None:
        super().__init__(message)
        self.code = code


class NoFaceError(InputError):
    """No face was found and whole-image analysis was not requested."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(
            message
            or "No face found in this image. Upload a clearer, frontal face photo, or choose "
            "'Analyse whole image' (API: whole_image=True; command line: --no-face-crop) to score the whole "
            "picture.",
            code="no_face",
        )


class WeightsError(DetectorError, RuntimeError):
    """A detector's weights are missing, corrupt or not allowed."""

    code = "weights"

"""Domain errors. Services raise these; routes turn them into HTTP answers
(NotFound -> 404, Conflict -> 409, Invalid -> 422)."""


class SatmachineError(Exception):
    """Base of the extension's domain errors."""


class NotFound(SatmachineError):  # noqa: N818 - reads as the HTTP status
    """The resource does not exist, or is not the caller's to see."""


class Conflict(SatmachineError):  # noqa: N818
    """The request is valid but the resource's state refuses it."""


class Invalid(SatmachineError):  # noqa: N818
    """The input is well-formed but not acceptable (names the field)."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message

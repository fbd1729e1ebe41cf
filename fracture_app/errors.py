"""The one exception type the project raises for problems a user can fix or should know about."""


class FractureAppError(Exception):
    """A failure explained in words a clinician can read (the message is shown as it is)."""


class ImageReadError(FractureAppError):
    """The input could not be read as an X-ray image."""


class ModelLoadError(FractureAppError):
    """A model file or its model card is missing, corrupt or inconsistent."""

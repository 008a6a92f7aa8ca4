"""User-facing errors: the CLI prints their message (no traceback) and exits with their code.

Raise a subclass of ``JolaRayError`` wherever bad input is found (a config field, a data row, a
search-space key, an unknown model architecture). Its message names the file, field, value or
trial that is wrong, so the user can fix it without reading a stack trace.
"""


class JolaRayError(Exception):
    """Base class of the errors a user can fix; ``exit_code`` is the CLI's exit status."""

    exit_code = 1


class ConfigError(JolaRayError):
    """A run config, search space or CLI flag is invalid (every bad field listed at once).

    ``problems`` holds the bad fields one per entry, for callers that regroup them (the sweep
    prefixes each with the configuration it came from); the message lists them too.
    """

    exit_code = 2

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = list(problems or [])


class DataError(JolaRayError):
    """A data file, split or row is missing or malformed."""


class UnknownTaskError(JolaRayError, KeyError):
    """A task name is not in the registry."""

    exit_code = 2

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class UnsupportedModelError(JolaRayError):
    """A model architecture has no attention output projection the edit can hook."""

    exit_code = 2


class TrainingError(JolaRayError):
    """A run failed in a way the user can act on (non-finite loss, out of memory)."""

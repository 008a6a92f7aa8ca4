"""User-facing errors: the CLI prints their message (no traceback) and exits with their code.

Raise a subclass of ``JolaRayError`` wherever bad input is found (a config field, a data row, a
search-space key, an unknown model architecture). Its message names the file, field, value or
trial that is wrong, so the user can fix it without reading a stack trace.
"""


class JolaRayError(Exception):
    """Base class of the errors a user can fix; ``exit_code`` is the CLI's exit status.

    ``permanent``: the same trial would fail the same way again (a bad config, broken data, a
    non-finite loss at the same seed), so the sweep records it as errored at once instead of
    retrying it (docs/sweeps.md, "What survives what").
    """

    exit_code = 1
    permanent = True


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


class CheckpointError(TrainingError):
    """A checkpoint to resume from is incomplete or unreadable; ``path`` names the bad file.

    Not permanent: the sweep falls back to an older checkpoint, else restarts the trial.
    """

    permanent = False

    def __init__(self, message: str, path: str) -> None:
        super().__init__(message)
        self.path = path


class StorageError(JolaRayError):
    """The experiment's storage cannot be written (disk full, quota, read-only, gone).

    The sweep stops with this message and exit status 3; once space is freed, running the same
    command again resumes the experiment.
    """

    exit_code = 3
    permanent = False


class ExperimentRefusedError(JolaRayError):
    """The experiment directory is in use by another sweep, or other users can write to it
    (resuming would load its pickles)."""

    exit_code = 4

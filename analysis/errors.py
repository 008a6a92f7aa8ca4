"""The analysis package's user-facing error (it reads files only and imports nothing of jola_ray)."""


class ExperimentDirError(Exception):
    """An experiment directory is missing, empty, foreign or holds a malformed trial file.

    The message names the directory or file and says what was expected; ``exit_code`` is the
    CLI's exit status (the same as a configuration error).
    """

    exit_code = 2

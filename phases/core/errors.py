"""The two ways a phase can fail, mapped onto the CLI's exit codes (conventions: 1 run failed, 2 bad input)."""


class NlabError(Exception):
    """Base class: a failure with a message meant for a person, never a bare traceback."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  fix: {self.hint}" if self.hint else self.message


class InputError(NlabError):
    """Bad usage or bad input (missing file, malformed line, unknown name, inconsistent options): exit 2.

    Raised before a run folder exists whenever possible, so that nothing is written for a rejected run."""

    exit_code = 2


class RunFailed(NlabError):
    """The run itself failed (non-finite loss, divergence, a server that kept refusing): exit 1."""

    exit_code = 1

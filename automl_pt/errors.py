"""Every error automl_pt raises on purpose derives from :class:`AutomlError`.

The command line catches :class:`AutomlError`, prints its message (no traceback) and exits with
:attr:`AutomlError.exit_code`.  Messages say what was wrong, where, and what to do.
"""

from __future__ import annotations


class AutomlError(Exception):
    """Base class of automl_pt's errors."""

    exit_code = 1


class ConfigError(AutomlError):
    """A study file or config dict is invalid (unknown key, wrong type, impossible range...).

    ``problems`` lists every problem found (one line each, ``file:line: [section] key: what``);
    the message is those lines joined, so a study file with three mistakes reports all three."""

    exit_code = 2

    def __init__(self, message: str = "", problems: list[str] | None = None):
        self.problems = list(problems) if problems else [message]
        super().__init__(message if problems is None else "\n".join(self.problems))


class DataError(AutomlError):
    """Input data is unreadable or inconsistent (empty texts, missing labels, unseen labels...)."""

    exit_code = 2


class PluginError(AutomlError):
    """A plugin failed to load or misbehaved."""


class PluginNotFoundError(PluginError):
    """A plugin module that a study names cannot be imported (bad input: exit code 2)."""

    exit_code = 2


class BackboneError(AutomlError):
    """A backbone name cannot be resolved or its weights cannot be loaded."""

    exit_code = 2


class ModelLoadError(AutomlError):
    """An exported model directory is missing files or is inconsistent."""

    exit_code = 2


class DataWarning(UserWarning):
    """Input data that is read, but perhaps not as meant (a label written two ways, a table
    without rows: nothing to predict). The command line prints each as one ``warning:`` line."""

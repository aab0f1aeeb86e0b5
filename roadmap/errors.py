"""The one exception type of setup errors."""


class ConfigError(ValueError):
    """A run that cannot be set up as configured (a setting, a config file, or the data or device it names); the
    message is one line naming the setting or file and what it may be. run.py prints it, no traceback, and exits
    with status 2 (or records the job as failed, when only the job could find it)."""

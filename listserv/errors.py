"""The errors the chair or operator sees as one line."""


class ListservError(Exception):
    """An error the chair or operator should see as one clear line."""


class ConfigError(ListservError):
    """The configuration file (or an override) is wrong; the message names key and file."""

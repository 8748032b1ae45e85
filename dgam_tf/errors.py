"""Errors a user can cause, reported by `main` as one line and exit status 1."""


class UserError(Exception):
    """A mistake in the user's input, flags or files; the message names it."""

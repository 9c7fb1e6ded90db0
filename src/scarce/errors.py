class UserError(Exception):
    """A user mistake: the CLI prints the one-line message and exits with code 2."""

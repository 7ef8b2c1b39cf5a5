"""One exception base for bad input, so the CLI can print a single line and exit non-zero."""


class NlsrError(ValueError):
    """Bad input: the message is one line naming the file or param and what was expected."""

"""The one exception type that the entry scripts turn into a single line on stderr."""

import sys


class ClustNetError(Exception):
    """A problem with the user's input (options, data, files), explained in one line."""


def run_cli(main, argv):
    """Run `main(argv)`; report a ClustNetError as one stderr line and exit status 2."""
    try:
        return main(argv) or 0
    except ClustNetError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

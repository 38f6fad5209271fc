"""``python -m server`` / ``hunkwise-lsp``: start the hunkwise language server."""

import sys


def main() -> int:
    print("hunkwise-lsp: the language server is not yet available in this version.", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())

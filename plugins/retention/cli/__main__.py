"""``python -m retention.cli``: the `retention` command."""

from retention.cli import main

if __name__ == "__main__":
    main()

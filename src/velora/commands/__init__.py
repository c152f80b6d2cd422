"""The commands of `velora`, one module each: `add_parser(subparsers)` declares its arguments, `run(args)`
runs it and returns the exit code. velora/cli.py lists them in one table."""

"""`python -m velora COMMAND ...` runs the `velora` command, for an environment whose scripts folder
is not on PATH (a venv not activated, `pip install --user`)."""

import sys

from velora.cli import main

sys.exit(main())

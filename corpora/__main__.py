"""``python -m corpora``: list, fetch and convert the real corpora (see :mod:`corpora.cli`)."""

import sys

from corpora.cli import main

sys.exit(main())

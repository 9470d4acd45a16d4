"""``python -m corpora.genome``: FASTA / GenBank files to corpus parquet (see :mod:`corpora.genome.cli`)."""

import sys

from corpora.genome.cli import main

sys.exit(main())

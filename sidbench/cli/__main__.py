"""``python -m sidbench.cli`` (also what torchrun launches)."""
import sys

from . import main

sys.exit(main())

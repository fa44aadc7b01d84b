"""``python -m sidbench.cli``: the same as the ``sidbench`` command (used by torchrun and tests)."""
import sys

from . import main

sys.exit(main())

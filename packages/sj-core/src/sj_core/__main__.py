"""``python -m sj_core info``."""

import sys

from .info import main

sys.exit(main())

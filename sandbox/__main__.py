"""``python -m sovereign_hub.sandbox``: run the sandbox."""

import sys

from .run import main

sys.exit(main())

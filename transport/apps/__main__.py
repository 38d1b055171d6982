"""``python -m transport.apps`` is ``trio-actors``."""

from __future__ import annotations

import sys

from transport.apps.cli import main

sys.exit(main())

"""``python -m fsm_session``: the ``fsm-session`` command."""

import sys

from fsm_session.cli import main

sys.exit(main())

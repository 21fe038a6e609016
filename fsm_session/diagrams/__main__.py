"""``python -m fsm_session.diagrams``: regenerate the committed diagrams and the docs' tables."""

import sys

from fsm_session.diagrams.commands import main

sys.exit(main())

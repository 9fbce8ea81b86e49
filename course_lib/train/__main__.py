"""``python -m course_lib.train`` (what ``./course train`` runs)."""
import sys

from . import main

sys.exit(main())

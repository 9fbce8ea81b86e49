"""``python -m course_lib.train`` (what ``./course train`` runs; under torchrun, each rank)."""
import sys

from . import distributed, main

code = main()
if distributed.launched_by_torchrun():
    distributed.exit_rank(code)  # a rank skips interpreter finalization (see exit_rank)
sys.exit(code)

"""``python -m course_lib.bench``, the benchmark's long-standing command: runs :mod:`course_lib.tools.bench`."""
import sys

from .tools.bench import main

if __name__ == "__main__":
    sys.exit(main())

import sys

from hpcsweep.cli import main

sys.exit(main())

import sys

from pygigo.cli import main

sys.exit(main())

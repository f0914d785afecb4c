import sys

from commspec.cli import main

sys.exit(main())

import sys

from lintorch.cli import main

sys.exit(main())

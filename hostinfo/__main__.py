import sys

from hostinfo.cli import main

sys.exit(main())

import sys

from heptathlon.bench.cli.main import main

sys.exit(main())

"""`python -m cdc_worker` is `cdc-worker`."""

import sys

from cdc_worker.cli import main

sys.exit(main())

"""`python -m cdc_worker.agent` is `cdc-agent`."""

import sys

from cdc_worker.agent.cli import main

sys.exit(main())

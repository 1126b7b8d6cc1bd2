"""`python -m crm_gateway.subscribers`: the crm-subscribers command."""

import sys

from crm_gateway.subscribers.cli import main

sys.exit(main())

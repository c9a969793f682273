"""`python -m gateway ...`, the same as `switchyard gateway ...`."""
import sys

from gateway.server import main

sys.exit(main())

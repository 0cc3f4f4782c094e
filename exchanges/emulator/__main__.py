"""``python -m exchanges.emulator --port 8900 --account KEY:SECRET:BTC=10,USDT=1000000``."""

import sys

from exchanges.emulator.cli import main

sys.exit(main())

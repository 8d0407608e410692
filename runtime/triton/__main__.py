"""`python -m runtime.triton`: write a Triton model repository for an exported folder."""

import sys

from runtime.triton.repository import main

sys.exit(main())

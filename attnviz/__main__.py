"""``python -m attnviz`` is the ``attnviz`` command (so ``torchrun -m attnviz scan ...`` works)."""
from .cli import main

raise SystemExit(main())

"""``python -m attnviz.training`` = ``attnviz train``."""
from .cli import main

raise SystemExit(main())

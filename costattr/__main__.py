import sys

from costattr.hookfast import run_from_main

# The post-commit hook checks, with the standard library only, whether there is anything new.
if run_from_main(sys.argv[1:]):
    raise SystemExit(0)

from costattr.cli import main  # noqa: E402

raise SystemExit(main())

from costattr.cli import main

raise SystemExit(main())

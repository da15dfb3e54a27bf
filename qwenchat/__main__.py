from qwenchat.cli import main

raise SystemExit(main())

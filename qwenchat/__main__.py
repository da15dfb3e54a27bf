from qwenchat.cli.app import main

raise SystemExit(main())

from podcheck.cli import main

raise SystemExit(main())

"""`otflows bench import-time` as a script (its options: `--help`)."""

from otflows.bench.import_time import main

if __name__ == "__main__":
    main()

"""`otflows bench color-transfer` as a script (its options: `--help`)."""

from otflows.bench.color_transfer import main

if __name__ == "__main__":
    main()

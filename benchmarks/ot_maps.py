"""`otflows bench ot-maps` as a script (its options: `--help`)."""

from otflows.bench.ot_maps import main

if __name__ == "__main__":
    main()

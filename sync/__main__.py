"""`python -m ga4sync ...` runs the same CLI as the `ga4sync` script."""

from ga4sync.cli import main

main()

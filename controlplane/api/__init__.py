"""Wire-level helpers shared by every component; pure, no I/O, no server imports."""

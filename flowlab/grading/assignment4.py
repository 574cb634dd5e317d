"""Hidden tests of assignment 4 (in progress)."""

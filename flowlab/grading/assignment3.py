"""Hidden tests of assignment 3 (in progress)."""

"""flowlab.data (exports are filled in as modules land)."""

"""flowlab.nets (exports are filled in as modules land)."""

"""flowlab.plots (exports are filled in as modules land)."""

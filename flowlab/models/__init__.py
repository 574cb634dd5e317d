"""flowlab.models (exports are filled in as modules land)."""

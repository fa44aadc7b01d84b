"""Data: records, layouts, robust image reading, perturbations and preprocessing protocols."""

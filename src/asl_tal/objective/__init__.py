"""The training objective: label assignment, action sensitivity (p, q, h), the loss terms."""

"""Training: the trainer protocol and the model versions trainers produce (no trainers here)."""

"""`nlab train-lora`: LoRA fine-tuning of causal LMs with held-out evaluations, exact resume and curricula."""

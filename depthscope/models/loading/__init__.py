"""Loading models: Hugging Face ids, folders, GGUF files and the built-in zoo, checked and fingerprinted."""

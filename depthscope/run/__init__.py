"""Running analyses over prompts: the feed, the runner with its checkpoints and processes, presets."""

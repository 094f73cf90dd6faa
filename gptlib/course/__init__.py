"""Teacher tools: make the learner notebooks from the solutions, release and grade assignments."""

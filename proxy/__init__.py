"""proxy: the pull-through cache that resolves lists for this host."""

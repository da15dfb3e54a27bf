"""Comparing answers (`:compare`, `:pick`): variants and running them."""

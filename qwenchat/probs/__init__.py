"""Token probabilities (`:probs`, `:alt`, `:branch`): records, branching, their file form, export."""

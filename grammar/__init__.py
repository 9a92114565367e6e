"""The .nn grammar, shipped inside the package as nndsl.grammar."""

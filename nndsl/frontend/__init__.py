"""nndsl.frontend"""

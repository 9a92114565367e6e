"""nndsl.runtime"""

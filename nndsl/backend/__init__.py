"""nndsl.backend"""

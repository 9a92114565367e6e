"""nndsl.passes"""

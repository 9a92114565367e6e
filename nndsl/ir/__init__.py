"""nndsl.ir"""

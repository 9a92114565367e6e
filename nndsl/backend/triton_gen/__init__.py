"""Generated Triton kernels for the pointwise and row-reduction chains no hand-written kernel covers.

    IR region (passes.group)  ->  kernel IR (lower.py, kir.py)  ->  Triton source (source.py)
                                     |                                  |
                                     +-> backward kernel IR              +-> disk cache (cache.py)
                                         (derivatives.py)
    torch ops and autograd: op.py;  the PyTorch reference of every kernel: reference.py
"""

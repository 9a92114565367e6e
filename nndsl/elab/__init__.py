"""Elaboration (AST -> IR), in pieces; ``nndsl.elaborate`` is the entry point.

* ``scalar``     compile-time values: ints, floats, bools, strs and dims, their arithmetic
                 and the scalar functions (sqrt, exp, log, min, max, int, float, abs);
* ``shapes``     declared tensor types: resolving them, unifying them with actual types,
                 the shape-mismatch messages;
* ``calls``      binding call arguments to a builtin's or a block's signature, converting kinds;
* ``naming``     the instance-naming rules (state_dict keys), ``repeat``'s single-call rule;
* ``elaborator`` statements, tensor expressions, block calls, ``repeat``.
"""

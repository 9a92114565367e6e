"""Front-end test helpers: example programs (the brief's GPT file, a small CNN) and ``sx``,
which turns an AST into nested tuples without spans so tests can compare whole trees."""
from nndsl.frontend import ast

GPT = '''# comments start with '#'
block CausalSelfAttention(x: f32[B, T, D], heads: int, dropout: float = 0.0) -> f32[B, T, D] {
    q, k, v = split(linear(x, 3 * D, name="qkv"), 3, dim=-1)     # tuple unpacking, keyword args, name=
    q = q.reshape([B, T, heads, D / heads]).transpose(1, 2)      # method sugar: x.f(a) == f(x, a)
    k = k.reshape([B, T, heads, D / heads]).transpose(1, 2)
    v = v.reshape([B, T, heads, D / heads]).transpose(1, 2)
    y = attention(q, k, v, causal=true)                          # built-in scaled dot-product attention
    y = y.transpose(1, 2).reshape([B, T, D])
    return dropout(linear(y, D, name="proj"), dropout)
}
block HandAttention(q: f32[B, H, T, Dh], k: f32[B, H, T, Dh], v: f32[B, H, T, Dh]) -> f32[B, H, T, Dh] {
    s = q @ k.transpose(-2, -1) * (1.0 / sqrt(Dh)) + causal_mask(T)   # hand-written attention must work
    return softmax(s, dim=-1) @ v
}
block MLP(x: f32[B, T, D], dropout: float = 0.0) -> f32[B, T, D] {
    return dropout(linear(gelu(linear(x, 4 * D, name="fc")), D, name="proj"), dropout)
}
block Block(x: f32[B, T, D], heads: int, dropout: float = 0.0) -> f32[B, T, D] {
    x = x + CausalSelfAttention(layernorm(x, name="ln_1"), heads, dropout, name="attn")   # residual
    x = x + MLP(layernorm(x, name="ln_2"), dropout, name="mlp")
    return x
}
model GPT(idx: i64[B, T], vocab: int = 65, ctx: int = 256, D: int = 384, heads: int = 6, L: int = 6,
          dropout: float = 0.2) -> f32[B, T, vocab] {
    x = embedding(idx, vocab, D, name="wte") + pos_embedding(idx, ctx, D, name="wpe")
    x = dropout(x, dropout)
    repeat L as blocks {            # L copies with distinct weights: blocks.0 ... blocks.5
        x = Block(x, heads, dropout)
    }
    return linear(layernorm(x, name="ln_f"), vocab, bias=false, name="lm_head")
}
train GPT {                         # `train { }` without a name: the file's only (or first) model
    data = text("data/tinyshakespeare/input.txt", context=ctx, split=0.9)
    eval = text("data/tinyshakespeare/input.txt", context=ctx, split=0.9, part="val")
    loss = cross_entropy
    optimizer = adamw(lr=1e-3, betas=[0.9, 0.99], weight_decay=0.1)
    schedule = cosine(warmup=100, min_lr=1e-4)
    steps = 5000
    batch = 64
    clip = 1.0
    metrics = [loss, perplexity]
}
'''

CNN = '''model MnistCNN(x: f32[B, 1, 28, 28], classes: int = 10) -> f32[B, classes] {
    x = relu(conv2d(x, 32, kernel=3, padding=1))
    x = maxpool2d(x, 2)
    x = relu(conv2d(x, 64, kernel=3, padding=1)); x = maxpool2d(x, 2)
    x = x.flatten(1)
    return linear(x, classes)
}

train {
    data = mnist("data/mnist", split="train")
    loss = cross_entropy
    optimizer = sgd(lr=0.05, momentum=0.9)
    epochs = 2
}
'''


def sx(node):
    """A span-free picture of an AST node: names are str, numbers are int/float, the rest tuples."""
    if isinstance(node, list):
        return [sx(n) for n in node]
    if isinstance(node, ast.Num):
        return node.value
    if isinstance(node, ast.Str):
        return ("str", node.value)
    if isinstance(node, ast.Bool):
        return node.value
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.BinOp):
        return (node.op, sx(node.left), sx(node.right))
    if isinstance(node, ast.UnaryOp):
        return ("u" + node.op, sx(node.operand))
    if isinstance(node, ast.Call):
        out = ("call", sx(node.func), sx(node.args))
        return out + ({k.name: sx(k.value) for k in node.kwargs},) if node.kwargs else out
    if isinstance(node, ast.Attribute):
        return (".", sx(node.value), node.attr)
    if isinstance(node, ast.Subscript):
        return ("[]", sx(node.value), sx(node.index))
    if isinstance(node, ast.Slice):
        return ("slice", *(None if p is None else sx(p) for p in (node.lower, node.upper, node.step)))
    if isinstance(node, ast.EllipsisLit):
        return "..."
    if isinstance(node, ast.ListExpr):
        return ("list", *sx(node.items))
    if isinstance(node, ast.TupleExpr):
        return ("tuple", *sx(node.items))
    if isinstance(node, ast.TensorTypeExpr):
        return (node.dtype, *sx(node.dims))
    if isinstance(node, ast.ScalarTypeExpr):
        return node.name
    if isinstance(node, ast.Assign):
        return ("=", [t.id for t in node.targets], sx(node.value))
    if isinstance(node, ast.Return):
        return ("return", *sx(node.values))
    if isinstance(node, ast.Repeat):
        return ("repeat", sx(node.count), node.name, sx(node.body))
    raise TypeError(f"sx: unexpected {type(node).__name__}")

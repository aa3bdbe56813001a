"""One module per op family; importing this package registers every lowering."""

from . import (  # noqa: F401
    conv,
    elementwise,
    matmul,
    norm,
    pool,
    shape,
    softmax,
)
